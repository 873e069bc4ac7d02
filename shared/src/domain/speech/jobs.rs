//! Speech jobs: `POST /api/tts` queues one, `tts-worker` speaks it into R2, `GET /api/tts/{id}`
//! hands back a presigned link. A checkpoint before the paid call means a job is never paid twice.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{NewTts, OutputFormat, VoiceSettings};
use crate::domain::Error;
use crate::domain::billing::{Ledger, Meter, Units, Vendor};
use crate::domain::ids::UserId;
use crate::domain::jobs::{self, ErrorCode, JobTable, Pending, PublicError, Retry, Status};
use crate::domain::lifecycle::copies::{VendorCopies, speech_copies};
use crate::domain::owned::owned_row;
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::http_client::VendorError;
use crate::platform::idempotency::{Claim, Idempotency, IdempotencyError};
use crate::platform::queue::{Delivery, JobQueue};
use crate::platform::storage::Storage;
use crate::vendors::elevenlabs::{ElevenLabs, SpeechRequest, SynthesisError};

/// Idempotency scope of the synthesis lease; the key is the job id, the payload `{"tts_id": id}`.
pub const SYNTH_SCOPE: &str = "tts-worker:synthesize";
const AUDIO_URL_TTL: Duration = Duration::from_secs(3600);

/// A speech job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Tts {
    pub id: Uuid,
    pub status: Status,
    pub characters: i32,
    pub voice_id: String,
    pub model_id: String,
    pub output_format: String,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    /// A presigned download (`attachment; filename="speech-<id>.<ext>"`), once `completed`.
    pub audio_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub audio_url_expires_at: Option<OffsetDateTime>,
    /// Why it failed, from a fixed set; what the vendor said is only in our logs.
    pub error: Option<PublicError>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// True once `SPEECH_RETENTION_DAYS` removed the audio: `status` stays, `audio_url` is null.
    pub expired: bool,
    #[serde(skip)]
    pub object_key: Option<String>,
}

const COLUMNS: &str = "id, status, characters, voice_id, model_id, output_format, content_type, \
                       size_bytes, error, created_at, updated_at, completed_at, object_key, \
                       expired_at IS NOT NULL";

impl Tts {
    fn from_row(row: &tokio_postgres::Row) -> Tts {
        Tts {
            id: row.get(0),
            status: Status::parse(row.get(1)),
            characters: row.get(2),
            voice_id: row.get(3),
            model_id: row.get(4),
            output_format: row.get(5),
            content_type: row.get(6),
            size_bytes: row.get(7),
            audio_url: None,
            audio_url_expires_at: None,
            error: PublicError::from_stored(row.get::<_, Option<&str>>(8)),
            created_at: row.get(9),
            updated_at: row.get(10),
            completed_at: row.get(11),
            object_key: row.get(12),
            expired: row.get(13),
        }
    }
}

/// The API side.
#[derive(Debug, Clone)]
pub struct TtsJobs {
    db: DbPool,
    storage: Storage,
    /// `None` in `tts-get`, which then builds no SQS client.
    queue: Option<JobQueue>,
    ledger: Option<Ledger>,
}

/// The ledger subject of a speech job's characters.
pub fn usage_subject(id: Uuid) -> String {
    format!("tts:{id}")
}

/// The ledger subject of a speech job's stored audio.
pub fn storage_subject(id: Uuid) -> String {
    format!("speech-audio:{id}")
}

impl TtsJobs {
    pub fn new(db: DbPool, storage: Storage, queue: JobQueue, ledger: Ledger) -> Self {
        TtsJobs {
            db,
            storage,
            queue: Some(queue),
            ledger: Some(ledger),
        }
    }

    /// For the function that only reads.
    pub fn read_only(db: DbPool, storage: Storage) -> Self {
        TtsJobs {
            db,
            storage,
            queue: None,
            ledger: None,
        }
    }

