//! The MAC on AssemblyAI callback URLs: `?transcription_id=<id>&sig=<mac>`, keyed by
//! `CALLBACK_SECRET`. A callback whose MAC does not match its id is refused before anything is
//! read from the database, so forged callbacks cost no query. (The per-job secret header is still
//! checked after; URLs from before the MAC existed have no `sig` and rely on it alone.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;
/// 128 bits: forging one needs 2^128 guesses, each an HTTP request.
const TAG_LEN: usize = 16;

/// Signs and checks callback URLs. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct CallbackSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for CallbackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSigner([redacted])")
    }
}

impl CallbackSigner {
    /// Derives the key from the secret, so the secret signs nothing else.
    pub fn new(secret: &SecretString) -> CallbackSigner {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes any key");
        mac.update(b"parley assemblyai callback v1");
        CallbackSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, id: Uuid) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac
    }

    /// The `sig` query value for job `id`.
    pub fn sign(&self, id: Uuid) -> String {
        let full = self.mac(id).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&full[..TAG_LEN])
    }

    /// Whether `sig` is the MAC of `id` (compared in constant time).
    pub fn verify(&self, id: Uuid, sig: &str) -> bool {
        if sig.len() > 64 {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        tag.len() == TAG_LEN && self.mac(id).verify_truncated_left(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> CallbackSigner {
        CallbackSigner::new(&SecretString::from(secret))
    }

    #[test]
    fn a_mac_verifies_for_its_job_and_key_only() {
        let s = signer("a-callback-secret-of-at-least-32-characters");
        let id = Uuid::now_v7();
        let sig = s.sign(id);
        assert!(s.verify(id, &sig));
        assert!(!s.verify(Uuid::now_v7(), &sig));
        assert!(!signer("another-callback-secret-of-32-characters!").verify(id, &sig));
        for bad in ["", "abc", &sig[..sig.len() - 1], &"A".repeat(500), "!!!!"] {
            assert!(!s.verify(id, bad), "{bad}");
        }
        assert!(!format!("{s:?}").contains("secret"));
    }
}
