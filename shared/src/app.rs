//! What every function builds once per cold start: settings, logging, the pool and the HTTP policy.

use crate::auth::Sessions;
use crate::config::{ConfigError, Settings};
use crate::db::{self, DbPool};
use crate::http::{Cors, Http};
use crate::idempotency::{self, Idempotency};
use crate::pagination::Cursors;
use crate::recordings::Recordings;
use crate::storage::Storage;
use crate::telemetry;

/// Shared state for one execution environment.
#[derive(Debug, Clone)]
pub struct App {
    pub settings: Settings,
    pub db: DbPool,
    pub http: Http,
    pub sessions: Sessions,
    pub idempotency: Idempotency,
}

impl App {
    /// Loads settings and builds the pool. A bad configuration fails init with every problem named.
    pub async fn init(function: &'static str) -> Result<App, ConfigError> {
        telemetry::init();
        let settings = Settings::load().await.inspect_err(|e| {
            tracing::error!(function, problems = ?e.problems, "configuration invalid");
            eprintln!("{function}: {e}");
        })?;
        let app = App::from_settings(function, settings);
        db::warm_up(&app.db).await;
        Ok(app)
    }

    /// Builds state from settings without touching the environment or the network (tests use this).
    /// The recordings service (R2 + pool), for the functions that store audio; fails init without R2.
    pub fn recordings(&self) -> Result<Recordings, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        let cursors = Cursors::new(&self.settings.auth_secret, "recordings");
        Ok(Recordings::new(
            self.db.clone(),
            storage,
            cursors,
            self.settings.recording_max_bytes,
        ))
    }

    pub fn from_settings(function: &'static str, settings: Settings) -> App {
        let db = db::pool(&settings.database);
        let http = Http::new(
            function,
            Cors::new(settings.cors_origins.clone()),
            settings.max_body_bytes,
        );
        let sessions = Sessions::new(db.clone(), settings.session);
        let idempotency = Idempotency::new(db.clone(), idempotency::DEFAULT_TTL);
        App {
            settings,
            db,
            http,
            sessions,
            idempotency,
        }
    }
}
