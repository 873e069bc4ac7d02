//! Exports: `POST /api/me/export` queues one, the account worker writes one JSON document with
//! everything Parley holds about the user to R2, and `GET /api/me/export/{id}` links it for an
//! hour. Built in the worker, not in the request: transcripts run to tens of megabytes, past what
//! an API function should hold in its 10 s and API Gateway's payload limit.
//!
//! The document is a list of sections, one per [`Section`]; a feature that stores user data adds a
//! variant and its arm in [`Exports::section`].

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccountJob, user_prefix};
use crate::domain::Error;
use crate::domain::ids::UserId;
use crate::domain::jobs::{Retry, Status};
use crate::domain::owned::owned_row;
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::queue::JobQueue;
use crate::platform::storage::Storage;

/// Links (to the document and inside it) are valid this long.
pub const LINK_TTL: Duration = Duration::from_secs(3600);
/// Version of the document's shape; bump it when a section changes incompatibly.
pub const FORMAT: &str = "parley-export/1";

/// The sections of an export, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Profile,
    Recordings,
    Transcriptions,
    SpeechJobs,
}

impl Section {
    pub const ALL: &'static [Section] = &[
        Section::Profile,
        Section::Recordings,
        Section::Transcriptions,
        Section::SpeechJobs,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Section::Profile => "profile",
            Section::Recordings => "recordings",
            Section::Transcriptions => "transcriptions",
            Section::SpeechJobs => "speech_jobs",
        }
    }
}

/// An export as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub id: Uuid,
    pub status: Status,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    /// Set when the retention sweep removed the document; request a new export.
    pub expired: bool,
    pub download_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub download_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    #[serde(skip)]
    object_key: Option<String>,
}

const COLUMNS: &str =
    "id, status, size_bytes, error, expired_at IS NOT NULL, created_at, completed_at, object_key";

impl Export {
    fn from_row(row: &tokio_postgres::Row) -> Export {
        Export {
            id: row.get(0),
            status: Status::parse(row.get(1)),
            size_bytes: row.get(2),
            error: row.get(3),
            expired: row.get(4),
            download_url: None,
            download_expires_at: None,
            created_at: row.get(5),
            completed_at: row.get(6),
            object_key: row.get(7),
        }
    }
}

const MARK_SENT: &str =
    "UPDATE data_exports SET message_sent_at = now(), updated_at = now() WHERE id = $1";

/// Exports: the API side (create, get) and the worker side (build).
#[derive(Debug, Clone)]
pub struct Exports {
    db: DbPool,
    storage: Storage,
    queue: Option<JobQueue>,
}

impl Exports {
    pub fn new(db: DbPool, storage: Storage, queue: Option<JobQueue>) -> Exports {
        Exports { db, storage, queue }
    }

