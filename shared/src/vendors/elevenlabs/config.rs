//! ElevenLabs' configuration section: its key, host and synthesis timeout.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use crate::platform::settings::{ConfigError, Reader};

pub const ELEVENLABS_BASE_URL: &str = "https://api.elevenlabs.io";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["ELEVENLABS_API_KEY"];

#[derive(Clone)]
pub struct ElevenLabsSettings {
    pub api_key: Option<SecretString>,
    pub base_url: String,
    /// Per-attempt timeout of a synthesis (long texts take a while to speak).
    pub timeout: Duration,
}

impl fmt::Debug for ElevenLabsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevenLabsSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ElevenLabsSettings {
    pub fn read(r: &mut Reader) -> ElevenLabsSettings {
        ElevenLabsSettings {
            api_key: r.get("ELEVENLABS_API_KEY").map(SecretString::from),
            base_url: r
                .base_url("ELEVENLABS_BASE_URL", Some(ELEVENLABS_BASE_URL))
                .unwrap_or_default(),
            // A synthesis starts only with this + 10 s left, inside the worker's 120 s timeout.
            timeout: Duration::from_millis(r.bounded(
                "ELEVENLABS_TIMEOUT_MS",
                60_000u64,
                1_000,
                100_000,
            )),
        }
    }

    /// Like AssemblyAI's, a missing key fails init (the sandbox takes any key).
    pub fn require(&self) -> Result<&ElevenLabsSettings, ConfigError> {
        if self.api_key.is_none() {
            return Err(ConfigError::single(
                "ELEVENLABS_API_KEY",
                "this function calls ElevenLabs and needs its API key",
            ));
        }
        Ok(self)
    }
}
