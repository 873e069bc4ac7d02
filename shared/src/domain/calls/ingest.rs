//! Recording ingest: takes a call's recording from its vendor into R2 at once (Telnyx's links
//! expire after ten minutes), then records it as a `ready` recording of the call's owner and, when
//! the number says so, queues its transcription. Keyed by the vendor's recording id, so a repeated
//! `recording.saved` never makes a second recording.

use uuid::Uuid;

use super::events::{self, Applied, EventKind, RecordingRef};
use super::webhooks::WebhookEvents;
use super::worker::{IngestJob, Retry};
use super::{Provider, signalwire, telnyx as telnyx_events};
use crate::domain::Error;
use crate::domain::billing::{Ledger, Meter};
use crate::domain::ids::UserId;
use crate::domain::recordings;
use crate::domain::transcriptions::{NewTranscription, Transcriptions};
use crate::platform::audio;
use crate::platform::db::{self, DbPool, Type};
use crate::platform::download::{DownloadError, Downloaded, Downloader};
use crate::platform::queue::Delivery;
use crate::platform::storage::Storage;
use crate::vendors::telnyx::client::Telnyx;

/// Namespace of recording ids derived from vendor recording ids.
const RECORDING_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_2a57_8d5e_4c1e_9b7a_6b2f_3a4c_0001);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Ready {
        recording: Uuid,
        transcription: bool,
    },
    AlreadyReady {
        recording: Uuid,
    },
    Ignored(&'static str),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct RecordingIngest {
    pub db: DbPool,
    pub events: WebhookEvents,
    pub storage: Storage,
    pub telnyx_downloads: Downloader,
    pub signalwire_downloads: Downloader,
    pub telnyx: Option<Telnyx>,
    pub transcriptions: Transcriptions,
    pub ledger: Ledger,
    pub max_receive_count: u32,
}

/// The recording's id in Parley: the same for every delivery of the same vendor recording.
pub fn recording_id(provider: Provider, vendor_recording_id: &str) -> Uuid {
    Uuid::new_v5(
        &RECORDING_NAMESPACE,
        format!("{}:{vendor_recording_id}", provider.as_str()).as_bytes(),
    )
}

impl RecordingIngest {
    pub async fn process(
        &self,
        job: &IngestJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Ingested, Retry> {
        let last = delivery.receive_count >= self.max_receive_count;
        let Some(stored) = self.events.load(job.event).await? else {
            return Ok(Ingested::Ignored("no such event (purged?)"));
        };
        let (event, telnyx_recording) = match stored.vendor {
            Provider::Telnyx => match telnyx_events::read(&stored.body) {
                Ok((envelope, event)) => (
                    event,
                    telnyx_events::recording_api_id(&envelope).map(str::to_owned),
                ),
                Err(e) => return Ok(Ingested::Failed(e.to_string())),
            },
            Provider::Signalwire => match signalwire::read(&stored) {
                Ok(event) => (event, None),
                Err(e) => return Ok(Ingested::Failed(e.to_string())),
            },
        };
        let Some(event) = event else {
            return Ok(Ingested::Ignored("not a call event"));
        };
        let EventKind::RecordingSaved(recording) = &event.kind else {
            return Ok(Ingested::Ignored("not a finished recording"));
        };
        let call = match events::apply(&self.db, &event).await? {
            Applied::Call { call, .. } => call,
            Applied::Unowned | Applied::Unknown => {
                return Ok(Ingested::Ignored("the call has no owner"));
            }
        };
        let id = recording_id(stored.vendor, &recording.recording_id);
        if self.exists(id).await? {
            self.transcribe_once(call.owner, id, call.transcribe)
                .await?;
            return Ok(Ingested::AlreadyReady { recording: id });
        }
        let key = format!("users/{}/recordings/{id}.wav", call.owner);
        let downloaded = match self
            .download(
                stored.vendor,
                recording,
                telnyx_recording.as_deref(),
                &key,
                deadline_ms,
            )
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_transient() && !last => return Err(Retry(e.to_string())),
            Err(e) => {
                let reason = format!(
                    "the recording could not be taken from {}: {e}",
                    stored.vendor.as_str()
                );
                self.note_failure(call.id, &reason).await?;
                return Ok(Ingested::Failed(reason));
            }
        };
        if downloaded.bytes == 0 {
            let reason = "the vendor's recording is empty".to_owned();
            self.note_failure(call.id, &reason).await?;
            return Ok(Ingested::Failed(reason));
        }
        // The file's own header, bounded by its size; the vendor's figure only when unreadable.
        let duration = audio::duration_seconds("wav", &downloaded.head, downloaded.bytes)
            .filter(|d| d.is_finite() && *d >= 0.0)
            .or(recording.duration_seconds);
        let size = i64::try_from(downloaded.bytes).unwrap_or(i64::MAX);
        let file_name = format!("call-{}.wav", call.id);
        db::fetch(
            &self.db,
            "INSERT INTO recordings (id, owner_id, object_key, status, content_type,
                                     declared_size_bytes, size_bytes, duration_seconds, file_name,
                                     call_id, source_vendor, source_recording_id)
             VALUES ($1, $2, $3, 'ready', 'audio/wav', $4, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
            &[
                (&id, Type::UUID),
                (&call.owner, Type::INT4),
                (&key, Type::TEXT),
                (&size, Type::INT8),
                (&duration, Type::FLOAT8),
                (&file_name, Type::TEXT),
                (&call.id, Type::UUID),
                (&stored.vendor.as_str(), Type::TEXT),
                (&recording.recording_id, Type::TEXT),
            ],
        )
        .await
        .map_err(Error::from)?;
        // The vendor made this object, so it counts whatever is left: later uploads are refused.
        self.ledger
            .record(
                call.owner,
                Meter::StorageBytes,
                &recordings::storage_subject(id),
                size,
            )
            .await?;
        let transcription = self
            .transcribe_once(call.owner, id, call.transcribe)
            .await?;
        Ok(Ingested::Ready {
            recording: id,
            transcription,
        })
    }

