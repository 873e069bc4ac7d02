//! All of Parley's configuration, assembled from the sections their owners read (database,
//! storage, each vendor, each domain, the API's own), with every problem reported at once.
//! Adding a vendor is one field in [`VendorSettings`] and one `read` call here.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;

use crate::api::ratelimit::RateLimitSettings;
use crate::domain::billing::BillingSettings;
use crate::domain::lifecycle::config::LifecycleSettings;
use crate::domain::transcriptions::config::TranscriptionSettings;
use crate::domain::translations::config::TranslationSettings;
use crate::platform::db::DatabaseSettings;
use crate::platform::settings::{self, ConfigError, Reader, Stage, normalize_origin};
use crate::platform::storage::{R2_MAX_PUT_BYTES, STORAGE_VARIABLES, StorageSettings};
use crate::vendors::assemblyai::config::AssemblyAiSettings;
use crate::vendors::deepl::config::DeepLSettings;
use crate::vendors::elevenlabs::config::ElevenLabsSettings;
use crate::vendors::openai::config::OpenAiSettings;
use crate::vendors::signalwire::config::SignalWireSettings;
use crate::vendors::stripe::config::StripeSettings;
use crate::vendors::telnyx::config::TelnyxSettings;

/// All of Parley's configuration. Built once per execution environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stage: Stage,
    pub database: DatabaseSettings,
    /// Exact origins (scheme://host[:port]) allowed to call the API with credentials.
    pub cors_origins: Vec<String>,
    pub session: SessionSettings,
    /// Per-user rate limits per class of route (`RATE_LIMIT_*`).
    pub rate_limits: RateLimitSettings,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// R2 access; `None` when no `R2_*` variable is set (functions that need it refuse to start).
    pub storage: Option<StorageSettings>,
    /// Largest recording a user may upload, in bytes.
    pub recording_max_bytes: u64,
    /// Keys the HMAC that makes pagination cursors tamper-proof (`CURSOR_SECRET`); `None` when a
    /// deployed stage did not give this function one (only listing functions need it).
    pub cursor_secret: Option<SecretString>,
    /// Keys the MAC on AssemblyAI callback URLs (`CALLBACK_SECRET`); `None` when a deployed stage
    /// did not give this function one (only the transcription worker and the webhook need it).
    pub callback_secret: Option<SecretString>,
    /// Public base URL of this API (`BACKEND_URL`), for vendor callbacks; required by the workers.
    pub backend_url: Option<String>,
    /// The public base URL vendors call (`PUBLIC_BASE_URL`), when it is not API Gateway's own
    /// domain (behind a proxy or CDN): webhook signatures are checked against it.
    pub public_base_url: Option<String>,
    /// The web app's base URL (`APP_URL`): where Stripe sends a customer back after Checkout or
    /// the portal. Locally http://localhost:3000; deployed, required by the billing functions.
    pub app_url: Option<String>,
    pub queues: QueueSettings,
    pub vendors: VendorSettings,
    pub transcription: TranscriptionSettings,
    pub translation: TranslationSettings,
    pub lifecycle: LifecycleSettings,
    pub billing: BillingSettings,
}

/// SQS queue URLs; a function that sends to or is fed by a queue refuses to start without its URL.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    pub transcriptions: Option<String>,
    pub tts: Option<String>,
    /// Webhook events to apply and outbound calls to place or end.
    pub calls: Option<String>,
    /// Call recordings to take into R2.
    pub recording_ingest: Option<String>,
    pub translations: Option<String>,
    /// Account deletions and exports.
    pub account: Option<String>,
    /// Stored Stripe events for the billing worker.
    pub billing: Option<String>,
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
    pub telnyx: TelnyxSettings,
    pub signalwire: SignalWireSettings,
    pub deepl: DeepLSettings,
    pub openai: OpenAiSettings,
    pub stripe: StripeSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Auth.js `session.maxAge`: idle lifetime of a session.
    pub max_age: Duration,
    /// Auth.js `session.updateAge`: how often the expiry slides forward.
    pub update_age: Duration,
    /// Outside `local`: only `__Secure-` cookie names (and Bearer) are sessions, and a re-set
    /// cookie is always `Secure`.
    pub secure_cookies_only: bool,
}

/// Used only in the local stage, so callbacks are signed before any secret is configured.
const LOCAL_CALLBACK_SECRET: &str = "parley-local-callback-secret-not-for-deployment";

/// Used only in the local stage, so cursors work before any secret is configured.
const LOCAL_CURSOR_SECRET: &str = "parley-local-development-secret-not-for-deployment";

const LOCAL_CORS_ORIGINS: &[&str] = &["http://localhost:3000", "http://127.0.0.1:3000"];