    /// With the ledger (`tts-delete` gives back the audio's bytes).
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Reserves the text's characters, stores a queued job and enqueues it; over the allowance
    /// nothing is stored or queued. If the queue is down the reconciler sends it.
    pub async fn create(&self, owner: UserId, request: NewTts) -> Result<Tts, Error> {
        let (Some(queue), Some(ledger)) = (self.queue.as_ref(), self.ledger.as_ref()) else {
            return Err(Error::Internal(
                "this function was built read-only, without its queue".into(),
            ));
        };
        let id = Uuid::now_v7();
        let settings = request
            .voice_settings
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let characters = i32::try_from(request.characters)
            .map_err(|_| Error::Internal("character count overflow".into()))?;
        // ElevenLabs bills every character of the text sent: the reservation is exact.
        let hold = ledger
            .reserve(
                owner,
                Meter::SpeechCharacters,
                Units::Exactly(i64::from(characters)),
                &usage_subject(id),
                Some(Vendor::ElevenLabs),
            )
            .await?;
        let rows = db::fetch(
            &self.db,
            &format!(
                "INSERT INTO tts_jobs (id, owner_id, status, text, characters, voice_id, model_id,
                                           output_format, voice_settings, content_type)
                     VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9)
                     RETURNING {COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&owner, Type::INT4),
                (&request.text, Type::TEXT),
                (&characters, Type::INT4),
                (&request.voice_id, Type::TEXT),
                (&request.model_id, Type::TEXT),
                (&request.output_format.name, Type::TEXT),
                (&settings, Type::JSONB),
                (&request.output_format.content_type(), Type::TEXT),
            ],
        )
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                ledger.release(hold.meter, &hold.subject).await?;
                return Err(e.into());
            }
        };
        let tts = Tts::from_row(rows.first().ok_or(Error::Internal("no row".into()))?);
        queue
            .send_and_mark(&self.db, TABLE.mark_sent, id, &TtsJob { tts_id: id })
            .await;
        Ok(tts)
    }

    /// The owner's job, with a presigned link to the audio once it is there.
    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Tts, Error> {
        let sql = format!("SELECT {COLUMNS} FROM tts_jobs WHERE id = $1 AND owner_id = $2");
        let mut tts = Tts::from_row(&owned_row(&self.db, &sql, id, owner).await?);
        if let (Status::Completed, false, Some(key)) =
            (tts.status, tts.expired, tts.object_key.as_deref())
        {
            let format = OutputFormat::parse(&tts.output_format);
            let extension = format.map_or("bin", |f| f.extension());
            let content_type = tts
                .content_type
                .as_deref()
                .or(format.map(|f| f.content_type()))
                .unwrap_or("application/octet-stream");
            let presigned = self
                .storage
                .presign_get(
                    key,
                    &format!("speech-{}.{extension}", tts.id),
                    content_type,
                    AUDIO_URL_TTL,
                )
                .await?;
            tts.audio_url = Some(presigned.url);
            tts.audio_url_expires_at = Some(OffsetDateTime::now_utc() + AUDIO_URL_TTL);
        }
        Ok(tts)
    }
}

impl TtsJobs {
    /// Deletes the owner's job, its audio in R2 and its ElevenLabs history item. The copies are
    /// recorded first, so one the holder refuses now is finished by the sweeper and never blocks
    /// the 204. A job being synthesized is refused (409): its audio is not stored yet.
    pub async fn delete(
        &self,
        owner: UserId,
        id: Uuid,
        copies: &VendorCopies,
        deadline_ms: u64,
    ) -> Result<(), Error> {
        let row = owned_row(
            &self.db,
            "SELECT status, object_key, vendor_history_item_id FROM tts_jobs WHERE id = $1 AND owner_id = $2",
            id,
            owner,
        )
        .await?;
        if Status::parse(row.get(0)) == Status::Processing {
            return Err(Error::Conflict(
                "the speech is being synthesized; delete it once it has completed or failed"
                    .to_owned(),
            ));
        }
        let found = speech_copies(row.get(1), row.get(2));
        copies.record(owner, &found).await?;
        let deleted = db::fetch(
            &self.db,
            "DELETE FROM tts_jobs WHERE id = $1 AND owner_id = $2 AND status <> 'processing' RETURNING 1",
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        if deleted.is_empty() {
            // A worker claimed it between the read and the delete.
            return Err(Error::Conflict(
                "the speech is being synthesized; delete it once it has completed or failed"
                    .to_owned(),
            ));
        }
        copies.settle(&found, deadline_ms).await;
        if let Some(ledger) = &self.ledger {
            ledger
                .free(Meter::StorageBytes, &storage_subject(id))
                .await?;
        }
        Ok(())
    }
}

/// Synthesize speech job `tts_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TtsJob {
    pub tts_id: Uuid,
}

