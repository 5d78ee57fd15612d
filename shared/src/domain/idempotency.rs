//! The idempotency story every route with an `Idempotency-Key` shares: the key's rule, how long it is
//! remembered, and the request hash that binds it to the request's meaning (a replay with another body is
//! refused). Where the claim is stored is `storage::idempotency`.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::purchase::PurchaseRequest;

/// How long an `Idempotency-Key` is remembered, by purchases and voids alike.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// An `Idempotency-Key`: 1-255 printable ASCII characters, no comma, no surrounding space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<IdempotencyKey, String> {
        IdempotencyKey::from_bytes(text.as_bytes())
    }

    /// The key from a header's raw bytes (which need not be UTF-8).
    pub fn from_bytes(bytes: &[u8]) -> Result<IdempotencyKey, String> {
        if bytes.is_empty() || bytes.len() > 255 {
            return Err(format!("{} characters", bytes.len()));
        }
        if !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err("non-printable or non-ASCII characters".into());
        }
        // HTTP drops whitespace around header values on the way, so such a key would not survive a retry intact.
        if bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
            return Err("blank, or begins or ends with a space".into());
        }
        // API Gateway joins repeated headers with a comma: a comma means two keys arrived as one.
        if bytes.contains(&b',') {
            return Err("contains a comma (or the header was sent twice)".into());
        }
        Ok(IdempotencyKey(String::from_utf8_lossy(bytes).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A purchase's request hash: the key bound to the account and the request's meaning, not its bytes.
pub fn purchase_request_hash(account_id: &str, request: &PurchaseRequest) -> String {
    request_hash(&format!("{account_id}\n{}", request.canonical()))
}

/// A void's request hash: the key bound to the agency and the request's meaning (purchase, account, reason).
pub fn void_request_hash(agency_id: &str, purchase_id: &str, account_id: &str, reason: Option<&str>) -> String {
    request_hash(&format!("void\n{agency_id}\n{purchase_id}\n{account_id}\n{}", reason.unwrap_or("")))
}

/// SHA-256 hex of a request's canonical text (what earlier releases stored: keys stay valid across a deploy).
fn request_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_header_rule() {
        assert_eq!(IdempotencyKey::parse("order-42:retry").map(|k| k.as_str().to_owned()), Ok("order-42:retry".into()));
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", " lead", "trail ", "a,b", "tab\there", "é"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err("256 characters".into()));
        assert!(IdempotencyKey::from_bytes(&[0x6b, 0xff]).is_err());
    }

    #[test]
    fn hashes_are_what_earlier_releases_stored() {
        // Keys claimed before a deploy must still match their retries after it.
        assert_eq!(
            void_request_hash("agency-a", "p", "acct-a", None),
            hex::encode(Sha256::digest("void\nagency-a\np\nacct-a\n"))
        );
        assert_ne!(
            void_request_hash("agency-a", "p", "acct-a", Some("x")),
            void_request_hash("agency-a", "p", "acct-a", None)
        );
    }
}