/// The web app locally (the first of the local CORS origins).
const LOCAL_APP_URL: &str = "http://localhost:3000";

impl Settings {
    /// Reads the process environment and, when `PARLEY_SECRET_ARN` is set, the secret it names.
    pub async fn load() -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = settings::load_vars().await?;
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    /// Builds settings from any lookup, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut r = Reader::new(&lookup);
        let stage = r.stage;
        let database = DatabaseSettings::read(&mut r);
        let cors_origins = cors_origins(&mut r);
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
        let rate_limits = RateLimitSettings::read(&mut r);
        // API Gateway's payload cap is 10 MB and Lambda's 6 MB; JSON bodies are far smaller.
        let max_body_bytes = r.bounded("MAX_BODY_BYTES", 1024 * 1024usize, 1024, 6 * 1024 * 1024);
        let storage = StorageSettings::read(&mut r);
        let recording_max_bytes = r.bounded(
            "RECORDING_MAX_BYTES",
            500 * 1024 * 1024u64,
            1024,
            R2_MAX_PUT_BYTES,
        );
        let cursor_secret = secret_key(&mut r, "CURSOR_SECRET", LOCAL_CURSOR_SECRET);
        let callback_secret = secret_key(&mut r, "CALLBACK_SECRET", LOCAL_CALLBACK_SECRET);
        let backend_url = r.base_url("BACKEND_URL", None);
        let public_base_url = r.base_url("PUBLIC_BASE_URL", None);
        let local_app_url = (!stage.is_deployed()).then_some(LOCAL_APP_URL);
        let app_url = r.base_url("APP_URL", local_app_url);
        let queues = QueueSettings {
            transcriptions: r.queue_url("TRANSCRIPTION_QUEUE_URL"),
            tts: r.queue_url("TTS_QUEUE_URL"),
            calls: r.queue_url("CALL_QUEUE_URL"),
            recording_ingest: r.queue_url("RECORDING_INGEST_QUEUE_URL"),
            translations: r.queue_url("TRANSLATION_QUEUE_URL"),
            account: r.queue_url("ACCOUNT_QUEUE_URL"),
            billing: r.queue_url("BILLING_QUEUE_URL"),
            max_receive_count: r.bounded("QUEUE_MAX_RECEIVE_COUNT", 5u32, 1, 1000),
        };
        let vendors = VendorSettings {
            timeout: Duration::from_millis(r.bounded("VENDOR_TIMEOUT_MS", 8_000u64, 500, 60_000)),
            assemblyai: AssemblyAiSettings::read(&mut r),
            elevenlabs: ElevenLabsSettings::read(&mut r),
            telnyx: TelnyxSettings::read(&mut r),
            signalwire: SignalWireSettings::read(&mut r),
            deepl: DeepLSettings::read(&mut r),
            openai: OpenAiSettings::read(&mut r),
            stripe: StripeSettings::read(&mut r),
        };
        let transcription = TranscriptionSettings::read(&mut r);
        let translation = TranslationSettings::read(&mut r);
        let lifecycle = LifecycleSettings::read(&mut r);
        let billing = BillingSettings::read(&mut r);

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Settings {
            stage,
            database: database.expect("a missing URL is reported as a problem"),
            cors_origins,
            session: SessionSettings {
                max_age: Duration::from_secs(max_age),
                update_age: Duration::from_secs(update_age),
                secure_cookies_only: stage.is_deployed(),
            },
            rate_limits,
            max_body_bytes,
            storage,
            recording_max_bytes,
            cursor_secret,
            callback_secret,
            backend_url,
            public_base_url,
            app_url,
            queues,
            vendors,
            transcription,
            translation,
            lifecycle,
            billing,
        })
    }

    pub fn require_assemblyai(&self) -> Result<&AssemblyAiSettings, ConfigError> {
        self.vendors.assemblyai.require()
    }

    pub fn require_elevenlabs(&self) -> Result<&ElevenLabsSettings, ConfigError> {
        self.vendors.elevenlabs.require()
    }

    pub fn require_telnyx(&self) -> Result<&TelnyxSettings, ConfigError> {
        self.vendors.telnyx.require()
    }

    pub fn require_signalwire(&self) -> Result<&SignalWireSettings, ConfigError> {
        self.vendors.signalwire.require()
    }

    /// The public URL vendors call back, without a trailing slash.
    pub fn require_backend_url(&self) -> Result<&str, ConfigError> {
        self.backend_url.as_deref().ok_or_else(|| {
            ConfigError::single(
                "BACKEND_URL",
                "this function gives vendors a callback URL and needs the API's public base URL",
            )
        })
    }

    pub fn require_transcription_queue(&self) -> Result<&str, ConfigError> {
        self.queues.transcriptions.as_deref().ok_or_else(|| {
            ConfigError::single(
                "TRANSCRIPTION_QUEUE_URL",
                "this function sends transcription jobs",
            )
        })
    }

    /// The translation providers: DeepL, OpenAI or both; a function that translates refuses to
    /// start with neither (the local stack points both at the sandbox when no key is set).
    pub fn require_translation_keys(&self) -> Result<(), ConfigError> {
        if self.vendors.deepl.api_key.is_none() && self.vendors.openai.api_key.is_none() {
            return Err(ConfigError::single(
                "DEEPL_API_KEY",
                "this function translates and needs DEEPL_API_KEY, OPENAI_API_KEY or both",
            ));
        }
        Ok(())
    }

    pub fn require_translation_queue(&self) -> Result<&str, ConfigError> {
        self.queues.translations.as_deref().ok_or_else(|| {
            ConfigError::single(
                "TRANSLATION_QUEUE_URL",
                "this function sends translation jobs",
            )
        })
    }

    pub fn require_tts_queue(&self) -> Result<&str, ConfigError> {
        self.queues
            .tts
            .as_deref()
            .ok_or_else(|| ConfigError::single("TTS_QUEUE_URL", "this function sends speech jobs"))
    }

    pub fn require_call_queue(&self) -> Result<&str, ConfigError> {
        self.queues.calls.as_deref().ok_or_else(|| {
            ConfigError::single(
                "CALL_QUEUE_URL",
                "this function sends call events and dials",
            )
        })
    }

    pub fn require_recording_ingest_queue(&self) -> Result<&str, ConfigError> {
        self.queues.recording_ingest.as_deref().ok_or_else(|| {
            ConfigError::single(
                "RECORDING_INGEST_QUEUE_URL",
                "this function sends call recordings to ingest",
            )
        })
    }

    pub fn require_account_queue(&self) -> Result<&str, ConfigError> {
        self.queues.account.as_deref().ok_or_else(|| {
            ConfigError::single(
                "ACCOUNT_QUEUE_URL",
                "this function sends account deletions or exports",
            )
        })
    }

    pub fn require_billing_queue(&self) -> Result<&str, ConfigError> {
        self.queues.billing.as_deref().ok_or_else(|| {
            ConfigError::single(
                "BILLING_QUEUE_URL",
                "this function sends or re-sends Stripe events to the billing worker",
            )
        })
    }

    pub fn require_stripe(&self) -> Result<&StripeSettings, ConfigError> {
        self.vendors.stripe.require_api()
    }

    /// The web app's base URL, for the pages Stripe sends customers back to.
    pub fn require_app_url(&self) -> Result<&str, ConfigError> {
        self.app_url.as_deref().ok_or_else(|| {
            ConfigError::single(
                "APP_URL",
                "this function sends customers to Stripe and needs the web app's URL to bring them back",
            )
        })
    }

    /// The key of the pagination cursors, for the functions that list.
    pub fn require_cursor_key(&self) -> Result<&SecretString, ConfigError> {
        self.cursor_secret.as_ref().ok_or_else(|| {
            ConfigError::single(
                "CURSOR_SECRET",
                "this function signs or checks pagination cursors and needs their key",
            )
        })
    }

    /// The key of the callback URLs' MAC, for the transcription worker and the AssemblyAI webhook.
    pub fn require_callback_key(&self) -> Result<&SecretString, ConfigError> {
        self.callback_secret.as_ref().ok_or_else(|| {
            ConfigError::single(
                "CALLBACK_SECRET",
                "this function signs or checks AssemblyAI callback URLs and needs their key",
            )
        })
    }

    /// The R2 settings, or an init error naming what is missing.
    pub fn require_storage(&self) -> Result<&StorageSettings, ConfigError> {
        self.storage.as_ref().ok_or_else(|| {
            ConfigError::single(
                "R2_BUCKET_NAME",
                &format!("this function stores recordings and needs {STORAGE_VARIABLES}"),
            )
        })
    }
}

