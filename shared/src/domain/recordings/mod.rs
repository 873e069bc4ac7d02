//! Call recordings in R2: presigned upload, verification, listing, download, deletion and the sweeper.
//!
//! Every query is scoped to its owner, so another user's recording is indistinguishable from one that
//! does not exist. The bytes never pass through Lambda.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::billing::{Ledger, Meter, Units};
use crate::domain::ids::UserId;
use crate::domain::lifecycle::copies::{Kind, VendorCopies, VendorCopy};
use crate::domain::owned::owned_row;
use crate::domain::paging::{Cursors, Keyed, Page, Position};
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::storage::{Presigned, Storage, StorageError};

/// Uploads must start within this window; R2 and S3 allow far longer, which is the risk.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Download links are short-lived bearer URLs.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(60 * 60);
/// Uploads never completed are swept after this long.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;
/// How many leading bytes are read to check the format and find a duration.
const SNIFF_BYTES: u64 = 4096;

/// The audio types we accept, with their key extension.
pub const AUDIO_TYPES: &[(&str, &str)] = &[
    ("audio/wav", "wav"),
    ("audio/x-wav", "wav"),
    ("audio/wave", "wav"),
    ("audio/mpeg", "mp3"),
    ("audio/mp4", "m4a"),
    ("audio/x-m4a", "m4a"),
    ("audio/m4a", "m4a"),
    ("audio/ogg", "ogg"),
    ("audio/opus", "opus"),
    ("audio/webm", "webm"),
    ("audio/flac", "flac"),
    ("audio/x-flac", "flac"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    PendingUpload,
    Ready,
    Failed,
    Deleted,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "pending_upload" => Status::PendingUpload,
            "ready" => Status::Ready,
            "failed" => Status::Failed,
            _ => Status::Deleted,
        }
    }
}

/// A recording as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub id: Uuid,
    pub status: Status,
    pub content_type: String,
    pub declared_size_bytes: i64,
    pub size_bytes: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub file_name: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip)]
    pub object_key: String,
}

const COLUMNS: &str = "id, status, content_type, declared_size_bytes, size_bytes, duration_seconds, \
                       file_name, failure_reason, created_at, updated_at, object_key";

impl Recording {
    fn from_row(row: &tokio_postgres::Row) -> Recording {
        Recording {
            id: row.get(0),
            status: Status::parse(row.get(1)),
            content_type: row.get(2),
            declared_size_bytes: row.get(3),
            size_bytes: row.get(4),
            duration_seconds: row.get(5),
            file_name: row.get(6),
            failure_reason: row.get(7),
            created_at: row.get(8),
            updated_at: row.get(9),
            object_key: row.get(10),
        }
    }
}

/// The body of `POST /api/recordings/uploads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub content_type: String,
    pub size_bytes: i64,
    #[serde(default)]
    pub file_name: Option<String>,
}

/// A validated upload request.
#[derive(Debug)]
pub struct NewUpload {
    content_type: &'static str,
    extension: &'static str,
    size_bytes: i64,
    file_name: Option<String>,
}