    /// Queues an export of `owner`'s data.
    pub async fn create(&self, owner: UserId) -> Result<Export, Error> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| Error::Internal("built without the account queue".into()))?;
        let id = Uuid::now_v7();
        let rows = db::fetch(
            &self.db,
            &format!(
                "INSERT INTO data_exports (id, owner_id, status) VALUES ($1, $2, 'queued') RETURNING {COLUMNS}"
            ),
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        let export = Export::from_row(&rows[0]);
        queue
            .send_and_mark(
                &self.db,
                MARK_SENT,
                id,
                &AccountJob::Export { export_id: id },
            )
            .await;
        Ok(export)
    }

    /// The owner's export, with a fresh one-hour link once it is built.
    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Export, Error> {
        let sql = format!("SELECT {COLUMNS} FROM data_exports WHERE id = $1 AND owner_id = $2");
        let mut export = Export::from_row(&owned_row(&self.db, &sql, id, owner).await?);
        if let (Status::Completed, false, Some(key)) =
            (export.status, export.expired, export.object_key.as_deref())
        {
            let presigned = self
                .storage
                .presign_get(
                    key,
                    &format!("parley-export-{id}.json"),
                    "application/json",
                    LINK_TTL,
                )
                .await?;
            export.download_url = Some(presigned.url);
            export.download_expires_at = Some(OffsetDateTime::now_utc() + LINK_TTL);
        }
        Ok(export)
    }

    /// Builds export `id`: every section, one JSON document in R2. Rebuilding is harmless (the
    /// same key is overwritten), so a repeated delivery just does it again.
    pub async fn build(&self, id: Uuid) -> Result<Status, Retry> {
        let rows = db::fetch(
            &self.db,
            "UPDATE data_exports SET status = 'processing', updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'processing') RETURNING owner_id",
            &[(&id, Type::UUID)],
        )
        .await?;
        // Gone (the account was deleted) or already built.
        let Some(row) = rows.first() else {
            return Ok(Status::Completed);
        };
        let owner: UserId = row.get(0);
        let document = self.document(owner).await?;
        let bytes = serde_json::to_vec_pretty(&document)
            .map_err(|e| Retry(format!("could not serialize the export: {e}")))?;
        let size = bytes.len() as i64;
        let key = format!("{}exports/{id}.json", user_prefix(owner));
        self.storage
            .put(&key, bytes.into(), "application/json")
            .await
            .map_err(|e| Retry(format!("could not store the export: {e}")))?;
        db::fetch(
            &self.db,
            "UPDATE data_exports SET status = 'completed', object_key = $2, size_bytes = $3,
                    completed_at = now(), updated_at = now()
             WHERE id = $1 AND status = 'processing'",
            &[(&id, Type::UUID), (&key, Type::TEXT), (&size, Type::INT8)],
        )
        .await?;
        Ok(Status::Completed)
    }

    /// Marks export `id` failed (the last delivery could not build it).
    pub async fn fail(&self, id: Uuid, reason: &str) -> Result<(), DbError> {
        db::fetch(
            &self.db,
            "UPDATE data_exports SET status = 'failed', error = $2, updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'processing')",
            &[(&id, Type::UUID), (&reason, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// The whole document for `owner`.
    pub async fn document(&self, owner: UserId) -> Result<Value, Retry> {
        let mut sections = serde_json::Map::new();
        for section in Section::ALL {
            sections.insert(
                section.name().to_owned(),
                self.section(*section, owner).await?,
            );
        }
        let generated_at = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Ok(json!({
            "format": FORMAT,
            "user_id": owner,
            "generated_at": generated_at,
            "links_valid_seconds": LINK_TTL.as_secs(),
            "sections": sections,
        }))
    }

    async fn section(&self, section: Section, owner: UserId) -> Result<Value, Retry> {
        match section {
            Section::Profile => {
                let user = self
                    .json(
                        r#"SELECT json_build_object('id', id::text, 'name', name, 'email', email,
                                  'email_verified', "emailVerified", 'image', image)
                           FROM users WHERE id = $1"#,
                        owner,
                    )
                    .await?;
                // Sign-in links, without their tokens (those are credentials, not data about the user).
                let accounts = self
                    .json(
                        r#"SELECT coalesce(json_agg(json_build_object('provider', provider,
                                  'provider_account_id', "providerAccountId", 'type', type)
                                  ORDER BY id), '[]') FROM accounts WHERE "userId" = $1"#,
                        owner,
                    )
                    .await?;
                Ok(json!({"user": user, "sign_in_accounts": accounts}))
            }
            Section::Recordings => {
                let mut recordings = self
                    .json(
                        "SELECT coalesce(json_agg(r ORDER BY r.created_at), '[]') FROM (
                             SELECT id, status, content_type, size_bytes, duration_seconds, file_name,
                                    failure_reason, created_at, updated_at, object_key
                             FROM recordings WHERE owner_id = $1 AND status <> 'deleted') r",
                        owner,
                    )
                    .await?;
                for recording in recordings.as_array_mut().into_iter().flatten() {
                    let key = recording
                        .as_object_mut()
                        .and_then(|o| o.remove("object_key"));
                    let ready = recording["status"] == "ready";
                    let link = match (ready, key.as_ref().and_then(Value::as_str)) {
                        (true, Some(key)) => {
                            let name = recording["file_name"]
                                .as_str()
                                .unwrap_or("recording")
                                .to_owned();
                            let content_type = recording["content_type"]
                                .as_str()
                                .unwrap_or("application/octet-stream")
                                .to_owned();
                            let presigned = self
                                .storage
                                .presign_get(key, &name, &content_type, LINK_TTL)
                                .await
                                .map_err(|e| Retry(format!("could not sign a link: {e}")))?;
                            Value::String(presigned.url)
                        }
                        _ => Value::Null,
                    };
                    recording["download_url"] = link;
                }
                Ok(recordings)
            }
            Section::Transcriptions => {
                // Everything but the per-job callback secret, which is Parley's, not the user's.
                self.json(
                    "SELECT coalesce(json_agg(t ORDER BY t.created_at), '[]') FROM (
                         SELECT id, recording_id, status, language_code, speaker_labels,
                                speakers_expected, text, utterances, words, audio_duration_seconds,
                                confidence, error, created_at, completed_at
                         FROM transcriptions WHERE owner_id = $1) t",
                    owner,
                )
                .await
            }
            Section::SpeechJobs => {
                let mut jobs = self
                    .json(
                        "SELECT coalesce(json_agg(s ORDER BY s.created_at), '[]') FROM (
                             SELECT id, status, text, characters, voice_id, model_id, output_format,
                                    voice_settings, content_type, size_bytes, error, created_at,
                                    completed_at, expired_at IS NOT NULL AS expired, object_key
                             FROM tts_jobs WHERE owner_id = $1) s",
                        owner,
                    )
                    .await?;
                for job in jobs.as_array_mut().into_iter().flatten() {
                    let key = job.as_object_mut().and_then(|o| o.remove("object_key"));
                    let live = job["status"] == "completed" && job["expired"] == false;
                    let link = match (live, key.as_ref().and_then(Value::as_str)) {
                        (true, Some(key)) => {
                            let name =
                                format!("speech-{}", key.rsplit('/').next().unwrap_or("audio"));
                            let content_type = job["content_type"]
                                .as_str()
                                .unwrap_or("application/octet-stream")
                                .to_owned();
                            let presigned = self
                                .storage
                                .presign_get(key, &name, &content_type, LINK_TTL)
                                .await
                                .map_err(|e| Retry(format!("could not sign a link: {e}")))?;
                            Value::String(presigned.url)
                        }
                        _ => Value::Null,
                    };
                    job["audio_url"] = link;
                }
                Ok(jobs)
            }
        }
    }

    async fn json(&self, sql: &str, owner: UserId) -> Result<Value, Retry> {
        let rows = db::fetch(&self.db, sql, &[(&owner, Type::INT4)]).await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<Value>>(0))
            .unwrap_or(Value::Null))
    }

    /// Removes documents older than `retention`; the row stays, `expired`.
    pub async fn expire(&self, retention: Duration, batch: i64) -> Result<u64, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT id, object_key FROM data_exports
             WHERE status = 'completed' AND expired_at IS NULL
               AND completed_at < now() - make_interval(secs => $1)
             ORDER BY completed_at LIMIT $2",
            &[
                (&retention.as_secs_f64(), Type::FLOAT8),
                (&batch, Type::INT8),
            ],
        )
        .await?;
        let mut expired = 0;
        for row in rows {
            let (id, key): (Uuid, String) = (row.get(0), row.get(1));
            match self.storage.delete(&key).await {
                Ok(()) => {
                    db::fetch(
                        &self.db,
                        "UPDATE data_exports SET expired_at = now(), updated_at = now() WHERE id = $1",
                        &[(&id, Type::UUID)],
                    )
                    .await?;
                    expired += 1;
                }
                Err(e) => {
                    tracing::warn!(export = %id, error = %e, "could not remove an expired export")
                }
            }
        }
        Ok(expired)
    }
}
