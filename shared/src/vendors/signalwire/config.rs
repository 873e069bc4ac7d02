//! SignalWire's configuration section: the project, its API token (REST) and signing key
//! (webhooks), the space URL, and the hosts recordings may be downloaded from.
//!
//! In the `local` stage with `SIGNALWIRE_API_TOKEN` unset, the sandbox's values apply. Deployed, a
//! missing value fails only the functions that call [`SignalWireSettings::require`].

use std::fmt;

use secrecy::SecretString;

use crate::platform::download::{HostRule, parse_host_rules};
use crate::platform::settings::{ConfigError, Problem, Reader};

/// The sandbox's credentials; it refuses any others, like SignalWire would.
pub const SANDBOX_PROJECT_ID: &str = "00000000-0000-4000-8000-00000000c0de";
pub const SANDBOX_API_TOKEN: &str = "PTsandbox";
pub const SANDBOX_SIGNING_KEY: &str = "PSKsandbox-signing-key";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["SIGNALWIRE_API_TOKEN", "SIGNALWIRE_SIGNING_KEY"];

#[derive(Clone)]
pub struct SignalWireSettings {
    pub project_id: Option<String>,
    pub api_token: Option<SecretString>,
    pub signing_key: Option<SecretString>,
    /// `https://<space>.signalwire.com`, no trailing slash.
    pub space_url: Option<String>,
    /// Hosts a `RecordingUrl` may point at: the space's own host unless `SIGNALWIRE_RECORDING_HOSTS`.
    pub recording_hosts: Vec<HostRule>,
    pub sandbox: bool,
}

impl fmt::Debug for SignalWireSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalWireSettings")
            .field("project_id", &self.project_id)
            .field("api_token", &self.api_token.as_ref().map(|_| "[redacted]"))
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "[redacted]"),
            )
            .field("space_url", &self.space_url)
            .field("recording_hosts", &self.recording_hosts)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// A project id is a UUID.
fn valid_project_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// The host of `https://host[:port]`.
fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

impl SignalWireSettings {
    pub fn read(r: &mut Reader) -> SignalWireSettings {
        let api_token = r.get("SIGNALWIRE_API_TOKEN").map(SecretString::from);
        let sandbox = api_token.is_none() && !r.stage.is_deployed();
        let project_id = match r.get("SIGNALWIRE_PROJECT_ID") {
            Some(id) if valid_project_id(&id) => Some(id.to_ascii_lowercase()),
            Some(_) => {
                r.problem(
                    "SIGNALWIRE_PROJECT_ID",
                    "must be the project's UUID from the SignalWire dashboard",
                );
                None
            }
            None => sandbox.then(|| SANDBOX_PROJECT_ID.to_owned()),
        };
        let signing_key = r
            .get("SIGNALWIRE_SIGNING_KEY")
            .map(SecretString::from)
            .or_else(|| sandbox.then(|| SecretString::from(SANDBOX_SIGNING_KEY)));
        let default_space = sandbox.then_some(super::super::telnyx::config::LOCAL_SANDBOX_URL);
        let space_url = r.base_url("SIGNALWIRE_SPACE_URL", default_space);
        if let Some(url) = &space_url
            && url::Url::parse(url).is_ok_and(|u| u.path() != "/")
        {
            r.problem(
                "SIGNALWIRE_SPACE_URL",
                "must be the space's origin, like https://example.signalwire.com (no path)",
            );
        }
        let recording_hosts = match r.get("SIGNALWIRE_RECORDING_HOSTS") {
            Some(list) => parse_host_rules(&list).unwrap_or_else(|why| {
                r.problem("SIGNALWIRE_RECORDING_HOSTS", why);
                Vec::new()
            }),
            // The media URL is on the space itself (vendors.md §11 B.4).
            None => space_url
                .as_deref()
                .and_then(host_of)
                .and_then(|h| HostRule::parse(&h).ok())
                .into_iter()
                .collect(),
        };
        SignalWireSettings {
            project_id,
            api_token: api_token.or_else(|| sandbox.then(|| SecretString::from(SANDBOX_API_TOKEN))),
            signing_key,
            space_url,
            recording_hosts,
            sandbox,
        }
    }