impl UploadRequest {
    /// Checks every field, reporting all that are wrong (422).
    pub fn validate(self, max_bytes: u64) -> Result<NewUpload, Error> {
        let mut errors = Vec::new();
        let wanted = self.content_type.trim().to_ascii_lowercase();
        let kind = AUDIO_TYPES.iter().find(|(t, _)| *t == wanted);
        if kind.is_none() {
            errors.push(FieldError::new(
                "content_type",
                "must be one of audio/wav, audio/mpeg, audio/mp4, audio/x-m4a, audio/ogg, audio/opus, audio/webm, audio/flac",
            ));
        }
        if self.size_bytes <= 0 || self.size_bytes as u64 > max_bytes {
            errors.push(FieldError::new(
                "size_bytes",
                format!("must be from 1 to {max_bytes} bytes"),
            ));
        }
        let file_name = match self.file_name.as_deref().map(sanitize_file_name) {
            Some(Some(name)) => Some(name),
            Some(None) => {
                errors.push(FieldError::new(
                    "file_name",
                    "must be 1 to 255 characters with a visible name",
                ));
                None
            }
            None => None,
        };
        match kind {
            Some((content_type, extension)) if errors.is_empty() => Ok(NewUpload {
                content_type,
                extension,
                size_bytes: self.size_bytes,
                file_name,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

/// Keeps the last path segment, drops control characters, trims; metadata only, never part of a key.
pub fn sanitize_file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    (!cleaned.is_empty() && cleaned.chars().count() <= 255).then(|| cleaned.to_owned())
}

/// The answer to an upload request: the row, and the PUT to make.
#[derive(Debug, Serialize)]
pub struct Upload {
    pub recording: Recording,
    pub upload: UploadInstructions,
}

#[derive(Debug, Serialize)]
pub struct UploadInstructions {
    pub method: String,
    pub url: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl UploadInstructions {
    fn new(presigned: Presigned, expires_at: OffsetDateTime) -> Self {
        let headers = presigned
            .headers
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        UploadInstructions {
            method: presigned.method,
            url: presigned.url,
            headers,
            expires_at,
        }
    }
}

/// A recording with its short-lived download link: only a `ready` recording has one (a pending,
/// refused or deleted one has no object worth fetching, or none at all).
#[derive(Debug, Serialize)]
pub struct Downloadable {
    #[serde(flatten)]
    pub recording: Recording,
    pub download_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub download_expires_at: Option<OffsetDateTime>,
}

impl Keyed for Recording {
    fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// What the sweeper did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub abandoned_removed: u64,
    /// Objects deleted under `failed` recordings whose upload URL was (or still is) valid.
    pub failed_objects_removed: u64,
    pub deletions_completed: u64,
    pub failures: u64,
}

/// The recordings service: the pool, R2 and the cursor key, built once per cold start.
#[derive(Debug, Clone)]
pub struct Recordings {
    db: DbPool,
    storage: Storage,
    cursors: Cursors,
    max_bytes: u64,
    /// Where derived copies (AssemblyAI transcripts) are deleted; only `recordings-delete` has it.
    copies: Option<VendorCopies>,
    /// Where stored bytes count against the owner's `storage_bytes`.
    ledger: Option<Ledger>,
}

/// The ledger subject of a recording's stored bytes (uploads and call recordings alike).
pub fn storage_subject(id: Uuid) -> String {
    format!("recording:{id}")
}

impl Recordings {
    pub fn new(db: DbPool, storage: Storage, cursors: Cursors, max_bytes: u64) -> Self {
        Recordings {
            db,
            storage,
            cursors,
            max_bytes,
            copies: None,
            ledger: None,
        }
    }

    /// With the ledger that counts stored bytes (every function that adds or removes objects).
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    fn ledger(&self) -> Result<&Ledger, Error> {
        self.ledger
            .as_ref()
            .ok_or_else(|| Error::Internal("built without the usage ledger".into()))
    }

    /// With the vendor copies a deletion must reach.
    pub fn with_copies(mut self, copies: VendorCopies) -> Self {
        self.copies = Some(copies);
        self
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Creates the row and a presigned PUT pinned to the declared type and size.
    pub async fn create_upload(&self, owner: UserId, upload: NewUpload) -> Result<Upload, Error> {
        let id = Uuid::now_v7();
        let key = format!("users/{owner}/recordings/{id}.{}", upload.extension);
        // The declared size is what the presigned PUT admits: it must fit in what is left.
        let ledger = self.ledger()?;
        let hold = ledger
            .reserve(
                owner,
                Meter::StorageBytes,
                Units::Exactly(upload.size_bytes),
                &storage_subject(id),
                None,
            )
            .await?;
        // Sign first: if that fails, no row is left behind.
        let presigned = match self
            .storage
            .presign_put(
                &key,
                upload.content_type,
                upload.size_bytes as u64,
                UPLOAD_URL_TTL,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                ledger.release(hold.meter, &hold.subject).await?;
                return Err(e.into());
            }
        };
        let expires_at = OffsetDateTime::now_utc() + UPLOAD_URL_TTL;
        let client = db::client(&self.db).await?;
        let row = db::query(&client,
                &format!(
                    "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes, file_name,
                                             upload_expires_at)
                     VALUES ($1, $2, $3, 'pending_upload', $4, $5, $6, $7) RETURNING {COLUMNS}"
                ),
                &[
                    (&id, Type::UUID),
                    (&owner, Type::INT4),
                    (&key, Type::TEXT),
                    (&upload.content_type, Type::TEXT),
                    (&upload.size_bytes, Type::INT8),
                    (&upload.file_name, Type::TEXT),
                    (&expires_at, Type::TIMESTAMPTZ),
                ],
            )
            .await
            .map_err(DbError::from);
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                ledger.release(hold.meter, &hold.subject).await?;
                return Err(e.into());
            }
        };
        Ok(Upload {
            recording: Recording::from_row(&row[0]),
            upload: UploadInstructions::new(presigned, expires_at),
        })
    }

    /// A fresh presigned PUT for a recording still waiting for its upload: what a replayed upload
    /// request answers once the first URL has expired. Any other state is a 409 saying why.
    pub async fn refresh_upload(
        &self,
        owner: UserId,
        id: Uuid,
    ) -> Result<UploadInstructions, Error> {
        let recording = match self.find(owner, id).await {
            Ok(r) => r,
            Err(Error::NotFound) => {
                return Err(Error::Conflict(
                    "the recording this Idempotency-Key created was deleted; send a new key to start another upload"
                        .to_owned(),
                ));
            }
            Err(e) => return Err(e),
        };
        if recording.status != Status::PendingUpload {
            return Err(Error::Conflict(format!(
                "the recording this Idempotency-Key created is already {}; its upload URL is not renewed",
                match recording.status {
                    Status::Ready => "uploaded and ready",
                    _ => "refused",
                }
            )));
        }
        let presigned = self
            .storage
            .presign_put(
                &recording.object_key,
                &recording.content_type,
                recording.declared_size_bytes as u64,
                UPLOAD_URL_TTL,
            )
            .await?;
        let expires_at = OffsetDateTime::now_utc() + UPLOAD_URL_TTL;
        // The sweeper must keep clearing a refused upload until this URL has expired too.
        let rows = db::fetch(
            &self.db,
            "UPDATE recordings SET upload_expires_at = greatest(upload_expires_at, $3), updated_at = now()
                 WHERE id = $1 AND owner_id = $2 AND status = 'pending_upload' RETURNING 1",
            &[
                (&id, Type::UUID),
                (&owner, Type::INT4),
                (&expires_at, Type::TIMESTAMPTZ),
            ],
        )
        .await?;
        if rows.is_empty() {
            return Err(Error::Conflict(
                "the recording changed state while its upload URL was renewed; retry".to_owned(),
            ));
        }
        Ok(UploadInstructions::new(presigned, expires_at))
    }

    async fn find(&self, owner: UserId, id: Uuid) -> Result<Recording, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings WHERE id = $1 AND owner_id = $2 AND status <> 'deleted'"
        );
        Ok(Recording::from_row(
            &owned_row(&self.db, &sql, id, owner).await?,
        ))
    }

