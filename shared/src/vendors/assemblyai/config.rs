//! AssemblyAI's configuration section: its key and hosts.

use std::fmt;

use secrecy::SecretString;

use crate::platform::settings::{ConfigError, Reader};

pub const ASSEMBLYAI_BASE_URL: &str = "https://api.assemblyai.com";
pub const ASSEMBLYAI_STREAMING_BASE_URL: &str = "https://streaming.assemblyai.com";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["ASSEMBLYAI_API_KEY"];

#[derive(Clone)]
pub struct AssemblyAiSettings {
    pub api_key: Option<SecretString>,
    pub base_url: String,
    pub streaming_base_url: String,
}

impl fmt::Debug for AssemblyAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssemblyAiSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url)
            .field("streaming_base_url", &self.streaming_base_url)
            .finish()
    }
}

impl AssemblyAiSettings {
    pub fn read(r: &mut Reader) -> AssemblyAiSettings {
        AssemblyAiSettings {
            api_key: r.get("ASSEMBLYAI_API_KEY").map(SecretString::from),
            base_url: r
                .base_url("ASSEMBLYAI_BASE_URL", Some(ASSEMBLYAI_BASE_URL))
                .unwrap_or_default(),
            streaming_base_url: r
                .base_url(
                    "ASSEMBLYAI_STREAMING_BASE_URL",
                    Some(ASSEMBLYAI_STREAMING_BASE_URL),
                )
                .unwrap_or_default(),
        }
    }

    /// Outside the local stage a missing key fails init; locally `cargo xtask dev` points the base
    /// URLs at the bundled sandbox, which accepts any key.
    pub fn require(&self) -> Result<&AssemblyAiSettings, ConfigError> {
        if self.api_key.is_none() {
            return Err(ConfigError::single(
                "ASSEMBLYAI_API_KEY",
                "this function calls AssemblyAI and needs its API key",
            ));
        }
        Ok(self)
    }
}
