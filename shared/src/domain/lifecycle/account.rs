//! Account deletion. `DELETE /api/me` writes a tombstone (keyed by the user id, never the email),
//! ends every session in the same statement and queues a job; the job removes every row, object
//! and vendor copy of the user. Every step is idempotent and the job runs again until the tombstone
//! says `completed`, so a run interrupted halfway is finished by the next delivery (or by the
//! sweeper, which re-sends tombstones left open).
//!
//! What the user owns is named in three lists below, so a feature that adds a table adds one line:
//! [`OWNED_TABLES`] (rows deleted by owner), [`UNASSIGNED_ON_DELETION`] (rows kept, owner cleared)
//! and [`VENDOR_COPY_SOURCES`] (ids of copies held by vendors). `tests/tests/data_lifecycle.rs`
//! fails while a table with a foreign key to `users` is in none of them.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::copies::{Kind, Settled, VendorCopies, VendorCopy};
use super::{AccountJob, user_prefix};
use crate::domain::Error;
use crate::domain::billing::stripe::cancel_subscriptions;
use crate::domain::ids::UserId;
use crate::domain::jobs::Retry;
use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::queue::JobQueue;
use crate::platform::storage::Storage;
use crate::vendors::stripe::client::Stripe;

/// A table holding rows that belong to a user, and the column naming the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedTable {
    pub table: &'static str,
    /// As SQL spells it (Auth.js' camelCase columns are quoted).
    pub owner_column: &'static str,
}

impl OwnedTable {
    pub const fn new(table: &'static str, owner_column: &'static str) -> OwnedTable {
        OwnedTable {
            table,
            owner_column,
        }
    }
}

/// Rows deleted by owner, children before parents. Add a table that holds a user's data here
/// (e.g. the calls work's `webhook_events` by its owner column, `calls`, `translations`).
pub const OWNED_TABLES: &[OwnedTable] = &[
    OwnedTable::new("data_exports", "owner_id"),
    // Billing: reservations before the counters they hold, all after step 3 cancelled the
    // user's subscriptions at Stripe.
    OwnedTable::new("usage_reservations", "user_id"),
    OwnedTable::new("usage_counters", "user_id"),
    OwnedTable::new("rate_limits", "user_id"),
    OwnedTable::new("subscriptions", "user_id"),
    OwnedTable::new("billing_customers", "user_id"),
    // Raw webhook bodies name the caller and the callee; calls cascade to their commands, and
    // recordings taken from calls are deleted with the other recordings below.
    OwnedTable::new("webhook_events", "owner_id"),
    OwnedTable::new("calls", "owner_id"),
    OwnedTable::new("translations", "owner_id"),
    OwnedTable::new("tts_jobs", "owner_id"),
    OwnedTable::new("transcriptions", "owner_id"),
    OwnedTable::new("recordings", "owner_id"),
    // Auth.js: sign-in links and sessions (the users row itself goes last).
    OwnedTable::new("accounts", "\"userId\""),
    OwnedTable::new("sessions", "\"userId\""),
];

/// Rows that outlive the user but stop naming them: the owner column is set to NULL. Phone numbers
/// go here when the calls work adds them (`OwnedTable::new("phone_numbers", "owner_id")`), so a
/// number returns to the pool instead of being deleted.
pub const UNASSIGNED_ON_DELETION: &[OwnedTable] = &[OwnedTable::new("phone_numbers", "owner_id")];

/// Copies held by vendors, found before the rows naming them are deleted: each query selects the
/// object ids of one kind for `$1` = the user id. Telephony recordings and translations add a line.
pub const VENDOR_COPY_SOURCES: &[(Kind, &str)] = &[
    (
        Kind::AssemblyAiTranscript,
        "SELECT vendor_transcript_id FROM transcriptions
         WHERE owner_id = $1 AND vendor_transcript_id IS NOT NULL",
    ),
    (
        Kind::ElevenLabsHistoryItem,
        "SELECT vendor_history_item_id FROM tts_jobs
         WHERE owner_id = $1 AND vendor_history_item_id IS NOT NULL",
    ),
    // Recording ids Parley made up for events that carried none are not the vendor's: skipped.
    (
        Kind::TelnyxRecording,
        "SELECT source_recording_id FROM recordings
         WHERE owner_id = $1 AND source_vendor = 'telnyx'
           AND source_recording_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'",
    ),
    (
        Kind::SignalWireRecording,
        "SELECT source_recording_id FROM recordings
         WHERE owner_id = $1 AND source_vendor = 'signalwire'
           AND source_recording_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'",
    ),
];