/// Why a delivery left a job alone: another one holds its synthesis lease.
const SYNTHESIZING_ELSEWHERE: &str = "another delivery is synthesizing this job";

const TABLE: JobTable = JobTable {
    name: "tts_jobs",
    mark_sent: "UPDATE tts_jobs SET message_sent_at = now(), updated_at = now() WHERE id = $1",
    lease_column: "synth_started_at",
    // The text is only needed to speak it.
    cleared_on_failure: ", text = NULL",
    resend_stale_processing: true,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    Gone,
    AlreadyFinal,
    Completed { object_key: String },
    Failed { reason: String },
}

struct JobRow {
    status: Status,
    owner: UserId,
    text: Option<String>,
    voice_id: String,
    model_id: String,
    output_format: String,
    voice_settings: Option<Value>,
    synth_started: bool,
}

/// What ElevenLabs said identifies a synthesis: its request, and the history item holding a copy.
#[derive(Debug, Clone, Copy, Default)]
struct VendorIds<'a> {
    request_id: Option<&'a str>,
    history_item_id: Option<&'a str>,
}

/// Where a job's audio lives: fixed, so a later delivery can find audio an earlier one stored.
pub fn audio_key(owner: UserId, id: Uuid, format: OutputFormat) -> String {
    format!("users/{owner}/tts/{id}.{}", format.extension())
}

/// The worker and its reconciler.
#[derive(Debug, Clone)]
pub struct TtsWorker {
    pub db: DbPool,
    pub storage: Storage,
    pub vendor: ElevenLabs,
    pub idempotency: Idempotency,
    pub queue: JobQueue,
    /// The queue's `maxReceiveCount`: the delivery on which a failing job is marked failed.
    pub max_receive_count: u32,
    pub ledger: Ledger,
}

impl TtsWorker {
    pub async fn process(
        &self,
        job: &TtsJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Advance, Retry> {
        // A held lease is never failed, even on the last delivery: that could discard audio
        // being paid for now.
        let outcome = self.advance(job.tts_id, deadline_ms).await;
        let fail = |reason: String| async move {
            self.fail(job.tts_id, ErrorCode::VendorUnavailable, &reason)
                .await
        };
        let last = self.max_receive_count;
        jobs::settle(outcome, delivery, last, SYNTHESIZING_ELSEWHERE, fail).await
    }

    async fn load(&self, id: Uuid) -> Result<Option<JobRow>, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT status, owner_id, text, voice_id, model_id, output_format, voice_settings,
                        synth_started_at IS NOT NULL
                 FROM tts_jobs WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await?;
        Ok(rows.first().map(|r| JobRow {
            status: Status::parse(r.get(0)),
            owner: r.get(1),
            text: r.get(2),
            voice_id: r.get(3),
            model_id: r.get(4),
            output_format: r.get(5),
            voice_settings: r.get(6),
            synth_started: r.get(7),
        }))
    }

    async fn advance(&self, id: Uuid, deadline_ms: u64) -> Result<Advance, Pending> {
        let Some(row) = self.load(id).await? else {
            return Ok(Advance::Gone);
        };
        if matches!(row.status, Status::Completed | Status::Failed) {
            return Ok(Advance::AlreadyFinal);
        }
        let payload = json!({ "tts_id": id });
        let lease = match self
            .idempotency
            .claim(SYNTH_SCOPE, &id.to_string(), &payload, deadline_ms)
            .await
        {
            Ok(Claim::Acquired(lease)) => lease,
            Ok(Claim::Completed(_)) => return Ok(Advance::AlreadyFinal),
            Err(IdempotencyError::AlreadyInProgress) => return Err(Pending::Held),
            Err(e) => return Err(e.into()),
        };
        let outcome = self.advance_claimed(id, row, deadline_ms).await;
        // A settled job keeps the record, so no later delivery pays again; a retry frees it for
        // the next delivery, which finds any stored audio through the checkpoint.
        let kept = match &outcome {
            Ok(_) => self.idempotency.complete(lease, &payload).await,
            Err(_) => self.idempotency.release(lease).await,
        };
        if let Err(e) = kept {
            tracing::warn!(tts_id = %id, error = %e, "could not settle the synthesis record");
        }
        Ok(outcome?)
    }

