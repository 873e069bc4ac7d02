//! The transcription pipeline's configuration section.

use std::time::Duration;

use crate::platform::settings::Reader;

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

impl TranscriptionSettings {
    pub fn read(r: &mut Reader) -> TranscriptionSettings {
        TranscriptionSettings {
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
        }
    }
}
