//! Telnyx's configuration section: the API key, the webhook public key and tolerance, the host, the
//! default `speak` voice and the hosts recordings may be downloaded from.
//!
//! In the `local` stage with `TELNYX_API_KEY` unset, the sandbox's values apply (its key, its fixed
//! development signing key, its URL), so `cargo xtask dev` and the tests need no Telnyx account.
//! Deployed, a missing key or public key fails only the functions that call [`TelnyxSettings::require`].

use std::fmt;
use std::time::Duration;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use secrecy::SecretString;

use crate::platform::download::{HostRule, parse_host_rules};
use crate::platform::settings::{ConfigError, Reader};

pub const TELNYX_BASE_URL: &str = "https://api.telnyx.com/v2";
/// Telnyx's SDKs reject webhooks whose timestamp is further than this from now.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// A documented `speak` voice (`<Provider>.<Model>.<VoiceId>`) that works at the default service level.
pub const DEFAULT_SPEAK_VOICE: &str = "AWS.Polly.Joanna-Neural";
/// Where `call.recording.saved` URLs point: Telnyx's own S3 buckets, path-style on the global
/// endpoint per its docs (storing-call-recordings), plus that service's virtual-hosted form.
pub const DEFAULT_RECORDING_HOSTS: &str = "s3.amazonaws.com,*.s3.amazonaws.com";
/// The bundled sandbox's default address (`PARLEY_SANDBOX_PORT`), used locally when no key is set.
pub const LOCAL_SANDBOX_URL: &str = "http://127.0.0.1:9010";
/// The sandbox's key: any request carrying another is refused, like Telnyx would.
pub const SANDBOX_API_KEY: &str = "sandbox";
/// The public half of the sandbox's fixed development signing key (see `telnyx::sandbox`). Only
/// ever trusted in the `local` stage with no Telnyx key configured.
pub const SANDBOX_PUBLIC_KEY_B64: &str = "IyYWhCM2bKCMEf78oppOrLX22Zvr6n+NCJmsKOrzwP0=";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["TELNYX_API_KEY"];

#[derive(Clone)]
pub struct TelnyxSettings {
    pub api_key: Option<SecretString>,
    /// The account's Ed25519 webhook key (`TELNYX_PUBLIC_KEY`, base64 of 32 bytes).
    pub public_key: Option<VerifyingKey>,
    pub base_url: String,
    pub webhook_tolerance: Duration,
    /// `speak` requires a voice; this is the one used when a number sets none.
    pub speak_voice: String,
    /// Hosts `recording_urls`/`download_urls` may point at (`TELNYX_RECORDING_HOSTS`).
    pub recording_hosts: Vec<HostRule>,
    /// True when the sandbox's values were filled in (local stage, no key).
    pub sandbox: bool,
}

impl fmt::Debug for TelnyxSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelnyxSettings")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field(
                "public_key",
                &self
                    .public_key
                    .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_bytes())),
            )
            .field("base_url", &self.base_url)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .field("speak_voice", &self.speak_voice)
            .field("recording_hosts", &self.recording_hosts)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// Base64 (standard, padding optional) of exactly 32 bytes that form a valid Ed25519 point.
pub fn parse_public_key(raw: &str) -> Result<VerifyingKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw.trim()))
        .map_err(|_| "must be the base64 public key from the Telnyx portal".to_owned())?;
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("must decode to 32 bytes; got {}", bytes.len()))?;
    VerifyingKey::from_bytes(&array).map_err(|_| "is not a valid Ed25519 public key".to_owned())
}

