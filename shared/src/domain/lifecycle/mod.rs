//! How data ends: deletions that reach every copy (vendors and R2, retried until confirmed),
//! speech retention, account deletion with a tombstone, and exports. docs/data-lifecycle.md has
//! the policy; this module is its code.

pub mod account;
pub mod config;
pub mod copies;
pub mod export;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ids::UserId;

/// Every object Parley stores for a user lives under this prefix (recordings, speech, exports),
/// so an account deletion can find even objects no row names any more.
pub fn user_prefix(user: UserId) -> String {
    format!("users/{user}/")
}

/// A message on the account queue: the job's kind and the row it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum AccountJob {
    /// Remove everything of user `user_id` (a tombstone row exists for it).
    DeleteAccount { user_id: i32 },
    /// Build export `export_id`.
    Export { export_id: Uuid },
}

/// What the account worker did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    Deletion(account::Outcome),
    Export(crate::domain::jobs::Status),
}

/// The account queue's worker: account deletions and exports.
#[derive(Debug, Clone)]
pub struct AccountWorker {
    pub deletions: account::AccountDeletions,
    pub exports: export::Exports,
    /// The queue's `maxReceiveCount`: the delivery on which an export that cannot be built fails.
    pub max_receive_count: u32,
}

impl AccountWorker {
    pub async fn process(
        &self,
        job: &AccountJob,
        delivery: &crate::platform::queue::Delivery,
        deadline_ms: u64,
    ) -> Result<Advanced, crate::domain::jobs::Retry> {
        match job {
            // Never given up: a deletion that keeps failing goes to the dead-letter queue (alarm),
            // and the sweeper sends its open tombstone again an hour later.
            AccountJob::DeleteAccount { user_id } => self
                .deletions
                .run(UserId::new(*user_id), deadline_ms)
                .await
                .map(Advanced::Deletion),
            AccountJob::Export { export_id } => match self.exports.build(*export_id).await {
                Ok(status) => Ok(Advanced::Export(status)),
                Err(retry) if delivery.receive_count >= self.max_receive_count => {
                    tracing::warn!(export = %export_id, error = %retry, "export failed on its last delivery");
                    self.exports
                        .fail(
                            *export_id,
                            "the export could not be built; request a new one",
                        )
                        .await?;
                    Ok(Advanced::Export(crate::domain::jobs::Status::Failed))
                }
                Err(retry) => Err(retry),
            },
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub vendor_deletions: copies::Settled,
    pub speech_expired: u64,
    pub exports_expired: u64,
    pub account_deletions_resent: u64,
}

/// The scheduled sweep: retries vendor deletions that are due, expires speech audio and exports,
/// and re-sends account deletions whose run never finished.
#[derive(Debug, Clone)]
pub struct LifecycleSweeper {
    pub db: crate::platform::db::DbPool,
    pub copies: copies::VendorCopies,
    pub deletions: account::AccountDeletions,
    pub exports: export::Exports,
    pub settings: config::LifecycleSettings,
}

impl LifecycleSweeper {
    /// One pass, `batch` items per kind of work; the next run picks up the rest.
    pub async fn sweep(
        &self,
        batch: i64,
        deadline_ms: u64,
    ) -> Result<SweepReport, crate::platform::db::DbError> {
        let speech_expired = self.expire_speech(batch, deadline_ms).await?;
        let exports_expired = self
            .exports
            .expire(self.settings.export_retention, batch)
            .await?;
        let vendor_deletions = self.copies.sweep(batch, deadline_ms).await?;
        let account_deletions_resent = self.deletions.reconcile(batch).await?;
        Ok(SweepReport {
            vendor_deletions,
            speech_expired,
            exports_expired,
            account_deletions_resent,
        })
    }
}

impl LifecycleSweeper {
    /// Removes the audio of speech jobs completed more than `SPEECH_RETENTION_DAYS` ago (R2 and the
    /// ElevenLabs history item); the rows stay, `expired`. The copies go through `vendor_deletions`
    /// so a holder that is down is retried by the next sweep.
    async fn expire_speech(
        &self,
        batch: i64,
        deadline_ms: u64,
    ) -> Result<u64, crate::platform::db::DbError> {
        use crate::platform::db::{self, Type};
        let retention = self.settings.speech_retention.as_secs_f64();
        let rows = db::fetch(
            &self.db,
            "SELECT id, owner_id, object_key, vendor_history_item_id FROM tts_jobs
             WHERE status = 'completed' AND expired_at IS NULL
               AND completed_at < now() - make_interval(secs => $1)
             ORDER BY completed_at LIMIT $2",
            &[(&retention, Type::FLOAT8), (&batch, Type::INT8)],
        )
        .await?;
        let mut expired = 0;
        for row in rows {
            let (id, owner): (Uuid, UserId) = (row.get(0), row.get(1));
            let found = copies::speech_copies(row.get(2), row.get(3));
            self.copies.record(owner, &found).await?;
            db::fetch(
                &self.db,
                "UPDATE tts_jobs SET expired_at = now(), updated_at = now() WHERE id = $1",
                &[(&id, Type::UUID)],
            )
            .await?;
            self.copies.settle(&found, deadline_ms).await;
            expired += 1;
        }
        Ok(expired)
    }
}
