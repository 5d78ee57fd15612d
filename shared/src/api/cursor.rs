//! Opaque cursors: every `nextCursor` the API hands out, and the only way a `cursor` comes back in.
//!
//! A cursor is base64url (no padding) of an HMAC-SHA256 tag followed by the JSON of a position (a table or
//! index key, and for the ledger the balances where the next page continues). The tag covers the list the
//! cursor belongs to and the JSON, under a key only the functions hold (`CURSOR_SIGNING_KEY`), so a client can
//! neither forge a position (made-up balances, keys of other items) nor move a cursor to another list. The
//! handlers still check that the position is in the caller's own list: a valid tag proves we issued it, not to
//! whom.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::AppError;

/// The environment variable holding the signing key (a secret of at least [`MIN_KEY_BYTES`] bytes).
pub const CURSOR_KEY_VARIABLE: &str = "CURSOR_SIGNING_KEY";

/// 256 bits: HMAC-SHA256's own strength; the deployed key is 64 random letters and digits.
pub const MIN_KEY_BYTES: usize = 32;

const TAG_BYTES: usize = 32;

/// Anything longer is not one of ours: the longest position (an agency purchase, a ledger position with four
/// 20-character balances) signs to about 450 characters, and the contract's `maxLength` is 512.
pub const MAX_CURSOR_CHARS: usize = 512;

/// The list a cursor belongs to: part of what the tag covers, so a cursor of one list is refused by another
/// even where both use the same kind of position (a client's purchase history and an agency's one-client
/// purchase list both page by purchase key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorList {
    Purchases,
    Ledger,
    Statements,
    StatementPurchases,
    AgencyPurchases,
    AgencyClientPurchases,
    AgencyStatements,
    AgencyClients,
    AgencyPricingHistory,
}

impl CursorList {
    fn label(self) -> &'static [u8] {
        match self {
            CursorList::Purchases => b"purchases",
            CursorList::Ledger => b"ledger",
            CursorList::Statements => b"statements",
            CursorList::StatementPurchases => b"statement-purchases",
            CursorList::AgencyPurchases => b"agency-purchases",
            CursorList::AgencyClientPurchases => b"agency-client-purchases",
            CursorList::AgencyStatements => b"agency-statements",
            CursorList::AgencyClients => b"agency-clients",
            CursorList::AgencyPricingHistory => b"agency-pricing-history",
        }
    }
}

/// The key cursors are signed with, read once at cold start.
#[derive(Clone)]
pub struct CursorKey(hmac::Key);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)") // never the secret, not even in a debug log of the settings
    }
}

impl CursorKey {
    /// The key from its secret's bytes, as given (`CURSOR_SIGNING_KEY`); too short is refused, not padded.
    pub fn new(secret: &[u8]) -> Result<CursorKey, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{CURSOR_KEY_VARIABLE} must be at least {MIN_KEY_BYTES} bytes of secret (got {})",
                secret.len()
            ));
        }
        Ok(CursorKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A fresh random key: for tests and tools that build settings in process (their cursors die with it).
    pub fn random() -> CursorKey {
        let mut secret = [0u8; MIN_KEY_BYTES];
        aws_lc_rs::rand::fill(&mut secret).expect("the system's random source");
        CursorKey(hmac::Key::new(hmac::HMAC_SHA256, &secret))
    }

    /// The cursor for `position` in `list`.
    pub fn sign(&self, list: CursorList, position: &impl Serialize) -> String {
        let json = serde_json::to_vec(position).expect("a position serialises");
        let mut bytes = self.tag(list, &json).as_ref().to_vec();
        bytes.extend_from_slice(&json);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position in a cursor this API issued for `list`. Strict: canonical base64url, a tag that verifies
    /// (in constant time) for this list, then the JSON of exactly that position type (unknown fields refused).
    /// The caller then checks the position is one of the caller's own.
    pub fn open<T: DeserializeOwned>(&self, list: CursorList, cursor: &str) -> Result<T, AppError> {
        if cursor.is_empty() || cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid_cursor("wrong length"));
        }
        // Strict: the engine refuses padding, other alphabets and non-zero trailing bits (one encoding per key).
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid_cursor("not base64url"))?;
        let Some((tag, json)) = bytes.split_at_checked(TAG_BYTES) else {
            return Err(invalid_cursor("not a cursor of this list"));
        };
        hmac::verify(&self.0, &Self::message(list, json), tag)
            .map_err(|_| invalid_cursor("not a cursor of this list"))?;
        serde_json::from_slice(json).map_err(|_| invalid_cursor("not a position"))
    }

    fn tag(&self, list: CursorList, json: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, &Self::message(list, json))
    }

    /// The list's label, a NUL (no label holds one), then the JSON: no two (list, position) pairs sign alike.
    fn message(list: CursorList, json: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(list.label().len() + 1 + json.len());
        message.extend_from_slice(list.label());
        message.push(0);
        message.extend_from_slice(json);
        message
    }
}