impl TelnyxSettings {
    pub fn read(r: &mut Reader) -> TelnyxSettings {
        let api_key = r.get("TELNYX_API_KEY").map(SecretString::from);
        let sandbox = api_key.is_none() && !r.stage.is_deployed();
        let public_key = match r.get("TELNYX_PUBLIC_KEY") {
            Some(raw) => match parse_public_key(&raw) {
                Ok(k) => Some(k),
                Err(why) => {
                    r.problem("TELNYX_PUBLIC_KEY", why);
                    None
                }
            },
            None if sandbox => {
                Some(parse_public_key(SANDBOX_PUBLIC_KEY_B64).expect("the sandbox key is valid"))
            }
            None => None,
        };
        let default_base = if sandbox {
            format!("{LOCAL_SANDBOX_URL}/v2")
        } else {
            TELNYX_BASE_URL.to_owned()
        };
        let base_url = r
            .base_url("TELNYX_BASE_URL", Some(&default_base))
            .unwrap_or_default();
        let recording_hosts = match parse_host_rules(
            &r.get("TELNYX_RECORDING_HOSTS")
                .unwrap_or_else(|| DEFAULT_RECORDING_HOSTS.to_owned()),
        ) {
            Ok(rules) => rules,
            Err(why) => {
                r.problem("TELNYX_RECORDING_HOSTS", why);
                Vec::new()
            }
        };
        let speak_voice = r
            .get("TELNYX_SPEAK_VOICE")
            .unwrap_or_else(|| DEFAULT_SPEAK_VOICE.to_owned());
        if speak_voice.len() > 200
            || !speak_voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            r.problem(
                "TELNYX_SPEAK_VOICE",
                "must be a Telnyx voice such as AWS.Polly.Joanna-Neural, Telnyx.KokoroTTS.af or female",
            );
        }
        TelnyxSettings {
            api_key: api_key.or_else(|| sandbox.then(|| SecretString::from(SANDBOX_API_KEY))),
            public_key,
            base_url,
            webhook_tolerance: Duration::from_secs(r.bounded(
                "TELNYX_WEBHOOK_TOLERANCE_SECONDS",
                DEFAULT_TOLERANCE_SECONDS,
                1,
                3_600,
            )),
            speak_voice,
            recording_hosts,
            sandbox,
        }
    }

    /// For the functions that send commands or verify Telnyx webhooks: both keys must be set.
    pub fn require(&self) -> Result<&TelnyxSettings, ConfigError> {
        let mut problems = Vec::new();
        if self.api_key.is_none() {
            problems.extend(
                ConfigError::single(
                    "TELNYX_API_KEY",
                    "this function calls Telnyx and needs its API key",
                )
                .problems,
            );
        }
        if self.public_key.is_none() {
            problems.extend(
                ConfigError::single(
                    "TELNYX_PUBLIC_KEY",
                    "this function verifies Telnyx webhooks and needs the account's public key",
                )
                .problems,
            );
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> (TelnyxSettings, Vec<&'static str>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |n: &str| map.get(n).cloned();
        let mut r = Reader::new(&lookup);
        let s = TelnyxSettings::read(&mut r);
        (s, r.problems.iter().map(|p| p.variable).collect())
    }

    // RFC 8032 test 1 public key.
    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn local_without_a_key_uses_the_sandbox() {
        let (s, problems) = read(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.sandbox);
        assert_eq!(s.base_url, "http://127.0.0.1:9010/v2");
        assert!(s.require().is_ok());
        assert_eq!(s.speak_voice, DEFAULT_SPEAK_VOICE);
        assert_eq!(s.webhook_tolerance, Duration::from_secs(300));
        assert_eq!(s.recording_hosts.len(), 2);
    }

    #[test]
    fn deployed_without_keys_fails_only_on_require_and_names_both() {
        let (s, problems) = read(&[("PARLEY_STAGE", "prod")]);
        assert!(problems.is_empty());
        assert!(!s.sandbox);
        assert_eq!(s.base_url, TELNYX_BASE_URL);
        let e = s.require().unwrap_err();
        let names: Vec<_> = e.problems.iter().map(|p| p.variable).collect();
        assert_eq!(names, ["TELNYX_API_KEY", "TELNYX_PUBLIC_KEY"]);
    }

    #[test]
    fn keys_are_validated_and_never_shown() {
        let (s, problems) = read(&[
            ("PARLEY_STAGE", "prod"),
            ("TELNYX_API_KEY", "KEY0123-very-secret"),
            ("TELNYX_PUBLIC_KEY", KEY),
            ("TELNYX_WEBHOOK_TOLERANCE_SECONDS", "60"),
            (
                "TELNYX_RECORDING_HOSTS",
                "s3.amazonaws.com, *.example-cdn.net",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.require().is_ok());
        assert_eq!(s.webhook_tolerance, Duration::from_secs(60));
        assert!(!format!("{s:?}").contains("very-secret"));
        let (_, problems) = read(&[
            ("TELNYX_PUBLIC_KEY", "AAAA"),
            ("TELNYX_WEBHOOK_TOLERANCE_SECONDS", "0"),
            ("TELNYX_RECORDING_HOSTS", "https://x.com"),
            ("TELNYX_SPEAK_VOICE", "bad voice<"),
            ("TELNYX_BASE_URL", "ftp://x"),
        ]);
        assert_eq!(
            problems,
            [
                "TELNYX_PUBLIC_KEY",
                "TELNYX_BASE_URL",
                "TELNYX_RECORDING_HOSTS",
                "TELNYX_SPEAK_VOICE",
                "TELNYX_WEBHOOK_TOLERANCE_SECONDS"
            ]
        );
    }

    #[test]
    fn public_keys_must_be_32_byte_points() {
        assert!(parse_public_key(KEY).is_ok());
        assert!(parse_public_key(KEY.trim_end_matches('=')).is_ok());
        assert!(parse_public_key("not base64!").is_err());
        assert!(
            parse_public_key(&base64::engine::general_purpose::STANDARD.encode([1u8; 31])).is_err()
        );
    }
}
