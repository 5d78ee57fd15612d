//! Stripe webhook signatures, as Stripe documents them ("Verify the signature manually"): the header
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`; each `v1` is HMAC-SHA256 of
//! `"{t}.{raw body}"` keyed with an endpoint secret. Several `v1` entries (Stripe signs with every secret while
//! one is being rolled) and several secrets of ours are accepted: any pair matching is enough. Comparisons are
//! constant time (`hmac`'s `verify_slice`). A timestamp more than [`TOLERANCE`] away from now is refused, so a
//! captured delivery cannot be replayed later.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};

use super::Secret;

type HmacSha256 = hmac::Hmac<sha2_011::Sha256>;

/// How far a signature's timestamp may be from now (Stripe's libraries default to 300 s).
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// The largest body we verify; Stripe's events are a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature is malformed")]
    Malformed,
    #[error("body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("signature timestamp is {0} s away from now")]
    Stale(u64),
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Verifies `header` over `body` with any of `secrets`; returns the signed timestamp.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[Secret], now: SystemTime) -> Result<u64, SignatureError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(SignatureError::TooLarge(body.len()));
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(value.parse::<u64>().map_err(|_| SignatureError::Malformed)?);
            }
            "t" => return Err(SignatureError::Malformed),
            // A v1 that is not hex cannot match; others may still.
            "v1" => signatures.extend(hex::decode(value).ok()),
            // v0 (test-mode legacy scheme) and future schemes are ignored, as Stripe's libraries do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoMatch);
    }
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let age = now.abs_diff(timestamp);
    if age > TOLERANCE.as_secs() {
        return Err(SignatureError::Stale(age));
    }
    for secret in secrets {
        let mac = signed(secret, timestamp, body);
        if signatures.iter().any(|signature| mac.clone().verify_slice(signature).is_ok()) {
            return Ok(timestamp);
        }
    }
    Err(SignatureError::NoMatch)
}

fn signed(secret: &Secret, timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header Stripe would send for `body` at `timestamp` (tests and the local stack).
pub fn sign(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(signed(secret, timestamp, body).finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: u64 = 1_492_774_577;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn secret() -> Secret {
        Secret::new("whsec_test_secret")
    }

    #[test]
    fn stripes_documented_construction() {
        // HMAC-SHA256("whsec_test_secret", "1492774577." + body), computed independently (Python's hmac).
        let expected = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";
        assert_eq!(sign(&secret(), T, BODY), format!("t={T},v1={expected}"));
        // The header as Stripe documents it: t first, then v1, then the legacy v0.
        let header = format!("t={T},v1={expected},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(verify(Some(&header), BODY, &[secret()], at(T + 10)), Ok(T));
    }

    #[test]
    fn any_v1_and_any_secret_may_match() {
        let good = sign(&secret(), T, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t={T},v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(Some(&header), BODY, &[secret()], at(T)), Ok(T));
        // Our secret being rolled: old and new both accepted.
        assert_eq!(verify(Some(&good), BODY, &[Secret::new("whsec_new"), secret()], at(T)), Ok(T));
    }

    #[test]
    fn forged_stale_malformed_and_oversize_are_refused() {
        let good = sign(&secret(), T, BODY);
        assert_eq!(verify(Some(&good), BODY, &[Secret::new("whsec_other")], at(T)), Err(SignatureError::NoMatch));
        // A body changed by one byte.
        let forged = br#"{"id":"evt_test_webhook","object":"evenT"}"#;
        assert_eq!(verify(Some(&good), forged, &[secret()], at(T)), Err(SignatureError::NoMatch));
        // Replayed later than the tolerance, or from the future.
        assert_eq!(verify(Some(&good), BODY, &[secret()], at(T + 301)), Err(SignatureError::Stale(301)));
        assert_eq!(verify(Some(&good), BODY, &[secret()], at(T - 301)), Err(SignatureError::Stale(301)));
        assert_eq!(verify(Some(&good), BODY, &[secret()], at(T + 300)), Ok(T));
        assert_eq!(verify(None, BODY, &[secret()], at(T)), Err(SignatureError::Missing));
        for bad in ["", "t", "v1=ab", "t=abc,v1=00", &format!("t={T},t={T},v1=00")] {
            assert!(verify(Some(bad), BODY, &[secret()], at(T)).is_err(), "{bad:?}");
        }
        assert_eq!(verify(Some(&format!("t={T}")), BODY, &[secret()], at(T)), Err(SignatureError::NoMatch));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(verify(Some(&good), &big, &[secret()], at(T)), Err(SignatureError::TooLarge(MAX_BODY_BYTES + 1)));
    }
}
