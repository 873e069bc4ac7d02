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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> (OpenAiSettings, Vec<&'static str>) {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let mut r = Reader::new(&lookup);
        let s = OpenAiSettings::read(&mut r);
        (s, r.problems.iter().map(|p| p.variable).collect())
    }

    #[test]
    fn defaults_are_openais_host_and_a_small_model_and_the_key_never_shows() {
        let (s, problems) = read(&[("OPENAI_API_KEY", "sk-proj-very-secret")]);
        assert!(problems.is_empty());
        assert_eq!(s.base_url, OPENAI_BASE_URL);
        assert_eq!(s.model, DEFAULT_MODEL);
        assert!(!format!("{s:?}").contains("very-secret"));
        let (_, problems) = read(&[("OPENAI_MODEL", "gpt 4; drop")]);
        assert_eq!(problems, ["OPENAI_MODEL"]);
        let (_, problems) = read(&[
            ("PARLEY_STAGE", "prod"),
            ("OPENAI_BASE_URL", "http://api.openai.com/v1"),
        ]);
        assert_eq!(problems, ["OPENAI_BASE_URL"]);
    }
}