    async fn set_status(
        &self,
        owner: UserId,
        id: Uuid,
        to: &str,
        size: Option<i64>,
        duration: Option<f64>,
        reason: Option<&str>,
    ) -> Result<Option<Recording>, Error> {
        let client = db::client(&self.db).await?;
        let rows = db::query(&client,
                &format!(
                    "UPDATE recordings SET status = $3, size_bytes = $4, duration_seconds = $5, failure_reason = $6,
                            updated_at = now()
                     WHERE id = $1 AND owner_id = $2 AND status = 'pending_upload' RETURNING {COLUMNS}"
                ),
                &[
                    (&id, Type::UUID),
                    (&owner, Type::INT4),
                    (&to, Type::TEXT),
                    (&size, Type::INT8),
                    (&duration, Type::FLOAT8),
                    (&reason, Type::TEXT),
                ],
            )
            .await
            .map_err(DbError::from)?;
        Ok(rows.first().map(Recording::from_row))
    }

    /// Verifies the uploaded object (size, type, magic bytes) and marks the recording ready, or deletes
    /// the object and marks it failed. Calling it again answers with the outcome already reached.
    pub async fn complete(&self, owner: UserId, id: Uuid) -> Result<Recording, Error> {
        let recording = self.find(owner, id).await?;
        match recording.status {
            Status::Ready => return Ok(recording),
            Status::Failed => return Err(failed(&recording)),
            Status::Deleted => return Err(Error::NotFound),
            Status::PendingUpload => {}
        }
        let Some(info) = self.storage.head(&recording.object_key).await? else {
            return Err(Error::Conflict(
                "the upload has not arrived yet; PUT the file first".to_owned(),
            ));
        };
        let head = self
            .storage
            .first_bytes(&recording.object_key, SNIFF_BYTES)
            .await?;
        let verdict = verify(&recording, &info, &head);
        let updated = match verdict {
            Ok(duration) => {
                self.set_status(owner, id, "ready", Some(info.size as i64), duration, None)
                    .await?
            }
            Err(reason) => {
                // Bytes that lie about their type are not kept anywhere.
                self.storage.delete(&recording.object_key).await?;
                self.set_status(
                    owner,
                    id,
                    "failed",
                    Some(info.size as i64),
                    None,
                    Some(&reason),
                )
                .await?
            }
        };
        // None: a concurrent call finished first; answer with what it decided.
        let recording = match updated {
            Some(r) => r,
            None => self.find(owner, id).await?,
        };
        // The bytes that arrived settle what the declared size held; a refused file holds nothing.
        let subject = storage_subject(id);
        match recording.status {
            Status::Failed => {
                self.ledger()?
                    .release(Meter::StorageBytes, &subject)
                    .await?;
                Err(failed(&recording))
            }
            _ => {
                let size = recording.size_bytes.unwrap_or(0);
                self.ledger()?
                    .commit(Meter::StorageBytes, &subject, size)
                    .await?;
                Ok(recording)
            }
        }
    }