    /// The job's next step, with the synthesis lease held.
    async fn advance_claimed(
        &self,
        id: Uuid,
        row: JobRow,
        deadline_ms: u64,
    ) -> Result<Advance, Retry> {
        let format = OutputFormat::parse(&row.output_format)
            .ok_or_else(|| Retry(format!("unknown output format {}", row.output_format)))?;
        let key = audio_key(row.owner, id, format);
        if row.synth_started {
            return self.resume(id, &key, format).await;
        }
        let client = db::client(&self.db).await?;
        let claimed = db::query(&client,
                "UPDATE tts_jobs SET synth_started_at = now(), status = 'processing', updated_at = now()
                 WHERE id = $1 AND status = 'queued' AND synth_started_at IS NULL RETURNING 1",
                &[(&id, Type::UUID)],
            )
            .await
            .map_err(DbError::from)?;
        drop(client);
        if claimed.is_empty() {
            return Ok(Advance::AlreadyFinal);
        }
        let voice_settings: Option<VoiceSettings> = row
            .voice_settings
            .and_then(|v| serde_json::from_value(v).ok());
        let request = SpeechRequest {
            text: row.text.unwrap_or_default(),
            model_id: row.model_id,
            voice_settings,
        };
        match self
            .vendor
            .synthesize(&row.voice_id, format, &request, deadline_ms)
            .await
        {
            Ok(speech) => {
                let size = speech.audio.len() as i64;
                match self.store(&key, speech.audio, format.content_type()).await {
                    Ok(()) => {
                        let vendor_ids = VendorIds {
                            request_id: speech.request_id.as_deref(),
                            history_item_id: speech.history_item_id.as_deref(),
                        };
                        self.complete(id, &key, size, format.content_type(), vendor_ids)
                            .await
                    }
                    Err(reason) => {
                        let reason = format!("the audio could not be stored: {reason}");
                        self.fail(id, ErrorCode::StorageFailed, &reason).await?;
                        Ok(Advance::Failed { reason })
                    }
                }
            }
            Err(e) if e.certainly_not_processed() => {
                self.undo_checkpoint(id).await?;
                if e.is_transient() {
                    Err(Retry(e.to_string()))
                } else {
                    let reason = vendor_reason(&e);
                    self.fail(id, ErrorCode::VendorRejected, &reason).await?;
                    Ok(Advance::Failed { reason })
                }
            }
            Err(e) => {
                let reason = format!(
                    "{e}; the request may have been billed, so it is not repeated; request it again"
                );
                self.fail(id, ErrorCode::Interrupted, &reason).await?;
                Ok(Advance::Failed { reason })
            }
        }
    }

    /// A synthesis started and no delivery holds it any more. If its audio reached R2 (only
    /// recording it failed), the job completes from the object; otherwise the audio is lost
    /// with the process that made it, and calling again could pay twice, so the job ends here.
    async fn resume(&self, id: Uuid, key: &str, format: OutputFormat) -> Result<Advance, Retry> {
        let stored = self
            .storage
            .head(key)
            .await
            .map_err(|e| Retry(format!("could not look for stored audio: {e}")))?;
        if let Some(object) = stored {
            tracing::info!(tts_id = %id, key, "completing from audio stored by an earlier delivery");
            let size = i64::try_from(object.size).unwrap_or(i64::MAX);
            return self
                .complete(id, key, size, format.content_type(), VendorIds::default())
                .await;
        }
        let reason = "speech synthesis was interrupted after the request was sent to ElevenLabs \
                      and no audio was stored; it is not repeated, so it is never paid twice; \
                      request it again";
        self.fail(id, ErrorCode::Interrupted, reason).await?;
        Ok(Advance::Failed {
            reason: reason.to_owned(),
        })
    }

