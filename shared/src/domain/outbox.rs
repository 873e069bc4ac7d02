//! What every webhook outbox shares: the `webhook_events` table stores each verified event once
//! and a sweeper sends what SQS refused. Telephony (`calls::webhooks`) and Stripe
//! (`billing::stripe`) each own their rows; this module holds what their receivers answer with.

use std::time::Duration;

use uuid::Uuid;

/// A row still unsent this long after it arrived is sent by the reconciler.
pub const UNSENT_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Stored now; `enqueued` is false when SQS refused (the reconciler sends it).
    Stored { id: Uuid, enqueued: bool },
    /// Seen before: acknowledged and ignored.
    Duplicate,
}
