//! The usage reconciler: settles reservations whose subject ended without settling them (a Lambda
//! that died between the job's last write and the ledger's, a job failed in bulk by another
//! reconciler, a row deleted with its reservation open) and gives back stored bytes whose object
//! is gone. Every decision is read from the subject's own row, so running it twice changes nothing.

use serde::Serialize;

use super::{Ledger, Meter};
use crate::platform::db::{self, DbError, Type};

/// How long a reservation is left to its own job before the reconciler looks at it.
const SETTLE_AFTER_SECS: f64 = 300.0;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub committed: u64,
    pub released: u64,
    pub storage_freed: u64,
}

/// One query per kind of subject: rows of (meter, subject, action, units) where action is
/// `commit` (with the units the job's row says were billed) or `release`. `$1` is the age in
/// seconds a reservation must reach, `$2` the batch size.
const OPEN_RESERVATIONS: &[&str] = &[
    "SELECT r.meter, r.subject,
            CASE WHEN t.status = 'completed' THEN 'commit' ELSE 'release' END,
            ceil(coalesce(t.audio_duration_seconds, 0))::bigint
       FROM usage_reservations r
       LEFT JOIN transcriptions t ON r.subject = 'transcription:' || t.id::text
      WHERE r.state = 'reserved' AND r.meter = 'transcription_seconds'
        AND r.created_at < now() - make_interval(secs => $1)
        AND (t.id IS NULL OR t.status IN ('completed', 'failed'))
      LIMIT $2",
    "SELECT r.meter, r.subject,
            CASE WHEN j.status = 'completed' THEN 'commit' ELSE 'release' END,
            coalesce(j.characters, 0)::bigint
       FROM usage_reservations r
       LEFT JOIN tts_jobs j ON r.subject = 'tts:' || j.id::text
      WHERE r.state = 'reserved' AND r.meter = 'speech_characters'
        AND r.created_at < now() - make_interval(secs => $1)
        AND (j.id IS NULL OR j.status IN ('completed', 'failed'))
      LIMIT $2",
    "SELECT r.meter, r.subject,
            CASE WHEN j.status = 'completed' THEN 'commit' ELSE 'release' END,
            coalesce(j.billed_characters, r.units)::bigint
       FROM usage_reservations r
       LEFT JOIN translations j ON r.subject = 'translation:' || j.id::text
      WHERE r.state = 'reserved' AND r.meter = 'translation_characters'
        AND r.subject LIKE 'translation:%'
        AND r.created_at < now() - make_interval(secs => $1)
        AND (j.id IS NULL OR j.status IN ('completed', 'failed'))
      LIMIT $2",
    // A token was minted or a text translated if the request got that far: count it as held.
    "SELECT r.meter, r.subject, 'commit', r.units
       FROM usage_reservations r
      WHERE r.state = 'reserved'
        AND (r.subject LIKE 'realtime:%' OR r.subject LIKE 'text-translation:%')
        AND r.created_at < now() - make_interval(secs => $1)
      LIMIT $2",
    "SELECT r.meter, r.subject,
            CASE WHEN g.status = 'ready' THEN 'commit' ELSE 'release' END,
            coalesce(g.size_bytes, 0)
       FROM usage_reservations r
       LEFT JOIN recordings g ON r.subject = 'recording:' || g.id::text
      WHERE r.state = 'reserved' AND r.meter = 'storage_bytes'
        AND r.created_at < now() - make_interval(secs => $1)
        AND (g.id IS NULL OR g.status IN ('ready', 'failed', 'deleted'))
      LIMIT $2",
    // Calls: ended (minutes rounded up), or never created an hour after the hold.
    "SELECT r.meter, r.subject,
            CASE WHEN c.id IS NULL THEN 'release' ELSE 'commit' END,
            ((coalesce(c.duration_seconds, 0) + 59) / 60)::bigint
       FROM usage_reservations r
       LEFT JOIN calls c ON r.subject = 'call:' || c.id::text
                         OR (c.provider = 'signalwire' AND r.subject = 'call:signalwire:' || c.call_sid)
      WHERE r.state = 'reserved' AND r.meter = 'call_minutes'
        AND r.created_at < now() - make_interval(secs => $1)
        AND ((c.id IS NULL AND r.created_at < now() - interval '1 hour')
             OR c.status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled'))
      LIMIT $2",
];

/// Stored bytes whose object is gone: a deleted or expired recording or speech audio.
const GONE_OBJECTS: &str = "
    SELECT r.subject FROM usage_reservations r
      LEFT JOIN recordings g ON r.subject = 'recording:' || g.id::text
      LEFT JOIN tts_jobs j ON r.subject = 'speech-audio:' || j.id::text
     WHERE r.state = 'committed' AND r.meter = 'storage_bytes'
       AND CASE WHEN r.subject LIKE 'recording:%' THEN g.id IS NULL OR g.status = 'deleted'
                ELSE j.id IS NULL OR j.expired_at IS NOT NULL END
     LIMIT $1";

impl Ledger {
    pub async fn reconcile(&self, batch: i64) -> Result<ReconcileReport, DbError> {
        let mut report = ReconcileReport::default();
        for sql in OPEN_RESERVATIONS {
            let rows = db::fetch(
                &self.db,
                sql,
                &[(&SETTLE_AFTER_SECS, Type::FLOAT8), (&batch, Type::INT8)],
            )
            .await?;
            for row in &rows {
                let Some(meter) = Meter::parse(row.get(0)) else {
                    continue;
                };
                let subject: &str = row.get(1);
                let action: &str = row.get(2);
                if action == "commit" {
                    if self.commit(meter, subject, row.get(3)).await? {
                        report.committed += 1;
                    }
                } else if self.release(meter, subject).await? {
                    report.released += 1;
                }
            }
        }
        let gone = db::fetch(&self.db, GONE_OBJECTS, &[(&batch, Type::INT8)]).await?;
        for row in &gone {
            self.free(Meter::StorageBytes, row.get(0)).await?;
            report.storage_freed += 1;
        }
        if report != ReconcileReport::default() {
            tracing::info!(?report, "usage reconciled");
        }
        Ok(report)
    }
}
