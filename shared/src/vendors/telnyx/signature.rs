//! Telnyx webhook signatures: Ed25519 over `<telnyx-timestamp>|<raw body>`, the signature in
//! `telnyx-signature-ed25519` (base64 of 64 bytes), the account's base64 32-byte public key, and
//! |now − timestamp| ≤ tolerance in both directions (telnyx-node `src/lib/webhooks.ts`). Call
//! Control JSON events and TeXML form callbacks carry the same two headers. See docs/webhooks.md.

use std::time::Duration;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use http::HeaderMap;

use crate::vendors::signature_error::{MAX_SIGNATURES, SignatureError};

pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
/// The SDKs' default replay window.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Standard alphabet, padding optional: what base64 encoders in the vendors' SDKs produce.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why `TELNYX_PUBLIC_KEY` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("TELNYX_PUBLIC_KEY is not base64: {0}")]
    NotBase64(String),
    #[error(
        "TELNYX_PUBLIC_KEY decodes to {0} bytes; expected the raw 32-byte Ed25519 key from Mission Control (Keys & Credentials → Public Key)"
    )]
    WrongLength(usize),
    #[error("TELNYX_PUBLIC_KEY is not a valid Ed25519 public key")]
    NotAPoint,
}

/// The account's public key as Mission Control shows it: base64 of the raw 32-byte key.
pub fn parse_public_key(base64_key: &str) -> Result<VerifyingKey, PublicKeyError> {
    let bytes = LENIENT_BASE64
        .decode(base64_key.trim())
        .map_err(|e| PublicKeyError::NotBase64(e.to_string()))?;
    let raw: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::WrongLength(bytes.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| PublicKeyError::NotAPoint)
}

/// The bytes Telnyx signs: the timestamp header exactly as sent, `|`, the raw body.
pub fn signed_message(timestamp: &[u8], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp);
    message.push(b'|');
    message.extend_from_slice(body);
    message
}

/// The `telnyx-signature-ed25519` value for `body` sent at `timestamp` (sandbox and tests).
pub fn sign(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let message = signed_message(timestamp.to_string().as_bytes(), body);
    STANDARD.encode(key.sign(&message).to_bytes())
}

/// Accepts the request when one of its `telnyx-signature-ed25519` values is `key`'s signature of
/// `<telnyx-timestamp>|<body>` and the timestamp is within `tolerance` of `now_unix` either way.
/// The signature is checked before the clock, so a refusal for age means the signature was good.
pub fn verify(
    key: &VerifyingKey,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let timestamp_raw = single_header(headers, TIMESTAMP_HEADER)?;
    let timestamp = parse_timestamp(timestamp_raw)?;
    let signatures = signatures(headers)?;
    let message = signed_message(timestamp_raw, body);
    // verify_strict also refuses small-order keys and non-canonical signatures.
    if !signatures
        .iter()
        .any(|signature| key.verify_strict(&message, signature).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    check_age(timestamp, now_unix, tolerance)
}

fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<&'h [u8], SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(SignatureError::MalformedHeader {
            header: name,
            reason: "sent more than once".into(),
        });
    }
    Ok(value.as_bytes())
}

fn parse_timestamp(raw: &[u8]) -> Result<i64, SignatureError> {
    let malformed = |reason: &str| SignatureError::MalformedHeader {
        header: TIMESTAMP_HEADER,
        reason: reason.to_owned(),
    };
    if raw.is_empty() {
        return Err(malformed("empty; expected Unix seconds"));
    }
    // Digits only: what Telnyx sends, and no sign or space that i64 parsing might forgive.
    if raw.len() > 18 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(malformed("not Unix seconds (digits only)"));
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| malformed("not Unix seconds (digits only)"))
}

fn signatures(headers: &HeaderMap) -> Result<Vec<Signature>, SignatureError> {
    let values: Vec<_> = headers.get_all(SIGNATURE_HEADER).iter().collect();
    if values.is_empty() {
        return Err(SignatureError::MissingHeader(SIGNATURE_HEADER));
    }
    if values.len() > MAX_SIGNATURES {
        return Err(SignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            reason: format!(
                "sent {} times; at most {MAX_SIGNATURES} are read",
                values.len()
            ),
        });
    }
    values
        .into_iter()
        .map(|value| {
            let bytes = LENIENT_BASE64
                .decode(value.as_bytes().trim_ascii())
                .map_err(|_| SignatureError::MalformedHeader {
                    header: SIGNATURE_HEADER,
                    reason: "not base64".into(),
                })?;
            let raw: [u8; 64] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SignatureError::MalformedHeader {
                        header: SIGNATURE_HEADER,
                        reason: format!(
                            "decodes to {} bytes; an Ed25519 signature is 64",
                            bytes.len()
                        ),
                    })?;
            Ok(Signature::from_bytes(&raw))
        })
        .collect()
}