    /// Newest first, `limit` at a time, continuing after `cursor`.
    pub async fn list(
        &self,
        owner: UserId,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<Recording>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings
             WHERE owner_id = $1 AND status <> 'deleted'
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        self.cursors
            .fetch_page(
                &self.db,
                &sql,
                &[(&owner, Type::INT4)],
                owner,
                cursor,
                limit,
                Recording::from_row,
            )
            .await
    }

    /// The recording, with a presigned download (as an attachment) when it is `ready`.
    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Downloadable, Error> {
        let recording = self.find(owner, id).await?;
        if recording.status != Status::Ready {
            return Ok(Downloadable {
                recording,
                download_url: None,
                download_expires_at: None,
            });
        }
        let name = recording.file_name.clone().unwrap_or_else(|| {
            recording
                .object_key
                .rsplit('/')
                .next()
                .unwrap_or("recording")
                .to_owned()
        });
        let presigned = self
            .storage
            .presign_get(
                &recording.object_key,
                &name,
                &recording.content_type,
                DOWNLOAD_URL_TTL,
            )
            .await?;
        Ok(Downloadable {
            recording,
            download_url: Some(presigned.url),
            download_expires_at: Some(OffsetDateTime::now_utc() + DOWNLOAD_URL_TTL),
        })
    }

