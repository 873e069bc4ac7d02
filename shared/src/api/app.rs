//! What every function builds once per cold start: settings, logging, the pool and the HTTP policy.

use crate::api::auth::Sessions;
use crate::api::settings::Settings;
use crate::api::{Cors, Http};
use crate::domain::lifecycle::account::AccountDeletions;
use crate::domain::lifecycle::copies::{Holders, VendorCopies};
use crate::domain::lifecycle::export::Exports;
use crate::domain::lifecycle::{AccountWorker, LifecycleSweeper};
use crate::domain::paging::Cursors;
use crate::domain::recordings::Recordings;
use crate::domain::speech::jobs::{TtsJobs, TtsWorker};
use crate::domain::transcriptions::{TranscriptionWorker, Transcriptions};
use crate::platform::db::{self, DbPool};
use crate::platform::idempotency::{self, Idempotency};
use crate::platform::queue::JobQueue;
use crate::platform::settings::ConfigError;
use crate::platform::storage::Storage;
use crate::platform::telemetry;
use crate::vendors::assemblyai::AssemblyAi;
use crate::vendors::elevenlabs::ElevenLabs;

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
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "recordings");
        Ok(Recordings::new(
            self.db.clone(),
            storage,
            cursors,
            self.settings.recording_max_bytes,
        ))
    }

    /// The API side of transcriptions: needs the queue it sends jobs to.
    pub fn transcriptions(&self, sqs: aws_sdk_sqs::Client) -> Result<Transcriptions, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_transcription_queue()?);
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "transcriptions");
        Ok(Transcriptions::new(self.db.clone(), queue, cursors))
    }

    /// Reading transcriptions only: no queue, so no SQS client is built.
    pub fn transcription_reads(&self) -> Result<Transcriptions, ConfigError> {
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "transcriptions");
        Ok(Transcriptions::read_only(self.db.clone(), cursors))
    }

    /// The AssemblyAI client; init fails without a key.
    pub fn assemblyai(&self) -> Result<AssemblyAi, ConfigError> {
        let settings = self.settings.require_assemblyai()?;
        let http = crate::platform::http_client::http_client(self.settings.vendors.timeout);
        Ok(AssemblyAi::new(
            settings,
            self.settings.vendors.timeout,
            http,
        ))
    }

    /// Everything the transcription worker and reconciler need, checked at init.
    pub fn transcription_worker(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<TranscriptionWorker, ConfigError> {
        let mut problems = Vec::new();
        let mut check = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                problems.extend(e.problems);
            }
        };
        check(self.settings.require_storage().map(drop));
        check(self.settings.require_assemblyai().map(drop));
        check(self.settings.require_backend_url().map(drop));
        check(self.settings.require_transcription_queue().map(drop));
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(TranscriptionWorker {
            db: self.db.clone(),
            storage: Storage::new(self.settings.require_storage()?),
            vendor: self.assemblyai()?,
            idempotency: self.idempotency.clone(),
            queue: JobQueue::new(sqs, self.settings.require_transcription_queue()?),
            backend_url: self.settings.require_backend_url()?.to_owned(),
            settings: self.settings.transcription,
            max_receive_count: self.settings.queues.max_receive_count,
        })
    }

    /// The API side of speech jobs: R2 for the audio links, and the queue.
    pub fn tts_jobs(&self, sqs: aws_sdk_sqs::Client) -> Result<TtsJobs, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        let queue = JobQueue::new(sqs, self.settings.require_tts_queue()?);
        Ok(TtsJobs::new(self.db.clone(), storage, queue))
    }

    /// Reading speech jobs only: R2 for the audio links, no queue.
    pub fn tts_reads(&self) -> Result<TtsJobs, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        Ok(TtsJobs::read_only(self.db.clone(), storage))
    }

    /// Everything the speech worker and its reconciler need, checked at init.
    pub fn tts_worker(&self, sqs: aws_sdk_sqs::Client) -> Result<TtsWorker, ConfigError> {
        let mut problems = Vec::new();
        for r in [
            self.settings.require_storage().map(drop),
            self.settings.require_elevenlabs().map(drop),
            self.settings.require_tts_queue().map(drop),
        ] {
            if let Err(e) = r {
                problems.extend(e.problems);
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let elevenlabs = self.settings.require_elevenlabs()?;
        let http = crate::platform::http_client::http_client(elevenlabs.timeout);
        Ok(TtsWorker {
            db: self.db.clone(),
            storage: Storage::new(self.settings.require_storage()?),
            vendor: ElevenLabs::new(elevenlabs, http),
            idempotency: self.idempotency.clone(),
            queue: JobQueue::new(sqs, self.settings.require_tts_queue()?),
            max_receive_count: self.settings.queues.max_receive_count,
        })
    }

    /// The ElevenLabs client for deletions (the synthesis settings are not needed for those).
    pub fn elevenlabs(&self) -> Result<ElevenLabs, ConfigError> {
        let settings = self.settings.require_elevenlabs()?;
        let http = crate::platform::http_client::http_client(settings.timeout);
        Ok(ElevenLabs::new(settings, http))
    }

    /// Where deletions reach: R2 always, and each vendor this function is given a key for.
    /// `assemblyai`/`elevenlabs` say which vendors it must reach: a deployed stage fails init
    /// without their keys. Any other (or, locally, any missing) vendor's copies stay recorded in
    /// `vendor_deletions` for the sweeper, which has every key.
    pub fn vendor_copies(
        &self,
        assemblyai: bool,
        elevenlabs: bool,
    ) -> Result<VendorCopies, ConfigError> {
        let mut problems = Vec::new();
        let mut need = |wanted: bool, r: Result<(), ConfigError>| {
            if let (true, Err(e)) = (wanted, r) {
                problems.extend(e.problems);
            }
        };
        let deployed = self.settings.stage.is_deployed();
        need(true, self.settings.require_storage().map(drop));
        need(
            assemblyai && deployed,
            self.settings.require_assemblyai().map(drop),
        );
        need(
            elevenlabs && deployed,
            self.settings.require_elevenlabs().map(drop),
        );
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let holders = Holders {
            assemblyai: self.assemblyai().ok(),
            elevenlabs: self.elevenlabs().ok(),
            storage: Some(Storage::new(self.settings.require_storage()?)),
        };
        Ok(VendorCopies::new(self.db.clone(), holders))
    }

    /// `recordings-delete`: the recordings service with the AssemblyAI transcripts it deletes.
    pub fn recording_deletion(&self) -> Result<Recordings, ConfigError> {
        Ok(self
            .recordings()?
            .with_copies(self.vendor_copies(true, false)?))
    }

    /// `DELETE /api/me`: the tombstone and the account queue.
    pub fn account_deletion_requests(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<AccountDeletions, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_account_queue()?);
        Ok(AccountDeletions::requests(self.db.clone(), queue))
    }

    /// Exports from the API: R2 for the links, and the queue when `sqs` is given (create).
    pub fn exports(&self, sqs: Option<aws_sdk_sqs::Client>) -> Result<Exports, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        let queue = match sqs {
            Some(sqs) => Some(JobQueue::new(sqs, self.settings.require_account_queue()?)),
            None => None,
        };
        Ok(Exports::new(self.db.clone(), storage, queue))
    }

    /// The account worker: R2, both vendors, and the queue. Every problem reported at once.
    pub fn account_worker(&self, sqs: aws_sdk_sqs::Client) -> Result<AccountWorker, ConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.settings.require_account_queue() {
            problems.extend(e.problems);
        }
        let copies = self.vendor_copies(true, true);
        if let Err(e) = &copies {
            problems.extend(e.problems.clone());
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let queue = JobQueue::new(sqs, self.settings.require_account_queue()?);
        let storage = Storage::new(self.settings.require_storage()?);
        Ok(AccountWorker {
            deletions: AccountDeletions::worker(
                self.db.clone(),
                queue.clone(),
                storage.clone(),
                copies?,
            ),
            exports: Exports::new(self.db.clone(), storage, Some(queue)),
            max_receive_count: self.settings.queues.max_receive_count,
        })
    }

    /// The scheduled lifecycle sweep: what the account worker has, plus the retention settings.
    pub fn lifecycle_sweeper(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<LifecycleSweeper, ConfigError> {
        let worker = self.account_worker(sqs)?;
        Ok(LifecycleSweeper {
            db: self.db.clone(),
            copies: self.vendor_copies(true, true)?,
            deletions: worker.deletions,
            exports: worker.exports,
            settings: self.settings.lifecycle,
        })
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
