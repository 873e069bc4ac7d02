//! Why a webhook's signature was refused, in words an operator can act on, shared by every
//! vendor's verifier (Telnyx, SignalWire, Twilio-compatible; Stripe and Svix later).

use http::StatusCode;

/// How a refusal should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureErrorKind {
    /// The request cannot be read as a signed request (a header that is not what the scheme
    /// says): 400.
    Malformed,
    /// Missing, wrong or stale credentials: 401.
    Unauthorized,
    /// Our own configuration cannot verify anything (an empty key): 500, so the vendor retries.
    Misconfigured,
}

/// A webhook refused by a signature verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {header}: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    #[error("timestamp {age_seconds} s older than the {tolerance_seconds} s tolerance")]
    TooOld {
        age_seconds: u64,
        tolerance_seconds: u64,
    },
    #[error(
        "timestamp {ahead_seconds} s in the future, beyond the {tolerance_seconds} s tolerance"
    )]
    InTheFuture {
        ahead_seconds: u64,
        tolerance_seconds: u64,
    },
    #[error("signature does not match")]
    Mismatch,
    /// The signature covers the URL, but the URL's `bodySHA256` is not the body's SHA-256.
    #[error("signature matches the URL but its bodySHA256 is not the SHA-256 of the body")]
    BodyHashMismatch,
    #[error("the signing key is empty; set {0}")]
    EmptyKey(&'static str),
}

impl SignatureError {
    pub fn kind(&self) -> SignatureErrorKind {
        match self {
            SignatureError::MalformedHeader { .. } => SignatureErrorKind::Malformed,
            SignatureError::MissingHeader(_)
            | SignatureError::TooOld { .. }
            | SignatureError::InTheFuture { .. }
            | SignatureError::Mismatch
            | SignatureError::BodyHashMismatch => SignatureErrorKind::Unauthorized,
            SignatureError::EmptyKey(_) => SignatureErrorKind::Misconfigured,
        }
    }

    pub fn is_malformed(&self) -> bool {
        self.kind() == SignatureErrorKind::Malformed
    }

    /// 400 for a malformed request, 401 for missing or wrong credentials, 500 for our config.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            SignatureErrorKind::Malformed => StatusCode::BAD_REQUEST,
            SignatureErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            SignatureErrorKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// At most this many values of one signature header are tried: enough for a key rotation or a
/// proxy's duplicate, few enough that a flood of headers costs nothing.
pub const MAX_SIGNATURES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_operator_needs_them() {
        assert_eq!(
            SignatureError::MissingHeader("telnyx-timestamp").to_string(),
            "missing header telnyx-timestamp"
        );
        assert_eq!(
            SignatureError::TooOld {
                age_seconds: 900,
                tolerance_seconds: 300
            }
            .to_string(),
            "timestamp 900 s older than the 300 s tolerance"
        );
        assert_eq!(
            SignatureError::Mismatch.to_string(),
            "signature does not match"
        );
    }

    #[test]
    fn malformed_is_400_missing_or_wrong_is_401_empty_key_is_500() {
        let malformed = SignatureError::MalformedHeader {
            header: "telnyx-timestamp",
            reason: "not a number".into(),
        };
        assert!(malformed.is_malformed());
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        for unauthorized in [
            SignatureError::MissingHeader("x-signalwire-signature"),
            SignatureError::Mismatch,
            SignatureError::BodyHashMismatch,
            SignatureError::InTheFuture {
                ahead_seconds: 301,
                tolerance_seconds: 300,
            },
        ] {
            assert!(!unauthorized.is_malformed());
            assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            SignatureError::EmptyKey("SIGNALWIRE_SIGNING_KEY").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
