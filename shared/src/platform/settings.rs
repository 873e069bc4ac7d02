//! Typed settings, read from the environment (and the Secrets Manager secret) once per cold start.
//!
//! Every problem is collected and reported together, by variable name; a secret's value never appears
//! in an error or in `Debug` output. An empty variable counts as unset.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

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

/// All of Parley's configuration. Built once per execution environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stage: Stage,
    pub database: DatabaseSettings,
    /// Exact origins (scheme://host[:port]) allowed to call the API with credentials.
    pub cors_origins: Vec<String>,
    pub session: SessionSettings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// R2 access; `None` when no `R2_*` variable is set (functions that need it refuse to start).
    pub storage: Option<StorageSettings>,
    /// Largest recording a user may upload, in bytes.
    pub recording_max_bytes: u64,
    /// Keys the HMAC that makes pagination cursors tamper-proof (Auth.js's `AUTH_SECRET`).
    pub auth_secret: SecretString,
    /// Public base URL of this API (`BACKEND_URL`), for vendor callbacks; required by the workers.
    pub backend_url: Option<String>,
    pub queues: QueueSettings,
    pub vendors: VendorSettings,
    pub transcription: TranscriptionSettings,
}

/// SQS queue URLs; a function that sends to or is fed by a queue refuses to start without its URL.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    pub transcriptions: Option<String>,
    pub tts: Option<String>,
    /// The queues' `maxReceiveCount`: the delivery on which a failing job is marked `failed`.
    pub max_receive_count: u32,
}

/// Vendor endpoints and keys. A key is `None` when unset; deployed stages refuse a missing key only
/// in the functions that call that vendor (see [`Settings::require_assemblyai`]).
#[derive(Debug, Clone)]
pub struct VendorSettings {
    /// Per-attempt timeout of every vendor call.
    pub timeout: Duration,
    pub assemblyai: AssemblyAiSettings,
    pub elevenlabs: ElevenLabsSettings,
}

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

#[derive(Debug, Clone, Copy)]
pub struct TranscriptionSettings {
    /// How long AssemblyAI may read the recording through its presigned URL (it may queue the job).
    pub audio_url_ttl: Duration,
    /// A job `processing` this long without a callback is polled by the reconciler.
    pub reconcile_after: Duration,
    /// A submission whose outcome is unknown (the worker died mid-call) and that no callback has
    /// claimed within this window is marked `failed` rather than sent twice.
    pub unconfirmed_after: Duration,
}

#[derive(Clone)]
pub struct StorageSettings {
    /// `R2_ENDPOINT`, or `https://<R2_ACCOUNT_ID>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// The variables R2 access needs, for error messages.
const STORAGE_VARIABLES: &str =
    "R2_ENDPOINT or R2_ACCOUNT_ID, R2_BUCKET_NAME, R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY";

/// R2's single-PUT limit (5 GiB less 5 MiB): presigned uploads are single PUTs.
const R2_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;

/// Used only in the local stage, so cursors work before any secret is configured.
const LOCAL_AUTH_SECRET: &str = "parley-local-development-secret-not-for-deployment";

#[derive(Clone)]
pub struct DatabaseSettings {
    /// The parsed connection settings; the URL itself is a secret and is not kept.
    pub pg: tokio_postgres::Config,
    pub pool_max_size: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Zero disables the `statement_timeout` startup option.
    pub statement_timeout: Duration,
}

impl fmt::Debug for DatabaseSettings {
    // tokio_postgres::Config's own Debug already redacts the password; hosts are not secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("hosts", &self.pg.get_hosts())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("password", &self.pg.get_password().map(|_| "[redacted]"))
            .field("ssl_mode", &self.pg.get_ssl_mode())
            .field("pool_max_size", &self.pool_max_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Auth.js `session.maxAge`: idle lifetime of a session.
    pub max_age: Duration,
    /// Auth.js `session.updateAge`: how often the expiry slides forward.
    pub update_age: Duration,
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

/// Variables whose values are secrets: never echoed, and also read from the Secrets Manager secret.
pub const SECRET_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "NEON_PG_CONN",
    "R2_SECRET_ACCESS_KEY",
    "AUTH_SECRET",
    "ASSEMBLYAI_API_KEY",
    "ELEVENLABS_API_KEY",
];

const LOCAL_CORS_ORIGINS: &[&str] = &["http://localhost:3000", "http://127.0.0.1:3000"];

impl Settings {
    /// Reads the process environment and, when `PARLEY_SECRET_ARN` is set, the secret it names.
    pub async fn load() -> Result<Settings, ConfigError> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if let Some(arn) = vars
            .get("PARLEY_SECRET_ARN")
            .filter(|v| !v.trim().is_empty())
        {
            let secret = crate::platform::settings::secrets::fetch(arn.trim())
                .await
                .map_err(|message| ConfigError {
                    problems: vec![Problem {
                        variable: "PARLEY_SECRET_ARN",
                        message,
                    }],
                })?;
            merge_secret(&mut vars, secret);
        }
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    /// Builds settings from any lookup, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut r = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };

        let stage = match r.get("PARLEY_STAGE") {
            None => Stage::Local,
            Some(v) => v.parse().unwrap_or_else(|()| {
                r.problem(
                    "PARLEY_STAGE",
                    format!("must be one of local, dev, staging, prod; got {v:?}"),
                );
                Stage::Local
            }),
        };

        let pool_max_size = r.bounded("DB_POOL_MAX_SIZE", 2usize, 1, 32);
        let connect_timeout =
            Duration::from_millis(r.bounded("DB_CONNECT_TIMEOUT_MS", 3_000u64, 250, 10_000));
        let acquire_timeout =
            Duration::from_millis(r.bounded("DB_ACQUIRE_TIMEOUT_MS", 3_000u64, 100, 10_000));
        let statement_timeout =
            Duration::from_millis(r.bounded("DB_STATEMENT_TIMEOUT_MS", 5_000u64, 0, 60_000));
        let pg = r.database_url();

        let cors_origins = r.cors_origins(stage);

        let max_age = r.bounded(
            "SESSION_MAX_AGE_SECONDS",
            30 * 24 * 3600u64,
            60,
            365 * 24 * 3600,
        );
        let update_age = r.bounded(
            "SESSION_UPDATE_AGE_SECONDS",
            24 * 3600u64,
            0,
            365 * 24 * 3600,
        );
        if update_age > max_age {
            r.problem(
                "SESSION_UPDATE_AGE_SECONDS",
                format!("must not exceed SESSION_MAX_AGE_SECONDS ({max_age}); got {update_age}"),
            );
        }
        // API Gateway's payload cap is 10 MB and Lambda's 6 MB; JSON bodies are far smaller.
        let max_body_bytes = r.bounded("MAX_BODY_BYTES", 1024 * 1024usize, 1024, 6 * 1024 * 1024);
        let storage = r.storage();
        let recording_max_bytes = r.bounded(
            "RECORDING_MAX_BYTES",
            500 * 1024 * 1024u64,
            1024,
            R2_MAX_PUT_BYTES,
        );
        let auth_secret = r.auth_secret(stage);
        let backend_url = r.base_url("BACKEND_URL", None, stage);
        let queues = QueueSettings {
            transcriptions: r.queue_url("TRANSCRIPTION_QUEUE_URL"),
            tts: r.queue_url("TTS_QUEUE_URL"),
            max_receive_count: r.bounded("QUEUE_MAX_RECEIVE_COUNT", 5u32, 1, 1000),
        };
        let vendors = VendorSettings {
            timeout: Duration::from_millis(r.bounded("VENDOR_TIMEOUT_MS", 8_000u64, 500, 60_000)),
            assemblyai: AssemblyAiSettings {
                api_key: r.get("ASSEMBLYAI_API_KEY").map(SecretString::from),
                base_url: r
                    .base_url("ASSEMBLYAI_BASE_URL", Some(ASSEMBLYAI_BASE_URL), stage)
                    .unwrap_or_default(),
                streaming_base_url: r
                    .base_url(
                        "ASSEMBLYAI_STREAMING_BASE_URL",
                        Some(ASSEMBLYAI_STREAMING_BASE_URL),
                        stage,
                    )
                    .unwrap_or_default(),
            },
            elevenlabs: ElevenLabsSettings {
                api_key: r.get("ELEVENLABS_API_KEY").map(SecretString::from),
                base_url: r
                    .base_url("ELEVENLABS_BASE_URL", Some(ELEVENLABS_BASE_URL), stage)
                    .unwrap_or_default(),
                // A synthesis starts only with this + 10 s left, inside the worker's 120 s timeout.
                timeout: Duration::from_millis(r.bounded(
                    "ELEVENLABS_TIMEOUT_MS",
                    60_000u64,
                    1_000,
                    100_000,
                )),
            },
        };
        let transcription = TranscriptionSettings {
            // S3/R2 presigned URLs live at most 7 days.
            audio_url_ttl: Duration::from_secs(r.bounded(
                "ASSEMBLYAI_AUDIO_URL_TTL_SECONDS",
                24 * 3600u64,
                900,
                7 * 24 * 3600,
            )),
            reconcile_after: Duration::from_secs(r.bounded(
                "TRANSCRIPTION_RECONCILE_AFTER_SECONDS",
                600u64,
                30,
                24 * 3600,
            )),
            unconfirmed_after: Duration::from_secs(r.bounded(
                "TRANSCRIPTION_UNCONFIRMED_AFTER_SECONDS",
                6 * 3600u64,
                60,
                7 * 24 * 3600,
            )),
        };

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Settings {
            stage,
            database: DatabaseSettings {
                pg: pg.expect("a missing URL is reported as a problem"),
                pool_max_size,
                connect_timeout,
                acquire_timeout,
                statement_timeout,
            },
            cors_origins,
            session: SessionSettings {
                max_age: Duration::from_secs(max_age),
                update_age: Duration::from_secs(update_age),
            },
            max_body_bytes,
            storage,
            recording_max_bytes,
            auth_secret,
            backend_url,
            queues,
            vendors,
            transcription,
        })
    }

