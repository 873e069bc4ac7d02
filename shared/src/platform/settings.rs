//! The settings reader every section of Parley's configuration goes through: the environment (and
//! the Secrets Manager secrets) read once per cold start, every problem collected and reported
//! together by variable name, and a secret's value never in an error or in `Debug` output. An empty
//! variable counts as unset. Each section (database, storage, each vendor, each domain) lives with
//! the code that uses it; `api::settings` assembles them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Where Parley runs. Deployed stages insist on explicit configuration; `local` has friendly defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Local,
    Dev,
    Staging,
    Prod,
}

impl Stage {
    pub fn is_deployed(self) -> bool {
        self != Stage::Local
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Local => "local",
            Stage::Dev => "dev",
            Stage::Staging => "staging",
            Stage::Prod => "prod",
        }
    }
}

impl FromStr for Stage {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "local" => Ok(Stage::Local),
            "dev" => Ok(Stage::Dev),
            "staging" => Ok(Stage::Staging),
            "prod" => Ok(Stage::Prod),
            _ => Err(()),
        }
    }
}

/// One thing wrong with the environment, named by variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub message: String,
}

/// Every configuration problem found, reported together.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.variable, p.message)?;
        }
        Ok(())
    }
}

// Debug is what `main` prints when init fails, so make it the readable list too.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// One problem, for a requirement checked when a function builds what it uses.
    pub fn single(variable: &'static str, message: &str) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                variable,
                message: message.to_owned(),
            }],
        }
    }
}

/// The process environment, filled from the secrets `PARLEY_SECRET_ARNS` (comma-separated, one per
/// concern) and the older single `PARLEY_SECRET_ARN` name, all read in one round trip. An
/// explicitly set variable wins.
pub async fn load_vars() -> Result<HashMap<String, String>, ConfigError> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    let ids = secret_ids(|name| vars.get(name).cloned());
    if !ids.is_empty() {
        let variable = if vars
            .get("PARLEY_SECRET_ARNS")
            .is_some_and(|v| !v.trim().is_empty())
        {
            "PARLEY_SECRET_ARNS"
        } else {
            "PARLEY_SECRET_ARN"
        };
        let secret = secrets::fetch_all(&ids)
            .await
            .map_err(|message| ConfigError::single(variable, &message))?;
        merge_secret(&mut vars, secret);
    }
    Ok(vars)
}

/// The secrets a function reads: `PARLEY_SECRET_ARNS` then `PARLEY_SECRET_ARN`, without repeats.
pub fn secret_ids(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for name in ["PARLEY_SECRET_ARNS", "PARLEY_SECRET_ARN"] {
        for id in lookup(name).unwrap_or_default().split(',').map(str::trim) {
            if !id.is_empty() && !ids.iter().any(|known| known == id) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// Fills unset (or empty) variables from the secret's keys; an explicitly set variable wins.
pub fn merge_secret(vars: &mut HashMap<String, String>, secret: HashMap<String, String>) {
    for (key, value) in secret {
        let slot = vars.entry(key).or_default();
        if slot.trim().is_empty() {
            *slot = value;
        }
    }
}

/// Reads variables for one section at a time, collecting every problem.
pub struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub problems: Vec<Problem>,
    pub stage: Stage,
}

impl<'a> Reader<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Reader<'a> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
            stage: Stage::Local,
        };
        if let Some(v) = r.get("PARLEY_STAGE") {
            r.stage = v.parse().unwrap_or_else(|()| {
                r.problem(
                    "PARLEY_STAGE",
                    format!("must be one of local, dev, staging, prod; got {v:?}"),
                );
                Stage::Local
            });
        }
        r
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn problem(&mut self, variable: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            message: message.into(),
        });
    }

    pub fn bounded<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                self.problem(
                    name,
                    format!("must be an integer from {min} to {max}; got {raw:?}"),
                );
                default
            }
        }
    }

    /// An http(s) base URL without query or fragment, trailing slash removed. Deployed stages insist
    /// on https, so a key is never sent in clear and callbacks never arrive unencrypted.
    pub fn base_url(&mut self, name: &'static str, default: Option<&str>) -> Option<String> {
        let stage = self.stage;
        let raw = self.get(name).or_else(|| default.map(str::to_owned))?;
        let https = raw.starts_with("https://");
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
                && !r.contains(['?', '#', ' '])
        });
        if !ok {
            self.problem(
                name,
                format!("must be an http(s) URL without query or fragment; got {raw:?}"),
            );
            return None;
        }
        if stage.is_deployed() && !https {
            self.problem(name, "must use https outside the local stage");
            return None;
        }
        Some(raw.trim_end_matches('/').to_owned())
    }

    pub fn queue_url(&mut self, name: &'static str) -> Option<String> {
        let raw = self.get(name)?;
        if raw.starts_with("https://") || raw.starts_with("http://") {
            Some(raw)
        } else {
            self.problem(name, "must be an SQS queue URL");
            None
        }
    }
}

/// Accepts `scheme://host[:port]` with http or https, nothing else; returns it lower-cased.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with('.')
        && !host.ends_with('.');
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    (host_ok && port_ok).then_some(lower)
}

/// Parses a PostgreSQL URL or key=value string. Errors never contain the input (it holds a password).
///
/// `sslmode=verify-full|verify-ca` (what psql users copy from Neon) become `require`: our rustls
/// connector always verifies the chain and host name, so that is at least as strict. `sslrootcert` is
/// dropped because the roots are compiled in (webpki-roots).
pub fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let normalized = normalize_ssl_params(url);
    tokio_postgres::Config::from_str(&normalized)
        .map_err(|e| {
            // tokio-postgres' messages name the option, never the value; keep only the first line.
            e.to_string()
                .lines()
                .next()
                .unwrap_or("unparsable")
                .to_owned()
        })
        .and_then(|config| {
            if config.get_hosts().is_empty() {
                Err("no host given".to_owned())
            } else {
                Ok(config)
            }
        })
}

fn normalize_ssl_params(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslrootcert="))
        .map(|p| match p {
            "sslmode=verify-full" | "sslmode=verify-ca" => "sslmode=require".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// Reading the one Secrets Manager secret that holds Parley's secrets as a JSON object.
pub mod secrets;
