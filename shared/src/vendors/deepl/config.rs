//! DeepL's configuration section: its key and host. The host follows the key (DeepL's rule: Free
//! keys end in `:fx`) unless `DEEPL_BASE_URL` overrides it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::platform::settings::Reader;

pub const DEEPL_PRO_URL: &str = "https://api.deepl.com";
pub const DEEPL_FREE_URL: &str = "https://api-free.deepl.com";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["DEEPL_API_KEY"];

#[derive(Clone)]
pub struct DeepLSettings {
    pub api_key: Option<SecretString>,
    /// `DEEPL_BASE_URL`, when set; otherwise [`DeepLSettings::base_url`] picks by the key.
    pub base_url_override: Option<String>,
    /// Tries per request (`DEEPL_MAX_ATTEMPTS`): 429 and 5xx are retried, 456 never.
    pub max_attempts: u32,
}

impl fmt::Debug for DeepLSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeepLSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url())
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl DeepLSettings {
    pub fn read(r: &mut Reader) -> DeepLSettings {
        DeepLSettings {
            api_key: r.get("DEEPL_API_KEY").map(SecretString::from),
            base_url_override: r.base_url("DEEPL_BASE_URL", None),
            max_attempts: r.bounded("DEEPL_MAX_ATTEMPTS", 4u32, 1, 10),
        }
    }

    /// `DEEPL_BASE_URL`, else the Free host for a key ending `:fx`, else the Pro host.
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.base_url_override {
            return url.clone();
        }
        let free = self
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().ends_with(":fx"));
        if free { DEEPL_FREE_URL } else { DEEPL_PRO_URL }.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_key(key: Option<&str>, url: Option<&str>) -> DeepLSettings {
        DeepLSettings {
            api_key: key.map(SecretString::from),
            base_url_override: url.map(str::to_owned),
            max_attempts: 4,
        }
    }

    #[test]
    fn the_host_follows_the_key_unless_overridden() {
        assert_eq!(
            with_key(Some("0123-abcd:fx"), None).base_url(),
            DEEPL_FREE_URL
        );
        assert_eq!(with_key(Some("0123-abcd"), None).base_url(), DEEPL_PRO_URL);
        assert_eq!(
            with_key(Some("0123-abcd:fx"), Some("http://127.0.0.1:9")).base_url(),
            "http://127.0.0.1:9"
        );
        assert!(!format!("{:?}", with_key(Some("secret-key:fx"), None)).contains("secret-key"));
    }
}