    /// Marks the row deleted, removes the object, then the row. If R2 fails the row stays marked
    /// `deleted` (invisible to the owner) and the sweeper, or a repeated DELETE, finishes the job.
    ///
    /// The transcripts AssemblyAI holds for the recording are recorded for deletion first (the
    /// transcription rows go with the recording row, by cascade) and tried now; one AssemblyAI
    /// refuses is finished by the sweeper and never blocks the 204.
    pub async fn delete(&self, owner: UserId, id: Uuid, deadline_ms: u64) -> Result<(), Error> {
        let copies = self.copies.as_ref().ok_or_else(|| {
            Error::Internal("built without the vendor copies a deletion must reach".into())
        })?;
        let transcripts = db::fetch(
            &self.db,
            "SELECT t.vendor_transcript_id FROM transcriptions t
             JOIN recordings r ON r.id = t.recording_id
             WHERE r.id = $1 AND r.owner_id = $2 AND t.vendor_transcript_id IS NOT NULL",
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        let mut found: Vec<VendorCopy> = transcripts
            .iter()
            .map(|r| VendorCopy::new(Kind::AssemblyAiTranscript, r.get::<_, String>(0)))
            .collect();
        // A recording taken from a call is deleted at its telephony vendor too.
        let source = db::fetch(
            &self.db,
            "SELECT source_vendor, source_recording_id FROM recordings
              WHERE id = $1 AND owner_id = $2 AND source_recording_id IS NOT NULL",
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        found.extend(source.iter().filter_map(|r| {
            crate::domain::lifecycle::copies::call_recording_copy(r.get(0), r.get(1))
        }));
        copies.record(owner, &found).await?;
        let rows = db::fetch(
            &self.db,
            "UPDATE recordings SET status = 'deleted', updated_at = now()
                 WHERE id = $1 AND owner_id = $2 RETURNING object_key",
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        let key: String = rows.first().ok_or(Error::NotFound)?.get(0);
        if let Some(ledger) = &self.ledger {
            ledger
                .free(Meter::StorageBytes, &storage_subject(id))
                .await?;
        }
        copies.settle(&found, deadline_ms).await;
        self.finish_deletion(id, &key).await.map_err(Error::from)
    }

    async fn finish_deletion(&self, id: Uuid, key: &str) -> Result<(), DeletionError> {
        self.storage
            .delete(key)
            .await
            .map_err(DeletionError::Storage)?;
        let client = db::client(&self.db).await.map_err(DeletionError::Db)?;
        db::query(
            &client,
            "DELETE FROM recordings WHERE id = $1 AND status = 'deleted'",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(|e| DeletionError::Db(e.into()))?;
        Ok(())
    }

    /// Removes uploads left `pending_upload` past `abandoned_after`, and finishes deletions R2 refused.
    pub async fn sweep(&self, abandoned_after: Duration, batch: i64) -> Result<SweepReport, Error> {
        let client = db::client(&self.db).await?;
        // Claim abandoned uploads by marking them deleted, so the owner never sees a half-removed row.
        let abandoned = db::query(&client,
                "UPDATE recordings SET status = 'deleted', failure_reason = 'upload abandoned', updated_at = now()
                 WHERE id IN (SELECT id FROM recordings WHERE status = 'pending_upload'
                              AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2
                              FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[(&abandoned_after.as_secs_f64(), Type::FLOAT8), (&batch, Type::INT8)],
            )
            .await
            .map_err(DbError::from)?;
        let abandoned: Vec<Uuid> = abandoned.iter().map(|r| r.get(0)).collect();
        let pending = db::query(&client,
                "SELECT id, object_key FROM recordings WHERE status = 'deleted' ORDER BY updated_at LIMIT $1",
                &[(&batch, Type::INT8)],
            )
            .await
            .map_err(DbError::from)?;
        // Refused uploads whose last clearing began before their PUT URL expired: the URL may have
        // been used again since. `now()` is this statement's start, so it precedes every deletion.
        let refused = db::query(
            &client,
            "SELECT id, object_key, now() FROM recordings
                 WHERE status = 'failed'
                   AND (object_cleared_at IS NULL OR object_cleared_at <= upload_expires_at)
                 ORDER BY updated_at LIMIT $1",
            &[(&batch, Type::INT8)],
        )
        .await
        .map_err(DbError::from)?;
        drop(client);
        let mut report = SweepReport::default();
        for row in refused {
            let (id, key, started): (Uuid, String, OffsetDateTime) =
                (row.get(0), row.get(1), row.get(2));
            match self.clear_refused(id, &key, started).await {
                Ok(()) => report.failed_objects_removed += 1,
                Err(e) => {
                    tracing::warn!(recording = %id, error = %e, "sweeper could not clear a refused upload");
                    report.failures += 1;
                }
            }
        }
        for row in pending {
            let (id, key): (Uuid, String) = (row.get(0), row.get(1));
            match self.finish_deletion(id, &key).await {
                Ok(()) if abandoned.contains(&id) => report.abandoned_removed += 1,
                Ok(()) => report.deletions_completed += 1,
                Err(e) => {
                    tracing::warn!(recording = %id, error = %e, "sweeper could not finish a deletion");
                    report.failures += 1;
                }
            }
        }
        Ok(report)
    }
}

impl Recordings {
    /// Deletes whatever sits under a refused recording, then notes when this clearing began.
    async fn clear_refused(
        &self,
        id: Uuid,
        key: &str,
        started: OffsetDateTime,
    ) -> Result<(), DeletionError> {
        self.storage
            .delete(key)
            .await
            .map_err(DeletionError::Storage)?;
        db::fetch(
            &self.db,
            "UPDATE recordings SET object_cleared_at = $2 WHERE id = $1 AND status = 'failed'",
            &[(&id, Type::UUID), (&started, Type::TIMESTAMPTZ)],
        )
        .await
        .map_err(DeletionError::Db)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum DeletionError {
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Db(DbError),
}

impl From<DeletionError> for Error {
    fn from(e: DeletionError) -> Self {
        match e {
            DeletionError::Storage(e) => {
                // The row is already hidden and marked; the sweeper retries the object.
                tracing::warn!(error = %e, "object deletion deferred to the sweeper");
                Error::from(e)
            }
            DeletionError::Db(e) => Error::from(e),
        }
    }
}

fn failed(recording: &Recording) -> Error {
    Error::Invalid(vec![FieldError::new(
        "file",
        recording
            .failure_reason
            .clone()
            .unwrap_or_else(|| "the upload was rejected".to_owned()),
    )])
}

/// Checks the object against the declaration; returns the duration when the header gives it.
fn verify(
    recording: &Recording,
    info: &crate::platform::storage::ObjectInfo,
    head: &[u8],
) -> Result<Option<f64>, String> {
    if info.size as i64 != recording.declared_size_bytes {
        return Err(format!(
            "size is {} bytes, {} were declared",
            info.size, recording.declared_size_bytes
        ));
    }
    if let Some(stored) = &info.content_type
        && !stored.eq_ignore_ascii_case(&recording.content_type)
    {
        return Err(format!(
            "stored as {stored}, declared {}",
            recording.content_type
        ));
    }
    let extension = AUDIO_TYPES
        .iter()
        .find(|(t, _)| *t == recording.content_type)
        .map(|(_, e)| *e)
        .unwrap_or("");
    if !crate::platform::audio::matches(extension, head) {
        return Err(format!(
            "the file's bytes are not {}",
            recording.content_type
        ));
    }
    Ok(crate::platform::audio::duration_seconds(
        extension, head, info.size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_reduced_to_a_safe_base_name() {
        assert_eq!(
            sanitize_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_file_name("C:\\calls\\monday.wav").as_deref(),
            Some("monday.wav")
        );
        assert_eq!(
            sanitize_file_name("  call\u{0}\n.wav ").as_deref(),
            Some("call.wav")
        );
        assert_eq!(sanitize_file_name("..."), None);
        assert_eq!(sanitize_file_name(&"a".repeat(256)), None);
    }

    #[test]
    fn upload_requests_report_every_bad_field() {
        let request = UploadRequest {
            content_type: "text/html".into(),
            size_bytes: 0,
            file_name: Some("/".into()),
        };
        match request.validate(1000) {
            Err(Error::Invalid(errors)) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, vec!["content_type", "size_bytes", "file_name"]);
            }
            other => panic!("{other:?}"),
        }
        let ok = UploadRequest {
            content_type: "Audio/WAV".into(),
            size_bytes: 1000,
            file_name: None,
        };
        let upload = ok.validate(1000).unwrap();
        assert_eq!(
            (upload.content_type, upload.extension),
            ("audio/wav", "wav")
        );
    }
}