pub(crate) fn invalid_cursor(why: &str) -> AppError {
    AppError::InvalidQuery {
        parameter: "cursor",
        detail: format!("`cursor` must be a `nextCursor` from this list's previous page: {why}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CreditType;
    use crate::storage::{AgencyPurchasePosition, LedgerPosition, PurchaseKey};

    #[test]
    fn cursors_open_only_with_their_key_and_list() {
        let key = CursorKey::random();
        let position = PurchaseKey::of("acct-a", "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        let cursor = key.sign(CursorList::Purchases, &position);
        assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cursor}");
        assert_eq!(key.open::<PurchaseKey>(CursorList::Purchases, &cursor).unwrap(), position);
        assert!(key.open::<PurchaseKey>(CursorList::AgencyClientPurchases, &cursor).is_err());
        assert!(CursorKey::random().open::<PurchaseKey>(CursorList::Purchases, &cursor).is_err());
        // Every single-bit change anywhere (tag or position) is refused.
        let bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1;
            assert!(key.open::<PurchaseKey>(CursorList::Purchases, &URL_SAFE_NO_PAD.encode(flipped)).is_err(), "{i}");
        }
        // The unsigned form of earlier releases, and a tag alone.
        let unsigned = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&position).unwrap());
        assert!(key.open::<PurchaseKey>(CursorList::Purchases, &unsigned).is_err());
        assert!(key.open::<PurchaseKey>(CursorList::Purchases, &URL_SAFE_NO_PAD.encode(&bytes[..TAG_BYTES])).is_err());
        assert!(key.open::<PurchaseKey>(CursorList::Purchases, "").is_err());
        assert!(key.open::<PurchaseKey>(CursorList::Purchases, &format!("{cursor}=")).is_err());
    }

    #[test]
    fn keys_shorter_than_256_bits_are_refused_and_never_printed() {
        let error = CursorKey::new(b"short").unwrap_err();
        assert!(error.contains(CURSOR_KEY_VARIABLE), "{error}");
        let key = CursorKey::new(&[b'k'; MIN_KEY_BYTES]).unwrap();
        assert_eq!(format!("{key:?}"), "CursorKey(..)");
    }

    #[test]
    fn the_longest_positions_fit_the_contracts_max_length() {
        let key = CursorKey::random();
        let id = "a".repeat(64);
        let uuid = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let ledger = LedgerPosition {
            pk: format!("ACCOUNT#{id}"),
            sk: format!("LEDGER#2026-11-26T01:00:00.000Z#{uuid}"),
            balances: CreditType::ALL.into_iter().map(|t| (t, i64::MIN)).collect(),
        };
        let agency = AgencyPurchasePosition {
            agency_pk: format!("AGENCY#{id}"),
            agency_sk: format!("PURCHASE#2026-11-26T01:00:00.000Z#{uuid}"),
            pk: format!("ACCOUNT#{id}"),
            sk: format!("PURCHASE#{uuid}"),
        };
        for cursor in [key.sign(CursorList::Ledger, &ledger), key.sign(CursorList::AgencyPurchases, &agency)] {
            assert!(cursor.len() <= MAX_CURSOR_CHARS, "{} characters", cursor.len());
        }
        let cursor = key.sign(CursorList::Ledger, &ledger);
        assert_eq!(key.open::<LedgerPosition>(CursorList::Ledger, &cursor).unwrap(), ledger);
    }
}
