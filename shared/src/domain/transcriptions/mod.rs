//! Transcription jobs: a recording goes to AssemblyAI and comes back as a stored transcript.
//!
//! The row is the state machine (`queued` → `processing` → `completed` | `failed`). Every SQS message
//! only says "advance row X", so duplicate deliveries, DLQ redrives, callbacks and the reconciler
//! all converge. A submission is checkpointed (`submit_started_at`) before it leaves, and AssemblyAI's
//! id is saved before the message is acknowledged: a job is never submitted twice. If a worker dies
//! mid-submission, the callback (authenticated by the job's secret, then checked against AssemblyAI)
//! adopts the transcript; if none comes, the reconciler fails the job instead of paying twice.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::billing::meter::audio_seconds_bound;
use crate::domain::billing::{Ledger, Meter, Units, Vendor};
use crate::domain::ids::UserId;
use crate::domain::jobs::{self, ErrorCode, JobTable, Pending, PublicError, Retry, Status};
use crate::domain::owned::owned_row;
use crate::domain::paging::{Cursors, Keyed, Page, Position};
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::http_client::VendorError;
use crate::platform::idempotency::{Claim, Idempotency, IdempotencyError};
use crate::platform::queue::{Delivery, JobQueue};
use crate::platform::storage::Storage;
use crate::vendors::assemblyai::{
    self, AssemblyAi, CreateTranscript, Transcript, TranscriptStatus,
};
use config::TranscriptionSettings;

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;
/// The idempotency scope of the submission step (the lease that keeps two workers from racing).
const SUBMIT_SCOPE: &str = "transcription-worker:submit";
/// Advance transcription `transcription_id`. Sent when it is created, by the AssemblyAI callback
/// and by the reconciler; the worker decides what to do from the row, so every copy is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptionJob {
    pub transcription_id: Uuid,
    /// The transcript id a callback named: only a hint, checked against AssemblyAI before use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_transcript_id: Option<String>,
}

pub mod callback;
pub mod config;
pub mod realtime;

pub use callback::CallbackSigner;

/// Why a delivery left a job alone: another one holds its submission lease.
const SUBMITTING_ELSEWHERE: &str = "another delivery is submitting this job";

const TABLE: JobTable = JobTable {
    name: "transcriptions",
    mark_sent: "UPDATE transcriptions SET message_sent_at = now(), updated_at = now() WHERE id = $1",
    lease_column: "submit_started_at",
    cleared_on_failure: "",
    // An overdue `processing` job is polled at AssemblyAI instead (see `reconcile`).
    resend_stale_processing: false,
};

/// A transcription as `GET /api/transcriptions/{id}` shows it: its summary and its content.
#[derive(Debug, Clone, Serialize)]
pub struct Transcription {
    #[serde(flatten)]
    pub summary: Summary,
    pub text: Option<String>,
    pub utterances: Vec<assemblyai::Utterance>,
    pub words: Vec<assemblyai::Word>,
    pub speaker_labels: Option<bool>,
    pub speakers_expected: Option<i32>,
}

/// A list item: everything but the (possibly large) text, words and utterances.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Uuid,
    pub recording_id: Uuid,
    pub status: Status,
    pub language_code: Option<String>,
    pub audio_duration_seconds: Option<f64>,
    pub confidence: Option<f64>,
    /// Why it failed, from a fixed set; what the vendor said is only in our logs.
    pub error: Option<PublicError>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