    async fn exists(&self, id: Uuid) -> Result<bool, Retry> {
        let rows = db::fetch(
            &self.db,
            "SELECT 1 FROM recordings WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(Error::from)?;
        Ok(!rows.is_empty())
    }

    /// Streams the file into R2; an expired Telnyx link is replaced by a fresh one from the
    /// Recordings API, once.
    async fn download(
        &self,
        vendor: Provider,
        recording: &RecordingRef,
        telnyx_recording: Option<&str>,
        key: &str,
        deadline_ms: u64,
    ) -> Result<Downloaded, DownloadError> {
        let downloader = match vendor {
            Provider::Telnyx => &self.telnyx_downloads,
            Provider::Signalwire => &self.signalwire_downloads,
        };
        let first = match recording.url.as_deref() {
            Some(url) => {
                downloader
                    .to_storage(url, &self.storage, key, "audio/wav")
                    .await
            }
            None => Err(DownloadError::Expired { status: 404 }),
        };
        match (first, vendor, telnyx_recording) {
            (Err(DownloadError::Expired { .. }), Provider::Telnyx, Some(api_id)) => {
                let telnyx = self
                    .telnyx
                    .as_ref()
                    .ok_or_else(|| DownloadError::Failed("Telnyx is not configured".into()))?;
                let fresh = telnyx.recording(api_id, deadline_ms).await.map_err(|e| {
                    if e.is_transient() {
                        DownloadError::Transient(format!("Telnyx Recordings API: {e}"))
                    } else {
                        DownloadError::Failed(format!("Telnyx Recordings API: {e}"))
                    }
                })?;
                let url = fresh
                    .download_urls
                    .wav
                    .or(fresh.download_urls.mp3)
                    .ok_or_else(|| DownloadError::Failed("no download URL".into()))?;
                downloader
                    .to_storage(&url, &self.storage, key, "audio/wav")
                    .await
            }
            (result, ..) => result,
        }
    }

    async fn note_failure(&self, call: Uuid, reason: &str) -> Result<(), Retry> {
        tracing::error!(call_id = %call, reason, "recording ingest failed");
        db::fetch(
            &self.db,
            "UPDATE calls SET error = $2, updated_at = now() WHERE id = $1",
            &[(&call, Type::UUID), (&reason, Type::TEXT)],
        )
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    /// Queues the recording's transcription when the call asks for one and none exists yet.
    async fn transcribe_once(&self, owner: UserId, id: Uuid, wanted: bool) -> Result<bool, Retry> {
        if !wanted {
            return Ok(false);
        }
        let rows = db::fetch(
            &self.db,
            "SELECT 1 FROM transcriptions WHERE recording_id = $1 LIMIT 1",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(Error::from)?;
        if !rows.is_empty() {
            return Ok(false);
        }
        let request = NewTranscription {
            language_code: None,
            speaker_labels: Some(true),
            speakers_expected: Some(2),
        };
        match self.transcriptions.create(owner, id, request).await {
            Ok(_) => Ok(true),
            // The recording is kept; its owner can transcribe it once the allowance allows.
            Err(e @ (Error::QuotaExceeded(_) | Error::BudgetExhausted(_))) => {
                tracing::warn!(recording_id = %id, user_id = %owner, reason = %e,
                    "the call's recording is not transcribed automatically");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