    /// For the functions that call SignalWire's REST API or verify its callbacks.
    pub fn require(&self) -> Result<&SignalWireSettings, ConfigError> {
        let mut problems = Vec::new();
        let mut missing = |variable: &'static str, what: &str| {
            problems.push(Problem {
                variable,
                message: format!("this function talks to SignalWire and needs {what}"),
            })
        };
        if self.project_id.is_none() {
            missing("SIGNALWIRE_PROJECT_ID", "the project id");
        }
        if self.api_token.is_none() {
            missing("SIGNALWIRE_API_TOKEN", "the project's API token");
        }
        if self.signing_key.is_none() {
            missing("SIGNALWIRE_SIGNING_KEY", "the project's signing key");
        }
        if self.space_url.is_none() {
            missing(
                "SIGNALWIRE_SPACE_URL",
                "the space URL (https://<space>.signalwire.com)",
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

    fn read(vars: &[(&str, &str)]) -> (SignalWireSettings, Vec<&'static str>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |n: &str| map.get(n).cloned();
        let mut r = Reader::new(&lookup);
        let s = SignalWireSettings::read(&mut r);
        (s, r.problems.iter().map(|p| p.variable).collect())
    }

    #[test]
    fn local_without_a_token_uses_the_sandbox() {
        let (s, problems) = read(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.sandbox && s.require().is_ok());
        assert_eq!(s.space_url.as_deref(), Some("http://127.0.0.1:9010"));
        assert_eq!(s.project_id.as_deref(), Some(SANDBOX_PROJECT_ID));
        assert_eq!(s.recording_hosts, vec![HostRule::Exact("127.0.0.1".into())]);
    }

    #[test]
    fn deployed_names_every_missing_value_and_hides_secrets() {
        let (s, problems) = read(&[("PARLEY_STAGE", "prod")]);
        assert!(problems.is_empty());
        let names: Vec<_> = s
            .require()
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.variable)
            .collect();
        assert_eq!(
            names,
            [
                "SIGNALWIRE_PROJECT_ID",
                "SIGNALWIRE_API_TOKEN",
                "SIGNALWIRE_SIGNING_KEY",
                "SIGNALWIRE_SPACE_URL"
            ]
        );
        let (s, problems) = read(&[
            ("PARLEY_STAGE", "prod"),
            (
                "SIGNALWIRE_PROJECT_ID",
                "B3877C40-DA60-4998-90AD-B792E98472AF",
            ),
            ("SIGNALWIRE_API_TOKEN", "PTvery-secret-token"),
            ("SIGNALWIRE_SIGNING_KEY", "PSKvery-secret-signing"),
            ("SIGNALWIRE_SPACE_URL", "https://Acme.signalwire.com/"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.require().is_ok());
        assert_eq!(s.space_url.as_deref(), Some("https://Acme.signalwire.com"));
        assert_eq!(
            s.recording_hosts,
            vec![HostRule::Exact("acme.signalwire.com".into())]
        );
        assert_eq!(
            s.project_id.as_deref(),
            Some("b3877c40-da60-4998-90ad-b792e98472af")
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
    }

    #[test]
    fn bad_values_are_named() {
        let (_, problems) = read(&[
            ("PARLEY_STAGE", "prod"),
            ("SIGNALWIRE_PROJECT_ID", "not-a-uuid"),
            ("SIGNALWIRE_SPACE_URL", "http://acme.signalwire.com"),
            ("SIGNALWIRE_RECORDING_HOSTS", "*"),
        ]);
        assert_eq!(
            problems,
            [
                "SIGNALWIRE_PROJECT_ID",
                "SIGNALWIRE_SPACE_URL",
                "SIGNALWIRE_RECORDING_HOSTS"
            ]
        );
        let (_, problems) = read(&[("SIGNALWIRE_SPACE_URL", "https://acme.signalwire.com/api")]);
        assert_eq!(problems, ["SIGNALWIRE_SPACE_URL"]);
    }
}