impl Keyed for Summary {
    fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

const SUMMARY_COLUMNS: &str = "id, recording_id, status, language_code, audio_duration_seconds, \
     confidence, error, created_at, updated_at, completed_at";
/// The summary's columns first, so a full row reads as a summary plus its content.
const FULL_COLUMNS: &str = "id, recording_id, status, language_code, audio_duration_seconds, \
     confidence, error, created_at, updated_at, completed_at, text, utterances, words, \
     speaker_labels, speakers_expected";

fn json_list<T: serde::de::DeserializeOwned>(value: Option<Value>) -> Vec<T> {
    value
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

impl Transcription {
    fn from_row(row: &tokio_postgres::Row) -> Transcription {
        Transcription {
            summary: Summary::from_row(row),
            text: row.get(10),
            utterances: json_list(row.get(11)),
            words: json_list(row.get(12)),
            speaker_labels: row.get(13),
            speakers_expected: row.get(14),
        }
    }
}

impl Summary {
    fn from_row(row: &tokio_postgres::Row) -> Summary {
        Summary {
            id: row.get(0),
            recording_id: row.get(1),
            status: Status::parse(row.get(2)),
            language_code: row.get(3),
            audio_duration_seconds: row.get(4),
            confidence: row.get(5),
            error: PublicError::from_stored(row.get::<_, Option<&str>>(6)),
            created_at: row.get(7),
            updated_at: row.get(8),
            completed_at: row.get(9),
        }
    }
}

/// The body of `POST /api/recordings/{id}/transcriptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionRequest {
    #[serde(default)]
    pub language_code: Option<String>,
    #[serde(default)]
    pub speaker_labels: Option<bool>,
    #[serde(default)]
    pub speakers_expected: Option<i32>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTranscription {
    pub language_code: Option<String>,
    pub speaker_labels: Option<bool>,
    pub speakers_expected: Option<i32>,
}

impl TranscriptionRequest {
    pub fn validate(self) -> Result<NewTranscription, Error> {
        let mut problems = Vec::new();
        // AssemblyAI codes: ISO 639-1/3 with an optional region, e.g. `en`, `en_us`, `yue`.
        let language_code = self.language_code.map(|c| c.trim().to_ascii_lowercase());
        if let Some(code) = &language_code {
            let (lang, region) = match code.split_once('_') {
                Some((l, r)) => (l, Some(r)),
                None => (code.as_str(), None),
            };
            let lang_ok =
                (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
            let region_ok =
                region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_lowercase()));
            if !(lang_ok && region_ok) {
                problems.push(FieldError::new(
                    "language_code",
                    "must be a language code such as \"en\", \"en_us\" or \"es\"",
                ));
            }
        }
        if let Some(n) = self.speakers_expected {
            if !(1..=10).contains(&n) {
                problems.push(FieldError::new(
                    "speakers_expected",
                    "must be an integer from 1 to 10",
                ));
            } else if self.speaker_labels != Some(true) {
                problems.push(FieldError::new(
                    "speakers_expected",
                    "requires \"speaker_labels\": true",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        Ok(NewTranscription {
            language_code,
            speaker_labels: self.speaker_labels,
            speakers_expected: self.speakers_expected,
        })
    }
}

/// A fresh 256-bit callback secret.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The API side: create, read and list. Reads are by owner only; someone else's id is a 404.
#[derive(Debug, Clone)]
pub struct Transcriptions {
    db: DbPool,
    /// `None` in the read-only functions, which then build no SQS client.
    queue: Option<JobQueue>,
    cursors: Cursors,
    ledger: Option<Ledger>,
}

/// The ledger subject of a transcription's reserved seconds.
pub fn usage_subject(id: Uuid) -> String {
    format!("transcription:{id}")
}

impl Transcriptions {
    pub fn new(db: DbPool, queue: JobQueue, cursors: Cursors, ledger: Ledger) -> Self {
        Transcriptions {
            db,
            queue: Some(queue),
            cursors,
            ledger: Some(ledger),
        }
    }

    /// For the functions that only read (get, list).
    pub fn read_only(db: DbPool, cursors: Cursors) -> Self {
        Transcriptions {
            db,
            queue: None,
            cursors,
            ledger: None,
        }
    }

    /// Creates a queued job for a `ready` recording and enqueues it. The seconds the recording can
    /// hold are reserved first: over the allowance nothing is created or queued. If the queue is
    /// down the row stays unsent and the reconciler sends it: the caller still gets its 202.
    pub async fn create(
        &self,
        owner: UserId,
        recording_id: Uuid,
        request: NewTranscription,
    ) -> Result<Transcription, Error> {
        let (Some(queue), Some(ledger)) = (self.queue.as_ref(), self.ledger.as_ref()) else {
            return Err(Error::Internal(
                "this function was built read-only, without its queue".into(),
            ));
        };
        let id = Uuid::now_v7();
        let secret = new_secret();
        // No connection is held across the reservation, which takes its own (a pool of two).
        let audio = db::fetch(
            &self.db,
            "SELECT content_type, coalesce(size_bytes, declared_size_bytes), duration_seconds
               FROM recordings WHERE id = $1 AND owner_id = $2 AND status = 'ready'",
            &[(&recording_id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        // Not ready (or not theirs): the insert below finds out which and says so, with nothing held.
        let hold = match audio.first() {
            Some(row) => {
                let seconds = audio_seconds_bound(row.get(0), row.get(1), row.get(2));
                Some(
                    ledger
                        .reserve(
                            owner,
                            Meter::TranscriptionSeconds,
                            Units::Exactly(seconds),
                            &usage_subject(id),
                            Some(Vendor::AssemblyAi),
                        )
                        .await?,
                )
            }
            None => None,
        };
        let client = db::client(&self.db).await?;
        let rows = db::query(
            &client,
            &format!(
                "INSERT INTO transcriptions (id, owner_id, recording_id, status, language_code,
                                                 speaker_labels, speakers_expected, webhook_secret)
                     SELECT $1, $2, r.id, 'queued', $4, $5, $6, $7 FROM recordings r
                      WHERE r.id = $3 AND r.owner_id = $2 AND r.status = 'ready'
                     RETURNING {FULL_COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&owner, Type::INT4),
                (&recording_id, Type::UUID),
                (&request.language_code, Type::TEXT),
                (&request.speaker_labels, Type::BOOL),
                (&request.speakers_expected, Type::INT4),
                (&secret, Type::TEXT),
            ],
        )
        .await
        .map_err(DbError::from);
        let rows = match rows {
            Ok(rows) if !rows.is_empty() => rows,
            other => {
                if let Some(hold) = hold {
                    // The recording changed under us (deleted, or the insert failed): give it back.
                    ledger.release(hold.meter, &hold.subject).await?;
                }
                other?
            }
        };
        let Some(row) = rows.first() else {
            let status = db::query(&client,
                    "SELECT status FROM recordings WHERE id = $1 AND owner_id = $2 AND status <> 'deleted'",
                    &[(&recording_id, Type::UUID), (&owner, Type::INT4)],
                )
                .await
                .map_err(DbError::from)?;
            return Err(match status.first() {
                None => Error::NotFound,
                Some(row) => Error::Conflict(format!(
                    "the recording is {}; only a ready recording can be transcribed",
                    row.get::<_, &str>(0)
                )),
            });
        };
        let transcription = Transcription::from_row(row);
        drop(client);
        queue
            .send_and_mark(&self.db, TABLE.mark_sent, id, &job_for(id))
            .await;
        Ok(transcription)
    }

    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Transcription, Error> {
        let sql =
            format!("SELECT {FULL_COLUMNS} FROM transcriptions WHERE id = $1 AND owner_id = $2");
        Ok(Transcription::from_row(
            &owned_row(&self.db, &sql, id, owner).await?,
        ))
    }

    /// A recording's transcriptions, newest first. An unknown or foreign recording is a 404.
    pub async fn list(
        &self,
        owner: UserId,
        recording_id: Uuid,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<Summary>, Error> {
        let owned = db::fetch(
            &self.db,
            "SELECT 1 FROM recordings WHERE id = $1 AND owner_id = $2 AND status <> 'deleted'",
            &[(&recording_id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        if owned.is_empty() {
            return Err(Error::NotFound);
        }
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM transcriptions
             WHERE recording_id = $1 AND owner_id = $2
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        self.cursors
            .fetch_page(
                &self.db,
                &sql,
                &[(&recording_id, Type::UUID), (&owner, Type::INT4)],
                owner,
                cursor,
                limit,
                Summary::from_row,
            )
            .await
    }
}

fn job_for(id: Uuid) -> TranscriptionJob {
    TranscriptionJob {
        transcription_id: id,
        vendor_transcript_id: None,
    }
}

/// What the callback handler concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Authenticated and handed to the worker.
    Enqueued,
    /// Authenticated, but the job is already final: nothing to do.
    AlreadyFinal,
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback is not authenticated")]
    Forged,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] crate::platform::queue::SendError),
}

/// Accepts an AssemblyAI callback for `transcription_id` presenting `secret`, and `sig` when its URL
/// carried one. A wrong `sig` is refused before any query; a URL without one (made before callback
/// URLs were signed) is held to the per-job secret alone, as it always was. The body's transcript
/// id is passed on as a hint; nothing in it is trusted.
pub async fn accept_callback(
    db: &DbPool,
    queue: &JobQueue,
    signer: &CallbackSigner,
    transcription_id: Uuid,
    sig: Option<&str>,
    secret: &[u8],
    hint: Option<String>,
) -> Result<CallbackOutcome, CallbackError> {
    if let Some(sig) = sig
        && !signer.verify(transcription_id, sig)
    {
        return Err(CallbackError::Forged);
    }
    let rows = db::fetch(
        db,
        "SELECT webhook_secret, status FROM transcriptions WHERE id = $1",
        &[(&transcription_id, Type::UUID)],
    )
    .await?;
    // Compare against a stand-in when there is no row, so timing does not reveal which ids exist.
    let (expected, status) = match rows.first() {
        Some(row) => (row.get::<_, String>(0), Some(Status::parse(row.get(1)))),
        None => (new_secret(), None),
    };
    let matches: bool = expected.as_bytes().ct_eq(secret).into();
    let Some(status) = status.filter(|_| matches) else {
        return Err(CallbackError::Forged);
    };
    if status.is_final() {
        return Ok(CallbackOutcome::AlreadyFinal);
    }
    let hint = hint.filter(|h| assemblyai::valid_transcript_id(h));
    queue
        .send(&TranscriptionJob {
            transcription_id,
            vendor_transcript_id: hint,
        })
        .await?;
    Ok(CallbackOutcome::Enqueued)
}

/// What one delivery did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// No such job (its recording was deleted): nothing to do.
    Gone,
    /// Already `completed` or `failed`.
    AlreadyFinal,
    Submitted {
        vendor_transcript_id: String,
    },
    /// AssemblyAI is still working; the callback or the reconciler will come back.
    StillProcessing,
    Completed,
    Failed {
        reason: String,
    },
    /// A submission may have reached AssemblyAI but its answer was lost; waiting for its callback.
    AwaitingCallback,
    /// A callback's hint did not check out against AssemblyAI.
    HintRejected,
}

/// The row as the worker needs it.
struct JobRow {
    status: Status,
    vendor_id: Option<String>,
    submit_started: bool,
    language_code: Option<String>,
    speaker_labels: Option<bool>,
    speakers_expected: Option<i32>,
    secret: String,
    object_key: String,
    recording_ready: bool,
}

/// The worker and the reconciler.
#[derive(Debug, Clone)]
pub struct TranscriptionWorker {
    pub db: DbPool,
    pub storage: Storage,
    pub vendor: AssemblyAi,
    pub idempotency: Idempotency,
    pub queue: JobQueue,
    /// The API's public base URL, for the callback AssemblyAI makes.
    pub backend_url: String,
    /// Signs each job's callback URL.
    pub callbacks: CallbackSigner,
    pub settings: TranscriptionSettings,
    /// The queue's `maxReceiveCount`: the delivery on which a failing job is marked failed.
    pub max_receive_count: u32,
    pub ledger: Ledger,
}

impl TranscriptionWorker {
    /// Handles one delivery. On the last delivery the queue allows, a job that still cannot
    /// progress is marked `failed` with the reason, and the message goes on to the DLQ.
    pub async fn process(
        &self,
        job: &TranscriptionJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Advance, Retry> {
        let outcome = self.advance(job, deadline_ms).await;
        let fail = |reason: String| async move {
            self.fail(job.transcription_id, ErrorCode::VendorUnavailable, &reason)
                .await
        };
        let last = self.max_receive_count;
        jobs::settle(outcome, delivery, last, SUBMITTING_ELSEWHERE, fail).await
    }

    async fn load(&self, id: Uuid) -> Result<Option<JobRow>, DbError> {
        let client = db::client(&self.db).await?;
        let rows = db::query(&client,
                "SELECT t.status, t.vendor_transcript_id, t.submit_started_at IS NOT NULL, t.language_code,
                        t.speaker_labels, t.speakers_expected, t.webhook_secret, r.object_key,
                        r.status = 'ready'
                 FROM transcriptions t JOIN recordings r ON r.id = t.recording_id
                 WHERE t.id = $1",
                &[(&id, Type::UUID)],
            )
            .await?;
        Ok(rows.first().map(|row| JobRow {
            status: Status::parse(row.get(0)),
            vendor_id: row.get(1),
            submit_started: row.get(2),
            language_code: row.get(3),
            speaker_labels: row.get(4),
            speakers_expected: row.get(5),
            secret: row.get(6),
            object_key: row.get(7),
            recording_ready: row.get(8),
        }))
    }

    async fn advance(&self, job: &TranscriptionJob, deadline_ms: u64) -> Result<Advance, Pending> {
        let id = job.transcription_id;
        let Some(row) = self.load(id).await? else {
            return Ok(Advance::Gone);
        };
        if row.status.is_final() {
            return Ok(Advance::AlreadyFinal);
        }
        if let Some(vendor_id) = &row.vendor_id {
            return Ok(self.collect(id, vendor_id, deadline_ms).await?);
        }
        if !row.submit_started {
            if !row.recording_ready {
                // Deleted since the job was queued: its audio must not reach a vendor.
                let reason = "the recording was deleted before it was transcribed".to_owned();
                self.fail(id, ErrorCode::RecordingDeleted, &reason).await?;
                return Ok(Advance::Failed { reason });
            }
            return self.submit(id, &row, deadline_ms).await;
        }
        // A submission started and no id was saved: in flight elsewhere, or its answer was lost.
        match self
            .idempotency
            .claim(
                SUBMIT_SCOPE,
                &id.to_string(),
                &submit_payload(id),
                deadline_ms,
            )
            .await?
        {
            Claim::Completed(stored) => {
                // The id reached the idempotency record but not the row: finish saving it.
                let vendor_id = stored["vendor_transcript_id"]
                    .as_str()
                    .filter(|v| assemblyai::valid_transcript_id(v))
                    .ok_or_else(|| Retry("the submission record has no transcript id".into()))?
                    .to_owned();
                self.save_vendor_id(id, &vendor_id).await?;
                Ok(self.collect(id, &vendor_id, deadline_ms).await?)
            }
            Claim::Acquired(lease) => {
                // No one holds the submission, so its outcome is unknown. Never submit again: adopt
                // the transcript a verified callback names, or wait for one.
                self.idempotency.release(lease).await?;
                if let Some(hint) = &job.vendor_transcript_id {
                    return Ok(self.adopt(id, hint, deadline_ms).await?);
                }
                self.mark_processing(id).await?;
                Ok(Advance::AwaitingCallback)
            }
        }
    }

    async fn submit(&self, id: Uuid, row: &JobRow, deadline_ms: u64) -> Result<Advance, Pending> {
        let lease = match self
            .idempotency
            .claim(
                SUBMIT_SCOPE,
                &id.to_string(),
                &submit_payload(id),
                deadline_ms,
            )
            .await
        {
            Ok(Claim::Acquired(lease)) => lease,
            Ok(Claim::Completed(_)) => return Ok(Advance::AlreadyFinal),
            Err(IdempotencyError::AlreadyInProgress) => return Err(Pending::Held),
            Err(e) => return Err(e.into()),
        };
        // Signed before the checkpoint, so a failure here leaves nothing to undo.
        let audio_url = match self
            .storage
            .presign_read(&row.object_key, self.settings.audio_url_ttl)
            .await
        {
            Ok(p) => p.url,
            Err(e) => {
                tracing::warn!(transcription_id = %id, error = %e, "could not sign the audio URL");
                self.idempotency.release(lease).await?;
                return Err(Retry("could not sign the recording's URL".into()).into());
            }
        };
        // The checkpoint: from here on this job is never submitted by anyone else.
        let claimed = db::fetch(
            &self.db,
            "UPDATE transcriptions SET submit_started_at = now(), updated_at = now()
                 WHERE id = $1 AND status = 'queued' AND submit_started_at IS NULL
                   AND vendor_transcript_id IS NULL
                 RETURNING 1",
            &[(&id, Type::UUID)],
        )
        .await?;
        if claimed.is_empty() {
            self.idempotency.release(lease).await?;
            return Ok(Advance::AlreadyFinal);
        }
        let request = CreateTranscript {
            audio_url,
            webhook_url: format!(
                "{}/webhooks/assemblyai?transcription_id={id}&sig={}",
                self.backend_url,
                self.callbacks.sign(id)
            ),
            webhook_auth_header_name: assemblyai::WEBHOOK_AUTH_HEADER.to_owned(),
            webhook_auth_header_value: row.secret.clone(),
            language_code: row.language_code.clone(),
            speaker_labels: row.speaker_labels,
            speakers_expected: row.speakers_expected,
        };
        match self.vendor.create_transcript(&request, deadline_ms).await {
            Ok(transcript) => {
                let vendor_id = transcript.id;
                // Record in the idempotency store as well, so a lost row update is recoverable.
                // The id is the only proof of a paid submission: try hard to keep it.
                let saved = with_retries(id, "save the transcript id", || {
                    self.save_vendor_id(id, &vendor_id)
                })
                .await;
                if let Err(e) = self
                    .idempotency
                    .complete(lease, &json!({"vendor_transcript_id": vendor_id}))
                    .await
                {
                    tracing::warn!(transcription_id = %id, error = %e, "could not complete the submission record");
                }
                saved?;
                Ok(Advance::Submitted {
                    vendor_transcript_id: vendor_id,
                })
            }
            Err(e) if e.certainly_not_processed() => {
                // A checkpoint left behind would make the job wait for a callback that never comes.
                with_retries(id, "undo the submission checkpoint", || {
                    self.undo_checkpoint(id)
                })
                .await?;
                self.idempotency.release(lease).await?;
                if e.is_transient() || matches!(e.status(), Some(401 | 403)) {
                    // Throttling, outages and a bad key are not the job's fault: let SQS retry.
                    Err(Retry(e.to_string()).into())
                } else {
                    let reason = vendor_reason(&e);
                    self.fail(id, ErrorCode::VendorRejected, &reason).await?;
                    Ok(Advance::Failed { reason })
                }
            }
            Err(e) => {
                // The request may have created a transcript. Keep the checkpoint and wait for the
                // callback rather than risk paying twice.
                tracing::warn!(transcription_id = %id, error = %e, "submission outcome unknown; awaiting the callback");
                self.idempotency.release(lease).await?;
                self.mark_processing(id).await?;
                Ok(Advance::AwaitingCallback)
            }
        }
    }

    /// Adopts `hint` as this job's transcript, but only if AssemblyAI says it calls back for this job.
    async fn adopt(&self, id: Uuid, hint: &str, deadline_ms: u64) -> Result<Advance, Retry> {
        let transcript = match self.vendor.get_transcript(hint, deadline_ms).await {
            Ok(t) => t,
            Err(e) if e.is_transient() => return Err(Retry(e.to_string())),
            Err(e) => {
                tracing::warn!(transcription_id = %id, error = %e, "callback hint rejected");
                return Ok(Advance::HintRejected);
            }
        };
        let ours = format!("transcription_id={id}");
        let belongs = transcript.webhook_url.as_deref().is_some_and(|url| {
            url.split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|p| p == ours))
        });
        if !belongs {
            tracing::warn!(transcription_id = %id, "callback hint names another job's transcript");
            return Ok(Advance::HintRejected);
        }
        self.save_vendor_id(id, hint).await?;
        self.apply(id, &transcript).await
    }

    /// Fetches the transcript with our key (the only source trusted) and stores what it says.
    async fn collect(&self, id: Uuid, vendor_id: &str, deadline_ms: u64) -> Result<Advance, Retry> {
        match self.vendor.get_transcript(vendor_id, deadline_ms).await {
            Ok(transcript) => self.apply(id, &transcript).await,
            Err(e) if e.is_transient() || matches!(e.status(), Some(401 | 403)) => {
                Err(Retry(e.to_string()))
            }
            Err(e) => {
                let reason = vendor_reason(&e);
                self.fail(id, ErrorCode::VendorRejected, &reason).await?;
                Ok(Advance::Failed { reason })
            }
        }
    }

    async fn apply(&self, id: Uuid, transcript: &Transcript) -> Result<Advance, Retry> {
        let client = db::client(&self.db).await?;
        match transcript.status {
            TranscriptStatus::Queued | TranscriptStatus::Processing => {
                db::query(&client,
                        "UPDATE transcriptions SET status = 'processing', checked_at = now(), updated_at = now()
                         WHERE id = $1 AND status IN ('queued', 'processing')",
                        &[(&id, Type::UUID)],
                    )
                    .await
                    .map_err(DbError::from)?;
                Ok(Advance::StillProcessing)
            }
            TranscriptStatus::Completed => {
                let utterances =
                    serde_json::to_value(transcript.utterances.as_deref().unwrap_or(&[]))
                        .map_err(|e| Retry(format!("could not encode the utterances: {e}")))?;
                let words = serde_json::to_value(transcript.words.as_deref().unwrap_or(&[]))
                    .map_err(|e| Retry(format!("could not encode the words: {e}")))?;
                let text = transcript.text.clone().unwrap_or_default();
                db::query(&client,
                        "UPDATE transcriptions
                            SET status = 'completed', text = $2, utterances = $3, words = $4,
                                language_code = coalesce($5, language_code), audio_duration_seconds = $6,
                                confidence = $7, error = NULL, checked_at = now(), updated_at = now(),
                                completed_at = now()
                          WHERE id = $1 AND status IN ('queued', 'processing')",
                        &[
                            (&id, Type::UUID),
                            (&text, Type::TEXT),
                            (&utterances, Type::JSONB),
                            (&words, Type::JSONB),
                            (&transcript.language_code, Type::TEXT),
                            (&transcript.audio_duration, Type::FLOAT8),
                            (&transcript.confidence, Type::FLOAT8),
                        ],
                    )
                    .await
                    .map_err(DbError::from)?;
                drop(client);
                // AssemblyAI bills the audio's duration; that figure settles what was reserved.
                let billed = transcript
                    .audio_duration
                    .map_or(0, |s| s.max(0.0).ceil() as i64);
                self.ledger
                    .commit(Meter::TranscriptionSeconds, &usage_subject(id), billed)
                    .await?;
                Ok(Advance::Completed)
            }
            TranscriptStatus::Error => {
                let reason = transcript
                    .error
                    .clone()
                    .filter(|e| !e.trim().is_empty())
                    .unwrap_or_else(|| "AssemblyAI reported an error without a message".to_owned());
                drop(client);
                self.fail(id, ErrorCode::AudioUnreadable, &reason).await?;
                Ok(Advance::Failed { reason })
            }
        }
    }

    async fn save_vendor_id(&self, id: Uuid, vendor_id: &str) -> Result<(), Retry> {
        let client = db::client(&self.db).await?;
        db::query(&client,
                "UPDATE transcriptions
                    SET vendor_transcript_id = $2, status = 'processing', submitted_at = now(),
                        checked_at = now(), updated_at = now()
                  WHERE id = $1 AND vendor_transcript_id IS NULL AND status IN ('queued', 'processing')",
                &[(&id, Type::UUID), (&vendor_id, Type::TEXT)],
            )
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    async fn undo_checkpoint(&self, id: Uuid) -> Result<(), Retry> {
        db::fetch(
            &self.db,
            "UPDATE transcriptions SET submit_started_at = NULL, updated_at = now()
                 WHERE id = $1 AND vendor_transcript_id IS NULL",
            &[(&id, Type::UUID)],
        )
        .await?;
        Ok(())
    }

    async fn mark_processing(&self, id: Uuid) -> Result<(), Retry> {
        db::fetch(
            &self.db,
            "UPDATE transcriptions SET status = 'processing', updated_at = now()
                 WHERE id = $1 AND status = 'queued'",
            &[(&id, Type::UUID)],
        )
        .await?;
        Ok(())
    }

    async fn fail(&self, id: Uuid, code: ErrorCode, detail: &str) -> Result<(), Retry> {
        TABLE.fail(&self.db, id, code, detail).await?;
        // Nothing was transcribed, so nothing is billed: the reserved seconds go back.
        self.ledger
            .release(Meter::TranscriptionSeconds, &usage_subject(id))
            .await?;
        Ok(())
    }

    /// The scheduled sweep: sends jobs whose message never went out, polls jobs whose callback is
    /// overdue, and fails submissions that were never confirmed.
    pub async fn reconcile(&self, batch: i64) -> Result<ReconcileReport, DbError> {
        let mut report = ReconcileReport::default();
        let unsent = TABLE.unsent(&self.db, batch).await?;
        let client = db::client(&self.db).await?;
        let overdue = db::query(
            &client,
            "UPDATE transcriptions SET checked_at = now(), updated_at = now()
                 WHERE id IN (SELECT id FROM transcriptions
                              WHERE status = 'processing' AND vendor_transcript_id IS NOT NULL
                                AND coalesce(checked_at, submitted_at, updated_at)
                                    < now() - make_interval(secs => $1)
                              ORDER BY updated_at LIMIT $2)
                 RETURNING id",
            &[
                (&self.settings.reconcile_after.as_secs_f64(), Type::FLOAT8),
                (&batch, Type::INT8),
            ],
        )
        .await?;
        let unconfirmed = db::query(
            &client,
            "UPDATE transcriptions
                    SET status = 'failed', updated_at = now(),
                        error = 'interrupted'
                  WHERE status IN ('queued', 'processing') AND vendor_transcript_id IS NULL
                    AND submit_started_at < now() - make_interval(secs => $1)
                 RETURNING id",
            &[(&self.settings.unconfirmed_after.as_secs_f64(), Type::FLOAT8)],
        )
        .await?;
        drop(client);
        for row in &unconfirmed {
            let id: Uuid = row.get(0);
            tracing::warn!(transcription_id = %id, code = "interrupted",
                "the submission to AssemblyAI was interrupted and never confirmed");
        }
        report.abandoned = unconfirmed.len() as u64;
        for id in unsent {
            if self
                .queue
                .send_and_mark(&self.db, TABLE.mark_sent, id, &job_for(id))
                .await
            {
                report.resent += 1;
            } else {
                report.failures += 1;
            }
        }
        for row in &overdue {
            let id: Uuid = row.get(0);
            match self.queue.send(&job_for(id)).await {
                Ok(()) => report.polled += 1,
                Err(e) => {
                    // checked_at moved on; the next run after `reconcile_after` tries again.
                    tracing::warn!(transcription_id = %id, error = %e, "could not queue a check");
                    report.failures += 1;
                }
            }
        }
        Ok(report)
    }
}

/// A write that alone records a paid or undone submission, tried three times before giving up.
async fn with_retries<F, Fut>(id: Uuid, what: &str, write: F) -> Result<(), Retry>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), Retry>>,
{
    let mut last = None;
    for attempt in 0..3u64 {
        match write().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(transcription_id = %id, attempt, error = %e, "could not {what}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| Retry(format!("could not {what}"))))
}

fn submit_payload(id: Uuid) -> Value {
    json!({ "transcription_id": id })
}

fn vendor_reason(e: &VendorError) -> String {
    match e {
        VendorError::Status {
            status, message, ..
        } => format!("AssemblyAI refused the job ({status}): {message}"),
        other => other.to_string(),
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ReconcileReport {
    pub resent: u64,
    pub polled: u64,
    pub abandoned: u64,
    pub failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> Result<NewTranscription, Error> {
        serde_json::from_value::<TranscriptionRequest>(v)
            .unwrap()
            .validate()
    }

    #[test]
    fn retry_reasons_never_carry_internal_causes() {
        let cause = "pool timed out connecting to ep-secret-host.neon.tech";
        let retry = Retry::from(DbError::Unavailable(cause.to_owned()));
        assert_eq!(retry.0, "the database was unavailable");
        let retry = Retry::from(IdempotencyError::Store(DbError::Unavailable(
            cause.to_owned(),
        )));
        assert!(!retry.0.contains("neon"), "{}", retry.0);
    }

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid(f) => f.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_are_validated_field_by_field() {
        assert_eq!(
            request(json!({})).unwrap(),
            NewTranscription {
                language_code: None,
                speaker_labels: None,
                speakers_expected: None
            }
        );
        let ok = request(
            json!({"language_code": "EN_us", "speaker_labels": true, "speakers_expected": 2}),
        )
        .unwrap();
        assert_eq!(ok.language_code.as_deref(), Some("en_us"));
        assert_eq!(
            fields(request(json!({"language_code": "english"})).unwrap_err()),
            ["language_code"]
        );
        assert_eq!(
            fields(request(json!({"speaker_labels": true, "speakers_expected": 11})).unwrap_err()),
            ["speakers_expected"]
        );
        assert_eq!(
            fields(request(json!({"speakers_expected": 2})).unwrap_err()),
            ["speakers_expected"]
        );
    }

    #[test]
    fn secrets_carry_256_bits() {
        let a = new_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret());
    }
}
