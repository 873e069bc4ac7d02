//! What every function builds once per cold start: settings, logging, the pool and the HTTP policy.

use crate::api::auth::Sessions;
use crate::api::settings::Settings;
use crate::api::{Cors, Http};
use crate::domain::billing::Ledger;
use crate::domain::billing::stripe::{BillingWorker, StripeBilling, StripeOutbox};
use crate::domain::calls::Calls;
use crate::domain::calls::ingest::RecordingIngest;
use crate::domain::calls::numbers::PhoneNumbers;
use crate::domain::calls::webhooks::WebhookEvents;
use crate::domain::calls::worker::CallWorker;
use crate::domain::lifecycle::account::AccountDeletions;
use crate::domain::lifecycle::copies::{Holders, VendorCopies};
use crate::domain::lifecycle::export::Exports;
use crate::domain::lifecycle::{AccountWorker, LifecycleSweeper};
use crate::domain::paging::Cursors;
use crate::domain::recordings::Recordings;
use crate::domain::speech::jobs::{TtsJobs, TtsWorker};
use crate::domain::transcriptions::{CallbackSigner, TranscriptionWorker, Transcriptions};
use crate::domain::translations::Translator;
use crate::domain::translations::jobs::{TranslationJobs, TranslationWorker};
use crate::platform::db::{self, DbPool};
use crate::platform::download::{DownloadPolicy, Downloader};
use crate::platform::idempotency::{self, Idempotency};
use crate::platform::queue::JobQueue;
use crate::platform::settings::ConfigError;
use crate::platform::storage::Storage;
use crate::platform::telemetry;
use crate::vendors::assemblyai::AssemblyAi;
use crate::vendors::deepl::DeepL;
use crate::vendors::elevenlabs::ElevenLabs;
use crate::vendors::signalwire::client::SignalWire;
use crate::vendors::stripe::client::Stripe;
use crate::vendors::telnyx::client::Telnyx;

/// A Telnyx webhook receiver's state.
#[derive(Debug, Clone)]
pub struct TelnyxReceiver {
    pub events: WebhookEvents,
    pub key: ed25519_dalek::VerifyingKey,
    pub tolerance: std::time::Duration,
}

/// A SignalWire callback receiver's state.
#[derive(Clone)]
pub struct SignalWireReceiver {
    pub events: WebhookEvents,
    pub signing_key: secrecy::SecretString,
    pub public_base_url: Option<String>,
}

impl std::fmt::Debug for SignalWireReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalWireReceiver")
            .field("signing_key", &"[redacted]")
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}
use crate::vendors::openai::OpenAi;

/// The Stripe webhook receiver's state: every endpoint secret it accepts, and the outbox.
#[derive(Clone)]
pub struct StripeReceiver {
    pub outbox: StripeOutbox,
    pub secrets: Vec<secrecy::SecretString>,
    pub tolerance: std::time::Duration,
}