/// An HMAC key variable: 32+ characters; a fixed stand-in locally, `None` when a deployed stage
/// did not set it (the functions that need it refuse to start).
fn secret_key(r: &mut Reader, name: &'static str, local: &str) -> Option<SecretString> {
    match r.get(name) {
        Some(secret) if secret.len() >= 32 => Some(SecretString::from(secret)),
        Some(_) => {
            r.problem(
                name,
                "must be at least 32 characters (e.g. `openssl rand -base64 33`)",
            );
            None
        }
        None if r.stage.is_deployed() => None,
        None => Some(SecretString::from(local)),
    }
}

fn cors_origins(r: &mut Reader) -> Vec<String> {
    let stage = r.stage;
    let Some(raw) = r.get("CORS_ORIGINS") else {
        if stage.is_deployed() {
            r.problem(
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
            None => r.problem(
                "CORS_ORIGINS",
                format!("{part:?} is not an exact origin like https://app.example.com (no path, no wildcard)"),
            ),
        }
    }
    origins
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::settings::{merge_secret, parse_database_url, secrets};

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

    const TLS_URL: &str = "postgres://parley:hunter2-secret@db.example.com/parley?sslmode=require";

    const DEPLOYED: &[(&str, &str)] = &[
        ("DATABASE_URL", TLS_URL),
        ("PARLEY_STAGE", "prod"),
        ("CORS_ORIGINS", "https://app.example.com"),
        ("CURSOR_SECRET", "0123456789abcdef0123456789abcdef0123"),
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

    #[test]
    fn the_cursor_key_is_required_only_where_cursors_are_made() {
        let deployed_without = &DEPLOYED[..3];
        let s = settings(deployed_without).unwrap();
        assert_eq!(
            s.require_cursor_key().unwrap_err().problems[0].variable,
            "CURSOR_SECRET"
        );
        assert!(settings(DEPLOYED).unwrap().require_cursor_key().is_ok());
        let mut short = deployed_without.to_vec();
        short.push(("CURSOR_SECRET", "too-short"));
        let e = settings(&short).unwrap_err();
        assert_eq!(e.problems[0].variable, "CURSOR_SECRET");
        assert!(!e.to_string().contains("too-short"));
        let local = settings(&[("DATABASE_URL", URL)]).unwrap();
        assert!(local.require_cursor_key().is_ok());
    }

    #[test]
    fn telephony_keys_are_required_only_where_used_and_sandboxed_locally() {
        let s = settings(DEPLOYED).unwrap();
        let names = |e: ConfigError| e.problems.iter().map(|p| p.variable).collect::<Vec<_>>();
        assert_eq!(
            names(s.require_telnyx().unwrap_err()),
            ["TELNYX_API_KEY", "TELNYX_PUBLIC_KEY"]
        );
        assert_eq!(s.require_signalwire().unwrap_err().problems.len(), 4);
        let local = settings(&[("DATABASE_URL", URL)]).unwrap();
        assert!(local.require_telnyx().is_ok() && local.require_signalwire().is_ok());
        let mut vars = DEPLOYED.to_vec();
        vars.push(("TELNYX_PUBLIC_KEY", "short"));
        assert_eq!(
            settings(&vars).unwrap_err().problems[0].variable,
            "TELNYX_PUBLIC_KEY"
        );
    }

    #[test]
    fn deployed_stages_refuse_a_database_url_that_may_travel_in_clear() {
        for (url, ok) in [
            (URL, false),
            ("postgres://u:hunter2-secret@h/db?sslmode=prefer", false),
            ("postgres://u:hunter2-secret@h/db?sslmode=disable", false),
            ("postgres://u:hunter2-secret@h/db?sslmode=require", true),
            ("postgres://u:hunter2-secret@h/db?sslmode=verify-ca", true),
            (
                "postgresql://u:hunter2-secret@h/db?sslmode=verify-full&sslrootcert=system",
                true,
            ),
        ] {
            for stage in ["dev", "staging", "prod"] {
                let mut vars = DEPLOYED.to_vec();
                vars.retain(|(k, _)| *k != "DATABASE_URL" && *k != "PARLEY_STAGE");
                vars.extend([("DATABASE_URL", url), ("PARLEY_STAGE", stage)]);
                match settings(&vars) {
                    Ok(_) => assert!(ok, "{stage}: {url} was accepted"),
                    Err(e) => {
                        assert!(!ok, "{stage}: {url} was refused: {e}");
                        assert_eq!(e.problems.len(), 1, "{e}");
                        assert_eq!(e.problems[0].variable, "DATABASE_URL");
                        assert!(e.problems[0].message.contains("sslmode=require"), "{e}");
                        assert!(!e.to_string().contains("hunter2"), "{e}");
                    }
                }
            }
        }
        // Neon's alias is held to the same rule, and named in the problem.
        let e = settings(&[
            ("NEON_PG_CONN", URL),
            ("PARLEY_STAGE", "prod"),
            ("CORS_ORIGINS", "https://app.example.com"),
        ])
        .unwrap_err();
        assert_eq!(e.problems[0].variable, "NEON_PG_CONN");
        // The local stage keeps its plain loopback database.
        assert!(settings(&[("DATABASE_URL", URL)]).is_ok());
    }
}