fn check_age(timestamp: i64, now_unix: i64, tolerance: Duration) -> Result<(), SignatureError> {
    let tolerance_seconds = tolerance.as_secs();
    let age = i128::from(now_unix) - i128::from(timestamp);
    let saturate = |v: i128| u64::try_from(v).unwrap_or(u64::MAX);
    if age > i128::from(tolerance_seconds) {
        Err(SignatureError::TooOld {
            age_seconds: saturate(age),
            tolerance_seconds,
        })
    } else if -age > i128::from(tolerance_seconds) {
        Err(SignatureError::InTheFuture {
            ahead_seconds: saturate(-age),
            tolerance_seconds,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// RFC 8032 §7.1 TEST 1 key pair; the signature below was made with an independent Ed25519
    /// implementation (Python `cryptography`) over `1700000000|<BODY>`.
    const SECRET_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_B64: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const BODY: &str = r#"{"data":{"event_type":"call.initiated","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2018-02-02T22:25:27.521992Z","payload":{"call_control_id":"v3:abc","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d"},"record_type":"event"},"meta":{"attempt":1,"delivered_to":"https://example.com/webhooks"}}"#;
    const SIGNATURE: &str =
        "5YOJxhujfrLk/GmMrV+xy87YdaFXr6tnUsnN7H40G0wfwhNHsbOXkVJRkZhVlqIgdpUN37wxGo3YPr3X5Js3Aw==";
    const TS: i64 = 1_700_000_000;
    const TOLERANCE: Duration = DEFAULT_TOLERANCE;

    fn signing_key() -> SigningKey {
        let mut secret = [0u8; 32];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&SECRET_HEX[2 * i..2 * i + 2], 16).unwrap();
        }
        SigningKey::from_bytes(&secret)
    }

    fn public_key() -> VerifyingKey {
        parse_public_key(PUBLIC_B64).unwrap()
    }

    fn headers(timestamp: &str, signatures: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).unwrap());
        for signature in signatures {
            headers.append(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        }
        headers
    }

    #[test]
    fn independently_made_signature_verifies_and_sign_reproduces_it() {
        assert_eq!(public_key(), signing_key().verifying_key());
        assert_eq!(sign(&signing_key(), TS, BODY.as_bytes()), SIGNATURE);
        let h = headers("1700000000", &[SIGNATURE]);
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(b"Telnyx-Timestamp").unwrap(),
            HeaderValue::from_static("1700000000"),
        );
        h.insert(
            http::HeaderName::from_bytes(b"Telnyx-Signature-Ed25519").unwrap(),
            HeaderValue::from_static(SIGNATURE),
        );
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_timestamp_or_key_is_refused() {
        let h = headers("1700000000", &[SIGNATURE]);
        let tampered = BODY.replace("call.initiated", "call.answered");
        assert_eq!(
            verify(&public_key(), &h, tampered.as_bytes(), TS, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let h = headers("1700000001", &[SIGNATURE]);
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let other = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let h = headers("1700000000", &[SIGNATURE]);
        assert_eq!(
            verify(&other, &h, BODY.as_bytes(), TS, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused_at_the_tolerance_edge() {
        let h = headers("1700000000", &[SIGNATURE]);
        let body = BODY.as_bytes();
        assert_eq!(verify(&public_key(), &h, body, TS + 300, TOLERANCE), Ok(()));
        assert_eq!(verify(&public_key(), &h, body, TS - 300, TOLERANCE), Ok(()));
        let too_old = verify(&public_key(), &h, body, TS + 900, TOLERANCE).unwrap_err();
        assert_eq!(
            too_old,
            SignatureError::TooOld {
                age_seconds: 900,
                tolerance_seconds: 300
            }
        );
        assert_eq!(
            too_old.to_string(),
            "timestamp 900 s older than the 300 s tolerance"
        );
        assert_eq!(
            verify(&public_key(), &h, body, TS - 301, TOLERANCE),
            Err(SignatureError::InTheFuture {
                ahead_seconds: 301,
                tolerance_seconds: 300
            })
        );
        assert_eq!(
            verify(&public_key(), &h, body, TS + 301, Duration::from_secs(600)),
            Ok(())
        );
    }

    #[test]
    fn a_forged_signature_with_a_stale_timestamp_reports_the_signature() {
        let forged = sign(&SigningKey::from_bytes(&[9u8; 32]), TS, BODY.as_bytes());
        let h = headers("1700000000", &[&forged]);
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS + 10_000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_static(SIGNATURE));
        let missing_ts = verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE).unwrap_err();
        assert_eq!(missing_ts.to_string(), "missing header telnyx-timestamp");
        assert!(!missing_ts.is_malformed());
        let h = headers("1700000000", &[]);
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn malformed_headers_are_400_with_a_reason() {
        let body = BODY.as_bytes();
        for timestamp in [
            "",
            "17e8",
            "-1700000000",
            " 1700000000",
            "1700000000.5",
            "9999999999999999999",
        ] {
            let mut h = HeaderMap::new();
            h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).unwrap());
            h.insert(SIGNATURE_HEADER, HeaderValue::from_static(SIGNATURE));
            let e = verify(&public_key(), &h, body, TS, TOLERANCE).unwrap_err();
            assert!(e.is_malformed(), "{timestamp:?} gave {e}");
        }
        let e = verify(
            &public_key(),
            &headers("1700000000", &["not base64!"]),
            body,
            TS,
            TOLERANCE,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed header telnyx-signature-ed25519: not base64"
        );
        let e = verify(
            &public_key(),
            &headers("1700000000", &["AAAA"]),
            body,
            TS,
            TOLERANCE,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed header telnyx-signature-ed25519: decodes to 3 bytes; an Ed25519 signature is 64"
        );
        let mut h = headers("1700000000", &[SIGNATURE]);
        h.append(TIMESTAMP_HEADER, HeaderValue::from_static("1700000000"));
        assert!(
            verify(&public_key(), &h, body, TS, TOLERANCE)
                .unwrap_err()
                .is_malformed()
        );
    }

    #[test]
    fn several_signatures_pass_when_one_is_good_and_fail_when_none_is() {
        let other = sign(&SigningKey::from_bytes(&[3u8; 32]), TS, BODY.as_bytes());
        let body = BODY.as_bytes();
        let h = headers("1700000000", &[&other, SIGNATURE]);
        assert_eq!(verify(&public_key(), &h, body, TS, TOLERANCE), Ok(()));
        let h = headers("1700000000", &[&other, &other]);
        assert_eq!(
            verify(&public_key(), &h, body, TS, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let flood: Vec<&str> = std::iter::repeat_n(SIGNATURE, MAX_SIGNATURES + 1).collect();
        let h = headers("1700000000", &flood);
        assert!(
            verify(&public_key(), &h, body, TS, TOLERANCE)
                .unwrap_err()
                .is_malformed()
        );
    }

    #[test]
    fn unpadded_base64_is_read_like_the_sdks_do() {
        let h = headers("1700000000", &[SIGNATURE.trim_end_matches('=')]);
        assert_eq!(
            verify(&public_key(), &h, BODY.as_bytes(), TS, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn public_key_errors_say_what_is_wrong() {
        assert!(matches!(
            parse_public_key("%%%"),
            Err(PublicKeyError::NotBase64(_))
        ));
        assert_eq!(
            parse_public_key("AAAA"),
            Err(PublicKeyError::WrongLength(3))
        );
        // The 44-byte SPKI (DER) form of the key is a common paste mistake.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(public_key().as_bytes());
        assert_eq!(
            parse_public_key(&STANDARD.encode(&spki)),
            Err(PublicKeyError::WrongLength(44))
        );
        assert_eq!(
            parse_public_key(&format!(" {PUBLIC_B64}\n")),
            Ok(public_key())
        );
        assert!(
            parse_public_key("AAAA")
                .unwrap_err()
                .to_string()
                .contains("expected the raw 32-byte")
        );
    }

    proptest! {
        /// Any one-byte change to the signed bytes (timestamp or body) is refused.
        #[test]
        fn any_one_byte_change_to_the_signed_bytes_is_refused(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let key = signing_key();
            let timestamp = "1700000000";
            let signature = sign(&key, TS, &body);
            let mut signed = signed_message(timestamp.as_bytes(), &body);
            let at = position.index(signed.len());
            signed[at] ^= flip;
            // Split the changed message back into what a request carries.
            let bar = signed.iter().position(|b| *b == b'|');
            let (changed_ts, changed_body) = match bar {
                Some(i) => (&signed[..i], &signed[i + 1..]),
                None => (&signed[..], &[][..]),
            };
            let mut h = HeaderMap::new();
            match HeaderValue::from_bytes(changed_ts) {
                Ok(v) => { h.insert(TIMESTAMP_HEADER, v); }
                Err(_) => return Ok(()), // Not sendable as a header at all.
            }
            h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
            let changed = (changed_ts, changed_body) != (timestamp.as_bytes(), &body[..]);
            prop_assume!(changed);
            prop_assert!(verify(&key.verifying_key(), &h, changed_body, TS, TOLERANCE).is_err());
        }

        /// Whatever the headers hold, the verifier answers and never panics.
        #[test]
        fn no_header_value_makes_the_parser_panic(
            timestamp in proptest::collection::vec(any::<u8>(), 0..40),
            signatures in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..10),
            now in any::<i64>(),
            tolerance in any::<u64>(),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&timestamp) {
                h.insert(TIMESTAMP_HEADER, v);
            }
            for signature in &signatures {
                if let Ok(v) = HeaderValue::from_bytes(signature) {
                    h.append(SIGNATURE_HEADER, v);
                }
            }
            let _ = verify(&public_key(), &h, b"{}", now, Duration::from_secs(tolerance));
        }

        #[test]
        fn a_signature_made_by_sign_verifies(body in proptest::collection::vec(any::<u8>(), 0..512), ts in 0i64..4_000_000_000) {
            let key = signing_key();
            let mut h = HeaderMap::new();
            h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(&ts.to_string()).unwrap());
            h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&sign(&key, ts, &body)).unwrap());
            prop_assert_eq!(verify(&key.verifying_key(), &h, &body, ts, TOLERANCE), Ok(()));
        }
    }
}