    /// The audio is paid for: try hard to keep it. Every attempt shares the one buffer.
    async fn store(&self, key: &str, audio: Vec<u8>, content_type: &str) -> Result<(), String> {
        const ATTEMPTS: u64 = 3;
        let audio = bytes::Bytes::from(audio);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.storage.put_new(key, audio.clone(), content_type).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(key, attempt, error = %last, "storing speech failed");
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                    }
                }
            }
        }
        Err(last)
    }

    /// Records the stored audio. Only a job still `processing` completes; if nothing was
    /// updated, another outcome was recorded first and this one is not reported.
    async fn complete(
        &self,
        id: Uuid,
        key: &str,
        size: i64,
        content_type: &str,
        vendor_ids: VendorIds<'_>,
    ) -> Result<Advance, Retry> {
        let client = db::client(&self.db).await?;
        let updated = db::query(&client,
                "UPDATE tts_jobs SET status = 'completed', object_key = $2, size_bytes = $3, content_type = $4,
                        vendor_request_id = COALESCE($5, vendor_request_id),
                        vendor_history_item_id = COALESCE($6, vendor_history_item_id),
                        text = NULL, error = NULL, updated_at = now(), completed_at = now()
                 WHERE id = $1 AND status = 'processing' RETURNING 1",
                &[
                    (&id, Type::UUID),
                    (&key, Type::TEXT),
                    (&size, Type::INT8),
                    (&content_type, Type::TEXT),
                    (&vendor_ids.request_id, Type::TEXT),
                    (&vendor_ids.history_item_id, Type::TEXT),
                ],
            )
            .await
            .map_err(DbError::from)?;
        if updated.is_empty() {
            tracing::warn!(tts_id = %id, key, "the job was no longer processing; its audio is not attached");
            return Ok(Advance::AlreadyFinal);
        }
        drop(client);
        // ElevenLabs billed every character of the text (kept on the row after the text is cleared).
        let job = db::fetch(
            &self.db,
            "SELECT owner_id, characters FROM tts_jobs WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await?;
        if let Some(row) = job.first() {
            let (owner, characters): (UserId, i32) = (row.get(0), row.get(1));
            self.ledger
                .commit(
                    Meter::SpeechCharacters,
                    &usage_subject(id),
                    i64::from(characters),
                )
                .await?;
            self.ledger
                .record(owner, Meter::StorageBytes, &storage_subject(id), size)
                .await
                .map_err(|e| Retry(e.to_string()))?;
        }
        Ok(Advance::Completed {
            object_key: key.to_owned(),
        })
    }

    async fn undo_checkpoint(&self, id: Uuid) -> Result<(), Retry> {
        let client = db::client(&self.db).await?;
        db::query(
            &client,
            "UPDATE tts_jobs SET synth_started_at = NULL, status = 'queued', updated_at = now()
                 WHERE id = $1 AND status = 'processing'",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(DbError::from)?;
        Ok(())
    }

    async fn fail(&self, id: Uuid, code: ErrorCode, detail: &str) -> Result<(), Retry> {
        TABLE.fail(&self.db, id, code, detail).await?;
        self.ledger
            .release(Meter::SpeechCharacters, &usage_subject(id))
            .await?;
        Ok(())
    }

    /// Sends jobs whose message never left (or was lost), as the transcription reconciler does.
    pub async fn reconcile(&self, batch: i64) -> Result<u64, DbError> {
        let unsent = TABLE.unsent(&self.db, batch).await?;
        let mut sent = 0;
        for id in unsent {
            if self
                .queue
                .send_and_mark(&self.db, TABLE.mark_sent, id, &TtsJob { tts_id: id })
                .await
            {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

fn vendor_reason(e: &SynthesisError) -> String {
    match e {
        SynthesisError::Vendor(VendorError::Status {
            status, message, ..
        }) => format!("ElevenLabs refused the job ({status}): {message}"),
        other => other.to_string(),
    }
}