impl std::fmt::Debug for StripeReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeReceiver")
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Shared state for one execution environment.
#[derive(Debug, Clone)]
pub struct App {
    pub settings: Settings,
    pub db: DbPool,
    pub http: Http,
    pub sessions: Sessions,
    pub idempotency: Idempotency,
    /// The usage ledger every paid path reserves in before it spends.
    pub ledger: Ledger,
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
        )
        .with_ledger(self.ledger.clone()))
    }

    /// The API side of transcriptions: needs the queue it sends jobs to.
    pub fn transcriptions(&self, sqs: aws_sdk_sqs::Client) -> Result<Transcriptions, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_transcription_queue()?);
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "transcriptions");
        Ok(Transcriptions::new(
            self.db.clone(),
            queue,
            cursors,
            self.ledger.clone(),
        ))
    }

    /// Reading transcriptions only: no queue, so no SQS client is built.
    pub fn transcription_reads(&self) -> Result<Transcriptions, ConfigError> {
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "transcriptions");
        Ok(Transcriptions::read_only(self.db.clone(), cursors))
    }

    /// Signs (worker) and checks (webhook) the MAC on AssemblyAI callback URLs; init fails without its key.
    pub fn callback_signer(&self) -> Result<CallbackSigner, ConfigError> {
        Ok(CallbackSigner::new(self.settings.require_callback_key()?))
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
        check(self.settings.require_callback_key().map(drop));
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
            callbacks: self.callback_signer()?,
            settings: self.settings.transcription,
            max_receive_count: self.settings.queues.max_receive_count,
            ledger: self.ledger.clone(),
        })
    }

    /// The API side of speech jobs: R2 for the audio links, and the queue.
    pub fn tts_jobs(&self, sqs: aws_sdk_sqs::Client) -> Result<TtsJobs, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        let queue = JobQueue::new(sqs, self.settings.require_tts_queue()?);
        Ok(TtsJobs::new(
            self.db.clone(),
            storage,
            queue,
            self.ledger.clone(),
        ))
    }

    /// Reading speech jobs only: R2 for the audio links, no queue.
    pub fn tts_reads(&self) -> Result<TtsJobs, ConfigError> {
        let storage = Storage::new(self.settings.require_storage()?);
        Ok(TtsJobs::read_only(self.db.clone(), storage).with_ledger(self.ledger.clone()))
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
            ledger: self.ledger.clone(),
        })
    }

    /// Phone numbers: listing (cursors) and settings.
    pub fn phone_numbers(&self) -> Result<PhoneNumbers, ConfigError> {
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "phone-numbers");
        Ok(PhoneNumbers::new(self.db.clone(), cursors))
    }

    /// Calls that place or end calls: they send to the call queue.
    pub fn calls(&self, sqs: aws_sdk_sqs::Client) -> Result<Calls, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_call_queue()?);
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "calls");
        Ok(Calls::new(
            self.db.clone(),
            cursors,
            queue,
            self.ledger.clone(),
        ))
    }

    /// Reading calls only: no queue, so no SQS client is built.
    pub fn call_reads(&self) -> Result<Calls, ConfigError> {
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "calls");
        Ok(Calls::read_only(self.db.clone(), cursors))
    }

    /// The webhook outbox: receivers store events and send them to the call queue.
    pub fn webhook_events(&self, sqs: aws_sdk_sqs::Client) -> Result<WebhookEvents, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_call_queue()?);
        Ok(WebhookEvents::new(self.db.clone(), queue))
    }

    /// What a Telnyx receiver needs: the account's public key and the outbox.
    pub fn telnyx_receiver(&self, sqs: aws_sdk_sqs::Client) -> Result<TelnyxReceiver, ConfigError> {
        let telnyx = &self.settings.vendors.telnyx;
        let key = telnyx.public_key.ok_or_else(|| {
            ConfigError::single(
                "TELNYX_PUBLIC_KEY",
                "this function verifies Telnyx webhooks and needs the account's public key",
            )
        })?;
        Ok(TelnyxReceiver {
            events: self.webhook_events(sqs)?,
            key,
            tolerance: telnyx.webhook_tolerance,
        })
    }

    /// What a SignalWire receiver needs: the project's signing key and the outbox.
    pub fn signalwire_receiver(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<SignalWireReceiver, ConfigError> {
        let signing_key = self
            .settings
            .vendors
            .signalwire
            .signing_key
            .clone()
            .ok_or_else(|| {
                ConfigError::single(
                    "SIGNALWIRE_SIGNING_KEY",
                    "this function verifies SignalWire callbacks and needs the project's signing key",
                )
            })?;
        Ok(SignalWireReceiver {
            events: self.webhook_events(sqs)?,
            signing_key,
            public_base_url: self.settings.public_base_url.clone(),
        })
    }

    /// The Telnyx client when its API key is set; SignalWire's when its project is.
    fn telephony_clients(&self) -> (Option<Telnyx>, Option<SignalWire>) {
        let vendors = &self.settings.vendors;
        let http = crate::platform::http_client::http_client(vendors.timeout);
        let telnyx = vendors
            .telnyx
            .api_key
            .is_some()
            .then(|| Telnyx::new(&vendors.telnyx, http.clone(), vendors.timeout));
        let sw = &vendors.signalwire;
        let signalwire =
            (sw.project_id.is_some() && sw.api_token.is_some() && sw.space_url.is_some())
                .then(|| SignalWire::new(sw, http, vendors.timeout));
        (telnyx, signalwire)
    }

    /// The call worker: applies events, sends commands, dials and hangs up.
    pub fn call_worker(&self, sqs: aws_sdk_sqs::Client) -> Result<CallWorker, ConfigError> {
        let (telnyx, signalwire) = self.telephony_clients();
        if telnyx.is_none() && signalwire.is_none() {
            return Err(ConfigError::single(
                "TELNYX_API_KEY",
                "the call worker needs Telnyx (TELNYX_API_KEY) or SignalWire \
                 (SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN, SIGNALWIRE_SPACE_URL)",
            ));
        }
        let ingest = JobQueue::new(sqs.clone(), self.settings.require_recording_ingest_queue()?);
        Ok(CallWorker {
            db: self.db.clone(),
            events: self.webhook_events(sqs)?,
            ingest,
            telnyx,
            speak_voice: self.settings.vendors.telnyx.speak_voice.clone(),
            signalwire,
            callback_base: self
                .settings
                .public_base_url
                .clone()
                .or_else(|| self.settings.backend_url.clone()),
            max_receive_count: self.settings.queues.max_receive_count,
            ledger: self.ledger.clone(),
        })
    }

    /// The recording-ingest worker: vendor → R2, then the recording row and its transcription.
    pub fn recording_ingest(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<RecordingIngest, ConfigError> {
        let policy = |hosts: &Vec<crate::platform::download::HostRule>| DownloadPolicy {
            allowed_hosts: hosts.clone(),
            allow_loopback_http: self.settings.stage == crate::platform::settings::Stage::Local,
            max_bytes: self.settings.recording_max_bytes,
            max_redirects: crate::platform::download::MAX_REDIRECTS,
        };
        let vendors = &self.settings.vendors;
        let (telnyx, _) = self.telephony_clients();
        Ok(RecordingIngest {
            db: self.db.clone(),
            events: self.webhook_events(sqs.clone())?,
            storage: Storage::new(self.settings.require_storage()?),
            telnyx_downloads: Downloader::new(policy(&vendors.telnyx.recording_hosts)),
            signalwire_downloads: Downloader::new(policy(&vendors.signalwire.recording_hosts)),
            telnyx,
            transcriptions: self.transcriptions(sqs)?,
            ledger: self.ledger.clone(),
            max_receive_count: self.settings.queues.max_receive_count,
        })
    }

    /// DeepL first, OpenAI as the fallback, with whichever keys are set; init fails with neither.
    pub fn translator(&self) -> Result<Translator, ConfigError> {
        self.settings.require_translation_keys()?;
        let vendors = &self.settings.vendors;
        let http = crate::platform::http_client::http_client(vendors.timeout);
        let deepl = vendors
            .deepl
            .api_key
            .is_some()
            .then(|| DeepL::new(&vendors.deepl, vendors.timeout, http.clone()));
        let openai = vendors
            .openai
            .api_key
            .is_some()
            .then(|| OpenAi::new(&vendors.openai, vendors.timeout, http));
        Ok(Translator::new(deepl, openai, &self.settings.translation)
            .with_ledger(self.ledger.clone()))
    }

    /// The API side of transcript translations: the queue it sends jobs to.
    pub fn translation_jobs(
        &self,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<TranslationJobs, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_translation_queue()?);
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "translations");
        let first_provider = if self.settings.vendors.deepl.api_key.is_some() {
            crate::domain::translations::provider::Provider::Deepl
        } else {
            crate::domain::translations::provider::Provider::Openai
        };
        Ok(TranslationJobs::new(
            self.db.clone(),
            queue,
            cursors,
            self.ledger.clone(),
            first_provider,
        ))
    }

    /// Reading translations only: no queue, no vendor.
    pub fn translation_reads(&self) -> Result<TranslationJobs, ConfigError> {
        let cursors = Cursors::new(self.settings.require_cursor_key()?, "translations");
        Ok(TranslationJobs::read_only(self.db.clone(), cursors))
    }

    /// The translation worker: a provider key and the pool.
    pub fn translation_worker(&self) -> Result<TranslationWorker, ConfigError> {
        Ok(TranslationWorker {
            db: self.db.clone(),
            translator: self.translator()?,
            idempotency: self.idempotency.clone(),
            ledger: self.ledger.clone(),
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
        let (telnyx, signalwire) = self.telephony_clients();
        let holders = Holders {
            assemblyai: self.assemblyai().ok(),
            elevenlabs: self.elevenlabs().ok(),
            storage: Some(Storage::new(self.settings.require_storage()?)),
            telnyx,
            signalwire,
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
            )
            // Subscriptions are cancelled at Stripe; without a key, only users with none can go.
            .with_stripe(self.stripe().ok()),
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

    /// The Stripe client; init fails without `STRIPE_SECRET_KEY` (locally: the sandbox's).
    pub fn stripe(&self) -> Result<Stripe, ConfigError> {
        let settings = self.settings.require_stripe()?;
        let timeout = self.settings.vendors.timeout;
        let http = crate::platform::http_client::http_client(timeout);
        Ok(Stripe::new(settings, http, timeout))
    }

    /// `billing-checkout` and `billing-portal`: Stripe and the web app's URL.
    pub fn stripe_billing(&self) -> Result<StripeBilling, ConfigError> {
        let mut problems = Vec::new();
        for r in [
            self.settings.require_stripe().map(drop),
            self.settings.require_app_url().map(drop),
        ] {
            if let Err(e) = r {
                problems.extend(e.problems);
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(StripeBilling::new(
            self.db.clone(),
            self.stripe()?,
            self.settings.require_app_url()?,
        ))
    }

    /// Stored Stripe events and the billing queue they are sent to.
    pub fn stripe_outbox(&self, sqs: aws_sdk_sqs::Client) -> Result<StripeOutbox, ConfigError> {
        let queue = JobQueue::new(sqs, self.settings.require_billing_queue()?);
        Ok(StripeOutbox::new(self.db.clone(), queue))
    }

    /// What the Stripe receiver needs: the endpoint secrets and the outbox.
    pub fn stripe_receiver(&self, sqs: aws_sdk_sqs::Client) -> Result<StripeReceiver, ConfigError> {
        let stripe = self.settings.vendors.stripe.require_webhook()?;
        Ok(StripeReceiver {
            outbox: self.stripe_outbox(sqs)?,
            secrets: stripe.webhook_secrets.clone(),
            tolerance: crate::vendors::stripe::signature::DEFAULT_TOLERANCE,
        })
    }

    /// The billing worker: Stripe (to re-fetch subscriptions) and the pool.
    pub fn billing_worker(&self) -> Result<BillingWorker, ConfigError> {
        Ok(BillingWorker {
            db: self.db.clone(),
            stripe: self.stripe()?,
            max_receive_count: self.settings.queues.max_receive_count,
        })
    }

    pub fn from_settings(function: &'static str, settings: Settings) -> App {
        let db = db::pool(&settings.database);
        let http = Http::new(
            function,
            Cors::new(settings.cors_origins.clone()),
            settings.max_body_bytes,
        );
        let sessions = Sessions::new(
            db.clone(),
            settings.session,
            settings
                .rate_limits
                .for_function(function, crate::api::pipeline::READ_ONLY_FUNCTIONS),
        );
        let idempotency = Idempotency::new(db.clone(), idempotency::DEFAULT_TTL);
        let ledger = Ledger::new(db.clone(), settings.billing.clone());
        App {
            settings,
            db,
            http,
            sessions,
            idempotency,
            ledger,
        }
    }
}
