//! Stripe webhook signatures, checked exactly as Stripe's SDKs check them (stripe-node
//! `src/Webhooks.ts`, stripe-python `stripe/_webhook.py`; vendors.md §5):
//!
//! - `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`, split on `,` then on the first
//!   `=`; every `v1` is collected (one per active endpoint secret while a secret is rolled), `v0`
//!   and unknown schemes are ignored, the last `t` wins;
//! - the signed bytes are `"{t}.{raw body}"`, the MAC is hex(HMAC-SHA256) keyed with the whole
//!   endpoint secret string (`whsec_…`) as UTF-8 — never base64-decoded;
//! - valid when any `v1` equals the MAC of any configured secret (constant-time comparison), and
//!   then only if the timestamp is at most `tolerance` old (a timestamp in the future is accepted,
//!   as the SDKs accept it).
//!
//! Several secrets are accepted at once (`STRIPE_WEBHOOK_SECRET` comma-separated), so an endpoint
//! secret can be rolled without refusing a delivery. See docs/stripe.md.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::vendors::signature_error::SignatureError;

pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// The SDKs' `DEFAULT_TOLERANCE` for `constructEvent`.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The only scheme Stripe signs live events with; `v0` is a test-mode scheme the SDKs ignore.
pub const SCHEME: &str = "v1";
/// The variable the secrets come from, named in configuration errors.
pub const SECRET_VARIABLE: &str = "STRIPE_WEBHOOK_SECRET";
/// A header longer than this is not Stripe's (a few signatures of 64 hex characters each).
const MAX_HEADER_BYTES: usize = 4096;

/// The header as the SDKs read it: the timestamp and every `v1` signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    pub timestamp: i64,
    /// The raw `v1` values, in order.
    pub signatures: Vec<Vec<u8>>,
}

fn malformed(reason: &str) -> SignatureError {
    SignatureError::MalformedHeader {
        header: SIGNATURE_HEADER,
        reason: reason.to_owned(),
    }
}

/// Splits the header on `,`, each item on its first `=`: `t` (the last one wins, as in the SDKs)
/// and every `v1`. Items without `=` and other schemes are skipped.
pub fn parse_header(value: &[u8]) -> Result<SignedHeader, SignatureError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(malformed("longer than any header Stripe sends"));
    }
    // An empty header carries no credentials at all: the same 401 as no header.
    if value.trim_ascii().is_empty() {
        return Err(SignatureError::MissingHeader(SIGNATURE_HEADER));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(|b| *b == b',') {
        let Some(eq) = item.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        if key == b"t" {
            timestamp = Some(parse_timestamp(value));
        } else if key == SCHEME.as_bytes() {
            signatures.push(value.to_vec());
        }
    }
    let timestamp = match timestamp {
        Some(Some(t)) => t,
        _ => {
            return Err(malformed(
                "unable to extract timestamp and signatures from header",
            ));
        }
    };
    if signatures.is_empty() {
        return Err(malformed("no signatures found with expected scheme v1"));
    }
    Ok(SignedHeader {
        timestamp,
        signatures,
    })
}

/// Unix seconds: ASCII digits (surrounding spaces forgiven, as the SDKs' integer parsing does).
fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    let digits = raw.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// hex(HMAC-SHA256(secret as UTF-8, "{timestamp}.{body}")): the `v1` value Stripe sends.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A whole `Stripe-Signature` value for `body` sent at `timestamp`, one `v1` per secret (as Stripe
/// sends while a secret is rolled). The sandbox and the tests sign with it.
pub fn header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut value = format!("t={timestamp}");
    for secret in secrets {
        value.push_str(",v1=");
        value.push_str(&signature(secret, timestamp, body));
    }
    value
}

