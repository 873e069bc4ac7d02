//! Signed webhook events, stored once and then processed by the call worker: the receiver's whole
//! job is verify → store → enqueue → answer. The table is the outbox; a reconciler sends what the
//! queue missed, and a schedule purges bodies after the retention period.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{CallJob, Provider};
use crate::domain::Error;
use crate::domain::ids::UserId;
use crate::platform::db::{self, DbPool, Type};
use crate::platform::queue::JobQueue;

/// How long raw bodies are kept (issue: 30 days), then purged.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub use crate::domain::outbox::{Receipt, UNSENT_AFTER};

/// One verified request, about to be stored.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub vendor: Provider,
    /// The vendor's event id, or for form callbacks one built from the sid and status.
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: Option<OffsetDateTime>,
    /// Exactly the signed bytes.
    pub body: &'a [u8],
    pub content_type: &'a str,
    /// Our call id when the callback URL carried it.
    pub call_hint: Option<Uuid>,
}

/// A stored event, as the worker reads it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: Uuid,
    pub vendor: Provider,
    pub event_id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub call_hint: Option<Uuid>,
    pub status: String,
    pub attempts: i32,
    /// The vendor's time, or when Parley received it if the vendor gave none.
    pub occurred_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct WebhookEvents {
    db: DbPool,
    queue: JobQueue,
}

impl WebhookEvents {
    pub fn new(db: DbPool, queue: JobQueue) -> WebhookEvents {
        WebhookEvents { db, queue }
    }

    pub fn db(&self) -> &DbPool {
        &self.db
    }

    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// Stores the event once and enqueues it: one statement and one SQS call. A duplicate is
    /// acknowledged without either second step.
    pub async fn receive(&self, event: Incoming<'_>) -> Result<Receipt, Error> {
        let id = Uuid::now_v7();
        let rows = db::fetch(
            &self.db,
            "INSERT INTO webhook_events (id, vendor, event_id, event_type, occurred_at, body,
                                         content_type, call_hint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (vendor, event_id) DO NOTHING RETURNING id",
            &[
                (&id, Type::UUID),
                (&event.vendor.as_str(), Type::TEXT),
                (&event.event_id, Type::TEXT),
                (&event.event_type, Type::TEXT),
                (&event.occurred_at, Type::TIMESTAMPTZ),
                (&event.body, Type::BYTEA),
                (&event.content_type, Type::TEXT),
                (&event.call_hint, Type::UUID),
            ],
        )
        .await?;
        if rows.is_empty() {
            return Ok(Receipt::Duplicate);
        }
        // Stored is safe: if SQS is down now, the reconciler sends it within a minute or two.
        let enqueued = match self.queue.send(&CallJob::Event(id)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(event = %id, error = %e, "event stored but not enqueued; the reconciler will send it");
                false
            }
        };
        Ok(Receipt::Stored { id, enqueued })
    }

    pub async fn load(&self, id: Uuid) -> Result<Option<StoredEvent>, Error> {
        let rows = db::fetch(
            &self.db,
            "UPDATE webhook_events SET attempts = attempts + 1
              WHERE id = $1 AND vendor IN ('telnyx', 'signalwire')
             RETURNING id, vendor, event_id, event_type, body, content_type, call_hint, status,
                       attempts, COALESCE(occurred_at, received_at)",
            &[(&id, Type::UUID)],
        )
        .await?;
        Ok(rows.first().map(|r| StoredEvent {
            id: r.get(0),
            vendor: Provider::parse(r.get(1)).unwrap_or(Provider::Telnyx),
            event_id: r.get(2),
            event_type: r.get(3),
            body: r.get(4),
            content_type: r.get(5),
            call_hint: r.get(6),
            status: r.get(7),
            attempts: r.get(8),
            occurred_at: r.get(9),
        }))
    }

    /// Records the outcome; `owner` ties the body to a user so account deletion can remove it.
    pub async fn settle(
        &self,
        id: Uuid,
        owner: Option<UserId>,
        error: Option<&str>,
    ) -> Result<(), Error> {
        let status = if error.is_some() {
            "failed"
        } else {
            "processed"
        };
        db::fetch(
            &self.db,
            "UPDATE webhook_events SET status = $2, last_error = $3, owner_id = COALESCE($4, owner_id),
                    processed_at = now() WHERE id = $1",
            &[
                (&id, Type::UUID),
                (&status, Type::TEXT),
                (&error, Type::TEXT),
                (&owner, Type::INT4),
            ],
        )
        .await?;
        Ok(())
    }

    /// Records a failed attempt that will be retried.
    pub async fn note_error(&self, id: Uuid, error: &str) -> Result<(), Error> {
        db::fetch(
            &self.db,
            "UPDATE webhook_events SET last_error = $2 WHERE id = $1",
            &[(&id, Type::UUID), (&error, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// Sends what never reached the call worker: stored telephony events no delivery has read,
    /// and outbound calls still waiting for their dial. Returns how many messages were sent.
    /// (Stripe's events share the table and go to the billing queue:
    /// `domain::billing::stripe::StripeOutbox::reconcile`.)
    pub async fn reconcile(&self, batch: i64) -> Result<u64, Error> {
        let older = OffsetDateTime::now_utc() - UNSENT_AFTER;
        let events = db::fetch(
            &self.db,
            "SELECT id FROM webhook_events
              WHERE vendor IN ('telnyx', 'signalwire') AND status = 'received' AND attempts = 0
                AND received_at < $1
              ORDER BY received_at LIMIT $2",
            &[(&older, Type::TIMESTAMPTZ), (&batch, Type::INT8)],
        )
        .await?;
        let dials = db::fetch(
            &self.db,
            "SELECT id FROM calls
              WHERE status = 'queued' AND dial_started_at IS NULL AND created_at < $1
              ORDER BY created_at LIMIT $2",
            &[(&older, Type::TIMESTAMPTZ), (&batch, Type::INT8)],
        )
        .await?;
        let jobs = events
            .iter()
            .map(|r| CallJob::Event(r.get(0)))
            .chain(dials.iter().map(|r| CallJob::Dial(r.get(0))));
        let mut sent = 0;
        for job in jobs {
            self.queue
                .send(&job)
                .await
                .map_err(|e| Error::Unavailable(format!("resending {job:?}: {e}")))?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Deletes events older than the retention period.
    pub async fn purge(&self, keep: Duration, batch: i64) -> Result<u64, Error> {
        let before = OffsetDateTime::now_utc() - keep;
        let rows = db::fetch(
            &self.db,
            "DELETE FROM webhook_events WHERE id IN (
                 SELECT id FROM webhook_events WHERE received_at < $1 LIMIT $2)
             RETURNING id",
            &[(&before, Type::TIMESTAMPTZ), (&batch, Type::INT8)],
        )
        .await?;
        Ok(rows.len() as u64)
    }
}

/// Puts a stored event back in the outbox (after a bug fix, say): the sweeper sends it within a
/// minute, through the same idempotent processing, so applying it again changes only what the
/// fixed code now does differently. Needs only the database, so it works against any stage.
pub async fn mark_for_replay(pool: &DbPool, id: Uuid) -> Result<(), Error> {
    let rows = db::fetch(
        pool,
        "UPDATE webhook_events SET status = 'received', attempts = 0, last_error = NULL,
                processed_at = NULL
          WHERE id = $1 RETURNING id",
        &[(&id, Type::UUID)],
    )
    .await?;
    if rows.is_empty() {
        return Err(Error::NotFound);
    }
    Ok(())
}