    /// AssemblyAI's key. Outside the local stage a missing key fails init; locally `cargo xtask dev`
    /// points the base URLs at the bundled sandbox, which accepts any key.
    pub fn require_assemblyai(&self) -> Result<&AssemblyAiSettings, ConfigError> {
        let settings = &self.vendors.assemblyai;
        if settings.api_key.is_none() {
            return Err(single(
                "ASSEMBLYAI_API_KEY",
                "this function calls AssemblyAI and needs its API key",
            ));
        }
        Ok(settings)
    }

    /// ElevenLabs' key; like AssemblyAI's, missing means init fails (the sandbox takes any key).
    pub fn require_elevenlabs(&self) -> Result<&ElevenLabsSettings, ConfigError> {
        let settings = &self.vendors.elevenlabs;
        if settings.api_key.is_none() {
            return Err(single(
                "ELEVENLABS_API_KEY",
                "this function calls ElevenLabs and needs its API key",
            ));
        }
        Ok(settings)
    }

    /// The public URL vendors call back, without a trailing slash.
    pub fn require_backend_url(&self) -> Result<&str, ConfigError> {
        self.backend_url.as_deref().ok_or_else(|| {
            single(
                "BACKEND_URL",
                "this function gives vendors a callback URL and needs the API's public base URL",
            )
        })
    }

