//! OpenAI's configuration section: its key, host and model.

use std::fmt;

use secrecy::SecretString;

use crate::platform::settings::Reader;

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// A small current chat model that takes `temperature` and structured outputs.
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["OPENAI_API_KEY"];

#[derive(Clone)]
pub struct OpenAiSettings {
    pub api_key: Option<SecretString>,
    /// Requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish()
    }
}

impl OpenAiSettings {
    pub fn read(r: &mut Reader) -> OpenAiSettings {
        let model = r
            .get("OPENAI_MODEL")
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        if !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        {
            r.problem(
                "OPENAI_MODEL",
                format!("must be an OpenAI model id such as {DEFAULT_MODEL}; got {model:?}"),
            );
        }
        OpenAiSettings {
            api_key: r.get("OPENAI_API_KEY").map(SecretString::from),
            base_url: r
                .base_url("OPENAI_BASE_URL", Some(OPENAI_BASE_URL))
                .unwrap_or_default(),
            model,
        }
    }
}