const MARK_SENT: &str =
    "UPDATE account_deletions SET message_sent_at = now(), updated_at = now() WHERE user_id = $1";

/// The tombstone as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    pub user_id: UserId,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub report: Value,
}

/// `cargo xtask deletion status <user-id>`: the tombstone and what is still left.
#[derive(Debug, Clone, Serialize)]
pub struct DeletionStatus {
    pub tombstone: Option<Tombstone>,
    /// Whether the `users` row still exists.
    pub user_row: bool,
    /// Rows left per owned table (only tables with rows left).
    pub rows_left: Vec<(String, i64)>,
    /// Vendor copies recorded for deletion and not yet confirmed.
    pub vendor_copies_pending: i64,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    AlreadyCompleted,
    /// No tombstone: nobody asked to delete this user, so nothing is touched.
    NotRequested,
}

/// Account deletion: the request (API side) and the job (worker side).
#[derive(Debug, Clone)]
pub struct AccountDeletions {
    db: DbPool,
    queue: Option<JobQueue>,
    storage: Option<Storage>,
    copies: Option<VendorCopies>,
    /// Cancels the user's Stripe subscriptions; `None` where no Stripe key is configured.
    stripe: Option<Stripe>,
}

impl AccountDeletions {
    /// For `DELETE /api/me`: the tombstone and the queue.
    pub fn requests(db: DbPool, queue: JobQueue) -> AccountDeletions {
        AccountDeletions {
            db,
            queue: Some(queue),
            storage: None,
            copies: None,
            stripe: None,
        }
    }

    /// For the worker and the sweeper: R2, the vendor copies, and the queue to re-send to.
    pub fn worker(
        db: DbPool,
        queue: JobQueue,
        storage: Storage,
        copies: VendorCopies,
    ) -> AccountDeletions {
        AccountDeletions {
            db,
            queue: Some(queue),
            storage: Some(storage),
            copies: Some(copies),
            stripe: None,
        }
    }

    /// With the Stripe client that cancels subscriptions (the account worker's). Without one, a
    /// user with a live subscription cannot be deleted: the job fails until a key is configured.
    pub fn with_stripe(mut self, stripe: Option<Stripe>) -> AccountDeletions {
        self.stripe = stripe;
        self
    }

    /// For reading the status only (xtask).
    pub fn reader(db: DbPool) -> AccountDeletions {
        AccountDeletions {
            db,
            queue: None,
            storage: None,
            copies: None,
            stripe: None,
        }
    }