    pub fn require_transcription_queue(&self) -> Result<&str, ConfigError> {
        self.queues.transcriptions.as_deref().ok_or_else(|| {
            single(
                "TRANSCRIPTION_QUEUE_URL",
                "this function sends transcription jobs",
            )
        })
    }

    pub fn require_tts_queue(&self) -> Result<&str, ConfigError> {
        self.queues
            .tts
            .as_deref()
            .ok_or_else(|| single("TTS_QUEUE_URL", "this function sends speech jobs"))
    }

    /// The R2 settings, or an init error naming what is missing.
    pub fn require_storage(&self) -> Result<&StorageSettings, ConfigError> {
        self.storage.as_ref().ok_or_else(|| ConfigError {
            problems: vec![Problem {
                variable: "R2_BUCKET_NAME",
                message: format!("this function stores recordings and needs {STORAGE_VARIABLES}"),
            }],
        })
    }
}

fn single(variable: &'static str, message: &str) -> ConfigError {
    ConfigError {
        problems: vec![Problem {
            variable,
            message: message.to_owned(),
        }],
    }
}

pub const ASSEMBLYAI_BASE_URL: &str = "https://api.assemblyai.com";
pub const ASSEMBLYAI_STREAMING_BASE_URL: &str = "https://streaming.assemblyai.com";
pub const ELEVENLABS_BASE_URL: &str = "https://api.elevenlabs.io";