/// Accepts the request when one of its `v1` signatures is the MAC of `body` under one of
/// `secrets`, and its timestamp is at most `tolerance` older than `now_unix`. Returns the signed
/// timestamp. The signature is checked before the clock, so a refusal for age means the signature
/// was good. Several `Stripe-Signature` headers (which API Gateway would join with commas anyway)
/// are read as one.
pub fn verify(
    secrets: &[SecretString],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    if secrets.is_empty() || secrets.iter().any(|s| s.expose_secret().is_empty()) {
        return Err(SignatureError::EmptyKey(SECRET_VARIABLE));
    }
    let values: Vec<&[u8]> = headers
        .get_all(SIGNATURE_HEADER)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if values.is_empty() {
        return Err(SignatureError::MissingHeader(SIGNATURE_HEADER));
    }
    let parsed = parse_header(&values.join(&b","[..]))?;
    let mut matched = false;
    for secret in secrets {
        let expected = signature(secret.expose_secret(), parsed.timestamp, body);
        for candidate in &parsed.signatures {
            // `ct_eq` on slices is constant-time for equal lengths; a length differs only for a
            // value that is not a signature at all.
            matched |= bool::from(expected.as_bytes().ct_eq(candidate));
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age = i128::from(now_unix) - i128::from(parsed.timestamp);
    let tolerance_seconds = tolerance.as_secs();
    if age > i128::from(tolerance_seconds) {
        return Err(SignatureError::TooOld {
            age_seconds: u64::try_from(age).unwrap_or(u64::MAX),
            tolerance_seconds,
        });
    }
    Ok(parsed.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// A current-API-version event body. The two signatures below were computed once with an
    /// independent implementation (Python's `hmac` and `hashlib`) over `1700000000.<BODY>`.
    const BODY: &str = r#"{"id":"evt_1PwpIkLkdIwHu7ixsZcvB1Eb","object":"event","api_version":"2026-07-29.dahlia","created":1700000000,"data":{"object":{"id":"sub_1PwpIjLkdIwHu7ixMBP5n4bO","object":"subscription","status":"active"}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"customer.subscription.updated"}"#;
    const SECRET: &str = "whsec_test_secret";
    const SIGNATURE: &str = "1642e20899a2e5ef3522687ef49160d8fa9d955a31ab9dc86dcd77242d49a3c7";
    const ROTATED: &str = "whsec_rotated_0123456789abcdef";
    const ROTATED_SIGNATURE: &str =
        "538487d58577aecec48b0ef5e26b45b0f3540823a410cc5696a8c39a7eb015d2";
    const TS: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(*s)).collect()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SIGNATURE_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn check(value: &str, keys: &[&str], now: i64) -> Result<i64, SignatureError> {
        verify(
            &secrets(keys),
            &headers(&[value]),
            BODY.as_bytes(),
            now,
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn an_empty_header_is_no_credentials_a_401_not_a_malformed_400() {
        for empty in [&b""[..], b"   "] {
            let e = parse_header(empty).unwrap_err();
            assert_eq!(e, SignatureError::MissingHeader(SIGNATURE_HEADER));
            assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
        }
        assert!(parse_header(b"junk").unwrap_err().is_malformed());
    }

    #[test]
    fn independently_computed_signatures_verify_and_are_reproduced() {
        assert_eq!(signature(SECRET, TS, BODY.as_bytes()), SIGNATURE);
        assert_eq!(signature(ROTATED, TS, BODY.as_bytes()), ROTATED_SIGNATURE);
        assert_eq!(
            check(&format!("t={TS},v1={SIGNATURE}"), &[SECRET], TS),
            Ok(TS)
        );
        assert_eq!(
            header(&[SECRET, ROTATED], TS, BODY.as_bytes()),
            format!("t={TS},v1={SIGNATURE},v1={ROTATED_SIGNATURE}")
        );
    }

    #[test]
    fn the_key_is_the_whole_whsec_string_not_its_decoded_tail() {
        let tail_only = signature("test_secret", TS, BODY.as_bytes());
        assert_ne!(tail_only, SIGNATURE);
        assert_eq!(
            check(&format!("t={TS},v1={tail_only}"), &[SECRET], TS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_either_secret_and_any_listed_signature() {
        // Stripe signs with both secrets while one is rolled: one header, two v1 values.
        let both = format!("t={TS},v1={SIGNATURE},v1={ROTATED_SIGNATURE}");
        assert_eq!(check(&both, &[SECRET], TS), Ok(TS));
        assert_eq!(check(&both, &[ROTATED], TS), Ok(TS));
        // Parley configured with both while Stripe still signs with the old one only.
        let old_only = format!("t={TS},v1={SIGNATURE}");
        assert_eq!(check(&old_only, &[ROTATED, SECRET], TS), Ok(TS));
        // A bad extra v1 is ignored when another one matches.
        let with_junk = format!("t={TS},v1=deadbeef,v1={SIGNATURE}");
        assert_eq!(check(&with_junk, &[SECRET], TS), Ok(TS));
        assert_eq!(
            check(&old_only, &[ROTATED], TS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn v0_and_unknown_schemes_are_ignored() {
        // A v0 that would match on its own is not a v1.
        let v0_only = format!("t={TS},v0={SIGNATURE}");
        assert_eq!(
            check(&v0_only, &[SECRET], TS).unwrap_err().to_string(),
            "malformed header stripe-signature: no signatures found with expected scheme v1"
        );
        let mixed = format!("t={TS},v0=abc,v2=xyz,foo,v1={SIGNATURE},x=1=2");
        assert_eq!(check(&mixed, &[SECRET], TS), Ok(TS));
    }

    #[test]
    fn the_last_timestamp_wins_and_duplicate_headers_are_read_as_one() {
        let h = headers(&["t=1,v1=00", &format!("t={TS},v1={SIGNATURE}")]);
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                &h,
                BODY.as_bytes(),
                TS,
                DEFAULT_TOLERANCE
            ),
            Ok(TS)
        );
    }

    #[test]
    fn old_timestamps_are_refused_after_the_signature_future_ones_are_not() {
        let value = format!("t={TS},v1={SIGNATURE}");
        assert_eq!(check(&value, &[SECRET], TS + 300), Ok(TS));
        assert_eq!(
            check(&value, &[SECRET], TS + 301),
            Err(SignatureError::TooOld {
                age_seconds: 301,
                tolerance_seconds: 300
            })
        );
        // As in the SDKs, only age is checked.
        assert_eq!(check(&value, &[SECRET], TS - 10_000), Ok(TS));
        // A forged signature on a stale request reports the signature, not the clock.
        assert_eq!(
            check(
                &format!("t={TS},v1={}", "0".repeat(64)),
                &[SECRET],
                TS + 10_000
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampering_with_body_timestamp_or_signature_is_refused() {
        let tampered = BODY.replace("active", "canceled");
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                &headers(&[&format!("t={TS},v1={SIGNATURE}")]),
                tampered.as_bytes(),
                TS,
                DEFAULT_TOLERANCE
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("t={},v1={SIGNATURE}", TS + 1), &[SECRET], TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                &format!("t={TS},v1={}", SIGNATURE.to_uppercase()),
                &[SECRET],
                TS
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_missing_and_misconfigured_are_told_apart() {
        for bad in [
            "garbage",
            "v1=abc",
            "t=,v1=abc",
            "t=12a,v1=abc",
            "t=-5,v1=abc",
        ] {
            let e = check(bad, &[SECRET], TS).unwrap_err();
            assert!(e.is_malformed(), "{bad:?}: {e}");
        }
        assert_eq!(
            check("t=17e8,v1=ab", &[SECRET], TS)
                .unwrap_err()
                .to_string(),
            "malformed header stripe-signature: unable to extract timestamp and signatures from header"
        );
        assert!(
            check(&"x".repeat(5000), &[SECRET], TS)
                .unwrap_err()
                .is_malformed()
        );
        assert_eq!(
            verify(
                &secrets(&[SECRET]),
                &HeaderMap::new(),
                BODY.as_bytes(),
                TS,
                DEFAULT_TOLERANCE
            ),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        let value = format!("t={TS},v1={SIGNATURE}");
        assert_eq!(
            check(&value, &[], TS),
            Err(SignatureError::EmptyKey(SECRET_VARIABLE))
        );
        assert_eq!(
            check(&value, &[SECRET, ""], TS),
            Err(SignatureError::EmptyKey(SECRET_VARIABLE))
        );
        // Spaces around the timestamp are forgiven, as the SDKs' integer parsing forgives them.
        assert_eq!(
            check(&format!("t= {TS} ,v1={SIGNATURE}"), &[SECRET], TS),
            Ok(TS)
        );
    }

    proptest! {
        /// Any one-byte change to the signed bytes is refused.
        #[test]
        fn any_one_byte_change_to_the_body_is_refused(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let value = header(&[SECRET], TS, &body);
            let mut changed = body.clone();
            let at = position.index(changed.len());
            changed[at] ^= flip;
            prop_assert_eq!(
                verify(&secrets(&[SECRET]), &headers(&[&value]), &changed, TS, DEFAULT_TOLERANCE),
                Err(SignatureError::Mismatch)
            );
        }

        /// Whatever the header holds, the verifier answers and never panics.
        #[test]
        fn no_header_value_makes_the_parser_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            now in any::<i64>(),
            tolerance in any::<u64>(),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                h.insert(SIGNATURE_HEADER, v);
            }
            let _ = verify(&secrets(&[SECRET]), &h, b"{}", now, Duration::from_secs(tolerance));
        }

        #[test]
        fn a_header_made_by_header_verifies(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            ts in 0i64..4_000_000_000,
        ) {
            let value = header(&[ROTATED, SECRET], ts, &body);
            prop_assert_eq!(
                verify(&secrets(&[SECRET]), &headers(&[&value]), &body, ts, DEFAULT_TOLERANCE),
                Ok(ts)
            );
        }
    }
}
