//! The data lifecycle's configuration section: how long derived data is kept.

use std::time::Duration;

use crate::platform::settings::Reader;

#[derive(Debug, Clone, Copy)]
pub struct LifecycleSettings {
    /// Synthesized audio (R2 and the ElevenLabs history item) is removed this long after the job
    /// completed (`SPEECH_RETENTION_DAYS`).
    pub speech_retention: Duration,
    /// An export document is removed this long after it was built (`EXPORT_RETENTION_HOURS`).
    pub export_retention: Duration,
}

impl LifecycleSettings {
    pub fn read(r: &mut Reader) -> LifecycleSettings {
        LifecycleSettings {
            speech_retention: Duration::from_secs(
                r.bounded("SPEECH_RETENTION_DAYS", 30u64, 1, 3650) * 24 * 3600,
            ),
            export_retention: Duration::from_secs(
                r.bounded("EXPORT_RETENTION_HOURS", 24u64, 1, 24 * 30) * 3600,
            ),
        }
    }
}