/// Fills unset (or empty) variables from the secret's keys; an explicitly set variable wins.
fn merge_secret(vars: &mut HashMap<String, String>, secret: HashMap<String, String>) {
    for (key, value) in secret {
        let slot = vars.entry(key).or_default();
        if slot.trim().is_empty() {
            *slot = value;
        }
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, variable: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            message: message.into(),
        });
    }

    fn bounded<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> T
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

    fn database_url(&mut self) -> Option<tokio_postgres::Config> {
        let (name, url) = match (self.get("DATABASE_URL"), self.get("NEON_PG_CONN")) {
            (Some(url), _) => ("DATABASE_URL", url),
            (None, Some(url)) => ("NEON_PG_CONN", url),
            (None, None) => {
                self.problem(
                    "DATABASE_URL",
                    "is required (NEON_PG_CONN is accepted as an alias)",
                );
                return None;
            }
        };
        let url = SecretString::from(url);
        match parse_database_url(url.expose_secret()) {
            Ok(config) => Some(config),
            Err(reason) => {
                let variable = if name == "DATABASE_URL" {
                    "DATABASE_URL"
                } else {
                    "NEON_PG_CONN"
                };
                self.problem(
                    variable,
                    format!("is not a usable PostgreSQL URL: {reason}"),
                );
                None
            }
        }
    }

    fn storage(&mut self) -> Option<StorageSettings> {
        let endpoint = self.get("R2_ENDPOINT");
        let account = self.get("R2_ACCOUNT_ID");
        let bucket = self.get("R2_BUCKET_NAME");
        let key_id = self.get("R2_ACCESS_KEY_ID");
        let secret = self.get("R2_SECRET_ACCESS_KEY");
        if [&endpoint, &account, &bucket, &key_id, &secret]
            .iter()
            .all(|v| v.is_none())
        {
            return None;
        }
        let endpoint = match (endpoint, account) {
            (Some(e), _) if e.starts_with("https://") || e.starts_with("http://") => {
                Some(e.trim_end_matches('/').to_owned())
            }
            (Some(_), _) => {
                self.problem("R2_ENDPOINT", "must be an http(s) URL");
                None
            }
            (None, Some(a)) if a.len() <= 64 && a.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(format!("https://{a}.r2.cloudflarestorage.com"))
            }
            (None, Some(_)) => {
                self.problem(
                    "R2_ACCOUNT_ID",
                    "must be the alphanumeric Cloudflare account id",
                );
                None
            }
            (None, None) => {
                self.problem(
                    "R2_ENDPOINT",
                    "is required with the other R2 settings (or set R2_ACCOUNT_ID)",
                );
                None
            }
        };
        let bucket = bucket.filter(|b| {
            b.len() >= 3
                && b.len() <= 63
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        if bucket.is_none() {
            self.problem(
                "R2_BUCKET_NAME",
                "is required: 3-63 lowercase letters, digits or hyphens",
            );
        }
        if key_id.is_none() {
            self.problem("R2_ACCESS_KEY_ID", "is required with the other R2 settings");
        }
        if secret.is_none() {
            self.problem(
                "R2_SECRET_ACCESS_KEY",
                "is required with the other R2 settings",
            );
        }
        Some(StorageSettings {
            endpoint: endpoint?,
            bucket: bucket?,
            access_key_id: key_id?,
            secret_access_key: SecretString::from(secret?),
        })
    }

    /// An http(s) base URL without query or fragment, trailing slash removed. Deployed stages insist
    /// on https, so a key is never sent in clear and callbacks never arrive unencrypted.
    fn base_url(
        &mut self,
        name: &'static str,
        default: Option<&str>,
        stage: Stage,
    ) -> Option<String> {
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

    fn queue_url(&mut self, name: &'static str) -> Option<String> {
        let raw = self.get(name)?;
        if raw.starts_with("https://") || raw.starts_with("http://") {
            Some(raw)
        } else {
            self.problem(name, "must be an SQS queue URL");
            None
        }
    }

    fn auth_secret(&mut self, stage: Stage) -> SecretString {
        match self.get("AUTH_SECRET") {
            Some(secret) if secret.len() >= 32 => SecretString::from(secret),
            Some(_) => {
                self.problem(
                    "AUTH_SECRET",
                    "must be at least 32 characters (e.g. `openssl rand -base64 33`)",
                );
                SecretString::from(LOCAL_AUTH_SECRET)
            }
            None if stage.is_deployed() => {
                self.problem("AUTH_SECRET", "is required outside the local stage");
                SecretString::from(LOCAL_AUTH_SECRET)
            }
            None => SecretString::from(LOCAL_AUTH_SECRET),
        }
    }

    fn cors_origins(&mut self, stage: Stage) -> Vec<String> {
        let Some(raw) = self.get("CORS_ORIGINS") else {
            if stage.is_deployed() {
                self.problem(
                    "CORS_ORIGINS",
                    "is required outside the local stage (comma-separated exact origins)",
                );
            }
            return if stage.is_deployed() {
                Vec::new()
            } else {
                LOCAL_CORS_ORIGINS.iter().map(|o| o.to_string()).collect()
            };
        };
        let mut origins = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match normalize_origin(part) {
                Some(origin) => origins.push(origin),
                None => self.problem(
                    "CORS_ORIGINS",
                    format!("{part:?} is not an exact origin like https://app.example.com (no path, no wildcard)"),
                ),
            }
        }
        origins
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
pub mod secrets {
    use std::collections::HashMap;

    /// Fetches `arn` and returns its JSON object of string values. Errors never contain secret values.
    pub async fn fetch(arn: &str) -> Result<HashMap<String, String>, String> {
        let config = crate::platform::aws::sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&config);
        let output = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not read the secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let text = output
            .secret_string()
            .ok_or("the secret has no SecretString")?;
        parse_secret_json(text)
    }

    /// The secret must be a flat JSON object; numbers and booleans are accepted as their text.
    pub fn parse_secret_json(text: &str) -> Result<HashMap<String, String>, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "the secret is not a JSON object".to_owned())?;
        let object = value.as_object().ok_or("the secret is not a JSON object")?;
        let mut out = HashMap::new();
        for (key, value) in object {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(format!("the secret's key {key:?} must hold a string")),
            };
            out.insert(key.clone(), text);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    const URL: &str = "postgres://parley:hunter2-secret@127.0.0.1:5432/parley";

    #[test]
    fn local_defaults_apply_when_only_the_database_is_given() {
        let s = settings(&[("DATABASE_URL", URL)]).unwrap();
        assert_eq!(s.stage, Stage::Local);
        assert_eq!(
            s.cors_origins,
            vec!["http://localhost:3000", "http://127.0.0.1:3000"]
        );
        assert_eq!(s.database.pool_max_size, 2);
        assert_eq!(s.database.acquire_timeout, Duration::from_secs(3));
        assert_eq!(s.session.max_age, Duration::from_secs(2_592_000));
        assert_eq!(s.session.update_age, Duration::from_secs(86_400));
        assert_eq!(s.max_body_bytes, 1_048_576);
    }

    #[test]
    fn neon_pg_conn_is_accepted_as_an_alias() {
        let s = settings(&[("NEON_PG_CONN", URL)]).unwrap();
        assert_eq!(s.database.pg.get_dbname(), Some("parley"));
    }

    #[test]
    fn every_problem_is_reported_at_once_by_name() {
        let err = settings(&[
            ("PARLEY_STAGE", "prod"),
            ("DB_POOL_MAX_SIZE", "0"),
            ("DB_CONNECT_TIMEOUT_MS", "soon"),
            ("SESSION_MAX_AGE_SECONDS", "3600"),
            ("SESSION_UPDATE_AGE_SECONDS", "7200"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            names,
            vec![
                "DB_POOL_MAX_SIZE",
                "DB_CONNECT_TIMEOUT_MS",
                "DATABASE_URL",
                "CORS_ORIGINS",
                "SESSION_UPDATE_AGE_SECONDS",
                "AUTH_SECRET"
            ]
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let err = settings(&[("DATABASE_URL", "   "), ("DB_POOL_MAX_SIZE", "")]).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].variable, "DATABASE_URL");
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let err = settings(&[(
            "DATABASE_URL",
            "postgres://u:hunter2-secret@h/db?sslmode=bogus",
        )])
        .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("DATABASE_URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");

        let ok = settings(&[("DATABASE_URL", URL)]).unwrap();
        let debug = format!("{ok:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn cors_origins_must_be_exact_origins() {
        let s = settings(&[
            ("DATABASE_URL", URL),
            (
                "CORS_ORIGINS",
                "https://App.example.com, http://localhost:3000",
            ),
        ])
        .unwrap();
        assert_eq!(
            s.cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "https://app.example.com/",
            "ftp://x.example",
            "https://*.example.com",
            "https://x:99999",
        ] {
            let err = settings(&[("DATABASE_URL", URL), ("CORS_ORIGINS", bad)]).unwrap_err();
            assert_eq!(err.problems[0].variable, "CORS_ORIGINS", "{bad}");
        }
    }

    #[test]
    fn storage_is_all_or_nothing_and_derives_the_r2_endpoint() {
        assert!(
            settings(&[("DATABASE_URL", URL)])
                .unwrap()
                .storage
                .is_none()
        );
        let s = settings(&[
            ("DATABASE_URL", URL),
            ("R2_ACCOUNT_ID", "0123abcd"),
            ("R2_BUCKET_NAME", "calls"),
            ("R2_ACCESS_KEY_ID", "AKID"),
            ("R2_SECRET_ACCESS_KEY", "r2-secret-value"),
        ])
        .unwrap();
        let storage = s.storage.as_ref().unwrap();
        assert_eq!(
            storage.endpoint,
            "https://0123abcd.r2.cloudflarestorage.com"
        );
        assert!(!format!("{s:?}").contains("r2-secret-value"));
        let err = settings(&[("DATABASE_URL", URL), ("R2_BUCKET_NAME", "calls")]).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            names,
            vec!["R2_ENDPOINT", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"]
        );
    }

    #[test]
    fn neon_style_urls_parse_with_tls_required() {
        let cfg = parse_database_url(
            "postgresql://u:p@ep-x-pooler.us-east-2.aws.neon.tech/neondb?sslmode=verify-full&sslrootcert=system&channel_binding=require",
        )
        .unwrap();
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(cfg.get_dbname(), Some("neondb"));
    }

    #[test]
    fn secret_json_fills_only_unset_variables() {
        let secret = secrets::parse_secret_json(
            r#"{"DATABASE_URL":"postgres://s@h/db","DB_POOL_MAX_SIZE":4}"#,
        )
        .unwrap();
        let mut vars = HashMap::from([
            ("DB_POOL_MAX_SIZE".to_owned(), "3".to_owned()),
            ("DATABASE_URL".to_owned(), "".to_owned()),
        ]);
        merge_secret(&mut vars, secret);
        assert_eq!(vars["DATABASE_URL"], "postgres://s@h/db");
        assert_eq!(vars["DB_POOL_MAX_SIZE"], "3");
        assert!(secrets::parse_secret_json("[1]").is_err());
        assert!(secrets::parse_secret_json(r#"{"A":{"nested":1}}"#).is_err());
    }

    const DEPLOYED: &[(&str, &str)] = &[
        ("DATABASE_URL", URL),
        ("PARLEY_STAGE", "prod"),
        ("CORS_ORIGINS", "https://app.example.com"),
        ("AUTH_SECRET", "0123456789abcdef0123456789abcdef0123"),
    ];

    #[test]
    fn vendor_defaults_are_the_documented_hosts() {
        let s = settings(&[("DATABASE_URL", URL)]).unwrap();
        assert_eq!(s.vendors.assemblyai.base_url, "https://api.assemblyai.com");
        assert_eq!(
            s.vendors.assemblyai.streaming_base_url,
            "https://streaming.assemblyai.com"
        );
        assert_eq!(s.vendors.elevenlabs.base_url, "https://api.elevenlabs.io");
        assert_eq!(s.queues.max_receive_count, 5);
        assert_eq!(s.transcription.audio_url_ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn deployed_stages_refuse_plain_http_vendors_and_callbacks() {
        let mut vars = DEPLOYED.to_vec();
        vars.extend([
            ("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9010"),
            ("BACKEND_URL", "http://api.example.com"),
            ("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io/?x=1"),
        ]);
        let e = settings(&vars).unwrap_err();
        let named: Vec<&str> = e.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            named,
            ["BACKEND_URL", "ASSEMBLYAI_BASE_URL", "ELEVENLABS_BASE_URL"]
        );
        // Locally, the sandbox on loopback is fine.
        let local = settings(&[
            ("DATABASE_URL", URL),
            ("ASSEMBLYAI_BASE_URL", "http://127.0.0.1:9010/"),
        ])
        .unwrap();
        assert_eq!(local.vendors.assemblyai.base_url, "http://127.0.0.1:9010");
    }

    #[test]
    fn a_missing_key_fails_the_functions_that_need_it_and_keys_never_show() {
        let s = settings(DEPLOYED).unwrap();
        let e = s.require_assemblyai().unwrap_err();
        assert_eq!(e.problems[0].variable, "ASSEMBLYAI_API_KEY");
        assert_eq!(
            s.require_elevenlabs().unwrap_err().problems[0].variable,
            "ELEVENLABS_API_KEY"
        );
        assert_eq!(
            s.require_backend_url().unwrap_err().problems[0].variable,
            "BACKEND_URL"
        );
        let mut vars = DEPLOYED.to_vec();
        vars.extend([
            ("ASSEMBLYAI_API_KEY", "aai-very-secret-key"),
            ("ELEVENLABS_API_KEY", "sk_el_very_secret"),
        ]);
        let s = settings(&vars).unwrap();
        assert!(s.require_assemblyai().is_ok() && s.require_elevenlabs().is_ok());
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("very-secret") && !debug.contains("very_secret"),
            "{debug}"
        );
    }
}