    /// Writes the tombstone and ends every session of `user` in one statement, then queues the
    /// job. If the queue is down the sweeper sends it; the user's sessions are gone either way.
    pub async fn request(&self, user: UserId) -> Result<(), Error> {
        db::fetch(
            &self.db,
            r#"WITH tombstone AS (
                   INSERT INTO account_deletions (user_id, status) VALUES ($1, 'queued')
                   ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
                   RETURNING user_id
               ), ended AS (
                   DELETE FROM sessions WHERE "userId" = $1 RETURNING id
               )
               SELECT (SELECT count(*) FROM tombstone), (SELECT count(*) FROM ended)"#,
            &[(&user, Type::INT4)],
        )
        .await?;
        self.send(user).await;
        Ok(())
    }

    async fn send(&self, user: UserId) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let job = AccountJob::DeleteAccount {
            user_id: user.get(),
        };
        if let Err(e) = queue.send(&job).await {
            tracing::warn!(user = %user, error = %e, "account deletion not enqueued; the sweeper will send it");
            return false;
        }
        if let Err(e) = db::fetch(&self.db, MARK_SENT, &[(&user, Type::INT4)]).await {
            tracing::warn!(user = %user, error = %e, "could not record the sent message");
        }
        true
    }

    /// Re-sends tombstones whose message never left, or whose run stopped (a run takes minutes at
    /// most, so one untouched for an hour was interrupted). Every step is idempotent.
    pub async fn reconcile(&self, batch: i64) -> Result<u64, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT user_id FROM account_deletions
             WHERE status <> 'completed'
               AND ((message_sent_at IS NULL AND requested_at < now() - interval '1 minute')
                    OR updated_at < now() - interval '1 hour')
             ORDER BY updated_at LIMIT $1",
            &[(&batch, Type::INT8)],
        )
        .await?;
        let mut sent = 0;
        for row in rows {
            if self.send(row.get(0)).await {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Runs (or finishes) the deletion of `user`. Each step is safe to repeat; an error leaves the
    /// tombstone open and the message is delivered again.
    pub async fn run(&self, user: UserId, deadline_ms: u64) -> Result<Outcome, Retry> {
        let (storage, copies) = match (&self.storage, &self.copies) {
            (Some(s), Some(c)) => (s, c),
            _ => return Err(Retry("built without R2 or vendor clients".into())),
        };
        let started = db::fetch(
            &self.db,
            "UPDATE account_deletions
             SET status = 'running', started_at = COALESCE(started_at, now()),
                 attempts = attempts + 1, updated_at = now()
             WHERE user_id = $1 AND status <> 'completed' RETURNING 1",
            &[(&user, Type::INT4)],
        )
        .await?;
        if started.is_empty() {
            let exists = db::fetch(
                &self.db,
                "SELECT 1 FROM account_deletions WHERE user_id = $1",
                &[(&user, Type::INT4)],
            )
            .await?;
            return Ok(if exists.is_empty() {
                Outcome::NotRequested
            } else {
                Outcome::AlreadyCompleted
            });
        }
        match self
            .remove_everything(user, storage, copies, deadline_ms)
            .await
        {
            Ok(report) => {
                db::fetch(
                    &self.db,
                    "UPDATE account_deletions
                     SET status = 'completed', completed_at = now(), last_error = NULL,
                         report = $2, updated_at = now()
                     WHERE user_id = $1",
                    &[(&user, Type::INT4), (&report, Type::JSONB)],
                )
                .await?;
                Ok(Outcome::Completed)
            }
            Err(Retry(reason)) => {
                if let Err(e) = db::fetch(
                    &self.db,
                    "UPDATE account_deletions SET last_error = left($2, 500), updated_at = now()
                     WHERE user_id = $1",
                    &[(&user, Type::INT4), (&reason, Type::TEXT)],
                )
                .await
                {
                    tracing::warn!(user = %user, error = %e, "could not record the failed step");
                }
                Err(Retry(reason))
            }
        }
    }

    async fn remove_everything(
        &self,
        user: UserId,
        storage: &Storage,
        copies: &VendorCopies,
        deadline_ms: u64,
    ) -> Result<Value, Retry> {
        // 1. No session survives, including one made after the request (a new sign-in).
        let sessions = self
            .count(r#"DELETE FROM sessions WHERE "userId" = $1"#, user)
            .await?;
        // 2. Copies at vendors, recorded before the rows naming them are deleted.
        let mut found = Vec::new();
        for (kind, sql) in VENDOR_COPY_SOURCES {
            let rows = db::fetch(&self.db, sql, &[(&user, Type::INT4)]).await?;
            found.extend(
                rows.iter()
                    .map(|r| VendorCopy::new(*kind, r.get::<_, String>(0))),
            );
        }
        copies.record(user, &found).await?;
        // 3. Billing: every subscription that may still bill is cancelled at Stripe (DELETE
        // /v1/subscriptions/{id}) while the rows that name it exist; invoices stay at Stripe.
        let subscriptions =
            cancel_subscriptions(&self.db, self.stripe.as_ref(), user, deadline_ms).await?;
        // 4. Every object under the user's prefix, including ones no row names.
        let keys = storage
            .list_keys(&user_prefix(user))
            .await
            .map_err(|e| Retry(format!("could not list the user's objects: {e}")))?;
        for key in &keys {
            storage
                .delete(key)
                .await
                .map_err(|e| Retry(format!("could not delete an object: {e}")))?;
        }
        // 5. Rows: owned tables, unassigned tables, idempotency records, sign-in tokens, the user.
        let mut rows = serde_json::Map::new();
        for owned in OWNED_TABLES {
            let sql = format!(
                "DELETE FROM {} WHERE {} = $1",
                owned.table, owned.owner_column
            );
            rows.insert(owned.table.to_owned(), json!(self.count(&sql, user).await?));
        }
        for kept in UNASSIGNED_ON_DELETION {
            let sql = format!(
                "UPDATE {table} SET {column} = NULL WHERE {column} = $1",
                table = kept.table,
                column = kept.owner_column
            );
            rows.insert(
                format!("{} (unassigned)", kept.table),
                json!(self.count(&sql, user).await?),
            );
        }
        // API idempotency scopes are `<function>:<user id>`; their stored answers name the user's data.
        let idempotency = self
            .count(
                "DELETE FROM idempotency_records WHERE split_part(scope, ':', 2) = $1::int4::text",
                user,
            )
            .await?;
        rows.insert("idempotency_records".into(), json!(idempotency));
        // Auth.js email sign-in tokens are keyed by the address; read it before the user row goes.
        let tokens = self
            .count(
                "DELETE FROM verification_token WHERE identifier IN (SELECT email FROM users WHERE id = $1)",
                user,
            )
            .await?;
        rows.insert("verification_token".into(), json!(tokens));
        let users = self.count("DELETE FROM users WHERE id = $1", user).await?;
        rows.insert("users".into(), json!(users));
        // 6. Try the vendor copies now; the sweeper keeps retrying any holder that is down.
        let pending = self.pending_copies(user).await?;
        let settled: Settled = copies.settle(&pending, deadline_ms).await;
        Ok(json!({
            "sessions_ended": sessions,
            "subscriptions_cancelled": subscriptions,
            "objects_deleted": keys.len(),
            "rows_deleted": rows,
            "vendor_copies": {"found": found.len(), "deleted": settled.deleted, "deferred": settled.deferred},
        }))
    }

    async fn pending_copies(&self, user: UserId) -> Result<Vec<VendorCopy>, DbError> {
        let rows = db::fetch(
            &self.db,
            "SELECT vendor, kind, object_id FROM vendor_deletions
             WHERE subject_user_id = $1 AND done_at IS NULL",
            &[(&user, Type::INT4)],
        )
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Kind::parse(r.get(0), r.get(1)).map(|k| VendorCopy::new(k, r.get::<_, String>(2)))
            })
            .collect())
    }

    async fn count(&self, sql: &str, user: UserId) -> Result<u64, DbError> {
        let client = db::client(&self.db).await?;
        Ok(client.execute(sql, &[&user]).await?)
    }

    /// The tombstone and whatever of the user is still stored.
    pub async fn status(&self, user: UserId) -> Result<DeletionStatus, DbError> {
        let tombstone = db::fetch(
            &self.db,
            "SELECT status, requested_at, started_at, completed_at, attempts, last_error, report
             FROM account_deletions WHERE user_id = $1",
            &[(&user, Type::INT4)],
        )
        .await?
        .first()
        .map(|r| Tombstone {
            user_id: user,
            status: r.get(0),
            requested_at: r.get(1),
            started_at: r.get(2),
            completed_at: r.get(3),
            attempts: r.get(4),
            last_error: r.get(5),
            report: r.get(6),
        });
        let user_row = !db::fetch(
            &self.db,
            "SELECT 1 FROM users WHERE id = $1",
            &[(&user, Type::INT4)],
        )
        .await?
        .is_empty();
        let mut rows_left = Vec::new();
        for owned in OWNED_TABLES.iter().chain(UNASSIGNED_ON_DELETION) {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} = $1",
                owned.table, owned.owner_column
            );
            let n: i64 = db::fetch(&self.db, &sql, &[(&user, Type::INT4)]).await?[0].get(0);
            if n > 0 {
                rows_left.push((owned.table.to_owned(), n));
            }
        }
        let vendor_copies_pending: i64 = db::fetch(
            &self.db,
            "SELECT count(*) FROM vendor_deletions WHERE subject_user_id = $1 AND done_at IS NULL",
            &[(&user, Type::INT4)],
        )
        .await?[0]
            .get(0);
        Ok(DeletionStatus {
            tombstone,
            user_row,
            rows_left,
            vendor_copies_pending,
        })
    }
}
