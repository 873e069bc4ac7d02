//! The job lifecycle every job type shares: a row in Postgres says where the job is
//! (`queued → processing → completed | failed`), SQS carries its id, and a delivery either advances
//! it, leaves it to another delivery that holds its lease, or asks SQS to retry.

use std::future::Future;

use serde::Serialize;
use uuid::Uuid;

use crate::platform::db::{self, DbError, DbPool, Type};
use crate::platform::idempotency::IdempotencyError;
use crate::platform::queue::Delivery;

/// Where a job is. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl Status {
    /// Reads the stored name; an unknown name reads as `Failed` so a job never looks live by mistake.
    pub fn parse(s: &str) -> Status {
        match s {
            "queued" => Status::Queued,
            "processing" => Status::Processing,
            "completed" => Status::Completed,
            _ => Status::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }
}

/// Why a job failed, as its owner sees it: one of a fixed set, each with a fixed message. What the
/// vendor said and any internal cause go to the log line written when the job fails, never here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The vendor refused the job for a reason retrying will not fix.
    VendorRejected,
    /// The vendor (or a service the job needs) stayed unavailable through every retry.
    VendorUnavailable,
    /// The transcription service could not read the audio.
    AudioUnreadable,
    /// The job was interrupted after the paid request left; it is not repeated.
    Interrupted,
    /// The recording was deleted before it was transcribed.
    RecordingDeleted,
    /// The result was made but could not be stored.
    StorageFailed,
    /// The input has nothing the job could work on (a transcript without text, a language pair
    /// no provider supports).
    UnsupportedInput,
    /// The owner's plan (or the operator's daily vendor budget) could not cover the job when it ran.
    QuotaExceeded,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::VendorRejected,
        ErrorCode::VendorUnavailable,
        ErrorCode::AudioUnreadable,
        ErrorCode::Interrupted,
        ErrorCode::RecordingDeleted,
        ErrorCode::StorageFailed,
        ErrorCode::UnsupportedInput,
        ErrorCode::QuotaExceeded,
        ErrorCode::Internal,
    ];

    /// The name stored in a job table's `error` column and sent as `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::VendorRejected => "vendor_rejected",
            ErrorCode::VendorUnavailable => "vendor_unavailable",
            ErrorCode::AudioUnreadable => "audio_unreadable",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::RecordingDeleted => "recording_deleted",
            ErrorCode::StorageFailed => "storage_failed",
            ErrorCode::UnsupportedInput => "unsupported_input",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Internal => "internal",
        }
    }

    /// Reads a stored code; anything else (there should be nothing else) is `internal`.
    pub fn parse(stored: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == stored)
            .unwrap_or(ErrorCode::Internal)
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::VendorRejected => "the vendor refused this job; retrying it will not help",
            ErrorCode::VendorUnavailable => {
                "the vendor stayed unavailable through every retry; request the job again later"
            }
            ErrorCode::AudioUnreadable => "the audio could not be read",
            ErrorCode::Interrupted => {
                "the job was interrupted after it was sent and is not repeated, so it is never paid twice; request it again"
            }
            ErrorCode::RecordingDeleted => "the recording was deleted before it was processed",
            ErrorCode::StorageFailed => "the result could not be stored; request the job again",
            ErrorCode::UnsupportedInput => {
                "the input has nothing this job can work on (no text, or a language pair no provider supports)"
            }
            ErrorCode::QuotaExceeded => {
                "the plan's allowance (or today's vendor budget) could not cover this job; see GET /api/billing"
            }
            ErrorCode::Internal => "an internal error stopped the job",
        }
    }
}

/// A failed job's public `error`: `{"code": …, "message": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PublicError {
    pub code: ErrorCode,
    pub message: &'static str,
}

impl PublicError {
    /// From a job table's `error` column.
    pub fn from_stored(stored: Option<&str>) -> Option<PublicError> {
        stored.map(|s| {
            let code = ErrorCode::parse(s);
            PublicError {
                code,
                message: code.message(),
            }
        })
    }
}

/// A job type's table, which every job table shapes the same way: `id`, `status`, `error`,
/// `message_sent_at` (the outbox mark), `created_at`, `updated_at`, and a lease column stamped
/// just before the paid vendor call.
#[derive(Debug, Clone, Copy)]
pub struct JobTable {
    pub name: &'static str,
    /// The outbox mark, `UPDATE <name> SET message_sent_at = now(), updated_at = now() WHERE id = $1`
    /// (spelled out, because the queue keeps it past the call).
    pub mark_sent: &'static str,
    /// Set before the paid call; a job with it set is never sent again by the reconciler.
    pub lease_column: &'static str,
    /// Extra `column = NULL` assignments made when the job fails (e.g. text no longer needed).
    pub cleared_on_failure: &'static str,
    /// Whether a job left `processing` for an hour is sent again (its messages are gone).
    pub resend_stale_processing: bool,
}

/// A queued job whose message has not left after this long is sent by the reconciler.
const UNSENT_AFTER_SECS: f64 = 60.0;
/// A queued job idle this long lost its message (or the DLQ took it): sending again is safe.
const STALE_SECS: f64 = 3600.0;

impl JobTable {
    /// Marks a live job `failed` with `code`, the only part its owner sees; `detail` (the vendor's
    /// message, an internal cause) goes to this log line only.
    pub async fn fail(
        &self,
        pool: &DbPool,
        id: Uuid,
        code: ErrorCode,
        detail: &str,
    ) -> Result<(), Retry> {
        tracing::warn!(job = self.name, %id, code = code.as_str(), detail, "job failed");
        let reason = code.as_str();
        db::fetch(
            pool,
            &format!(
                "UPDATE {} SET status = 'failed', error = $2{}, updated_at = now()
                     WHERE id = $1 AND status IN ('queued', 'processing')",
                self.name, self.cleared_on_failure
            ),
            &[(&id, Type::UUID), (&reason, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// Jobs whose message never went out (or was lost), oldest first: the reconciler sends them.
    pub async fn unsent(&self, pool: &DbPool, batch: i64) -> Result<Vec<Uuid>, DbError> {
        let client = db::client(pool).await?;
        // Lambda runs at most 15 minutes, so a job idle for an hour outlived every delivery.
        let stale_processing = if self.resend_stale_processing {
            "OR (status = 'processing' AND updated_at < now() - make_interval(secs => $2))"
        } else {
            ""
        };
        let rows = db::query(&client,
                &format!(
                    "SELECT id FROM {name}
                     WHERE (status = 'queued' AND {lease} IS NULL
                            AND ((message_sent_at IS NULL AND created_at < now() - make_interval(secs => $1))
                                 OR updated_at < now() - make_interval(secs => $2)))
                        {stale_processing}
                     ORDER BY updated_at LIMIT $3",
                    name = self.name,
                    lease = self.lease_column,
                ),
                &[
                    (&UNSENT_AFTER_SECS, Type::FLOAT8),
                    (&STALE_SECS, Type::FLOAT8),
                    (&batch, Type::INT8),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// A delivery that should be retried (the message is reported as a batch item failure). Its text
/// may become the job's public `error`, so internal causes are logged where they happen and
/// summarised here.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

impl From<DbError> for Retry {
    fn from(e: DbError) -> Self {
        tracing::warn!(error = %e, "database error in a job");
        Retry(match e {
            DbError::Unavailable(_) => "the database was unavailable".to_owned(),
            DbError::Query(_) => "a database query failed".to_owned(),
        })
    }
}

impl From<IdempotencyError> for Retry {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Store(e) => e.into(),
            other => Retry(other.to_string()),
        }
    }
}

/// Why a delivery left its job unfinished.
#[derive(Debug)]
pub enum Pending {
    /// Another delivery holds the job's lease and will finish it: never a reason to fail the job,
    /// not even on the last delivery.
    Held,
    /// Something failed that a later delivery may get past.
    Retry(Retry),
}

impl Pending {
    /// On the queue's last delivery a retryable failure becomes the job's failure; a held lease
    /// never does.
    pub fn gives_up(&self, receive_count: u32, max_receive_count: u32) -> Option<&Retry> {
        match self {
            Pending::Retry(retry) if receive_count >= max_receive_count => Some(retry),
            _ => None,
        }
    }
}

/// Ends one delivery of a job the same way for every job type: a held lease asks SQS for another
/// delivery and leaves the job alone (the holder finishes it); a failure on the queue's last
/// delivery marks the job failed through `fail`, then lets the message go on to the DLQ.
pub async fn settle<A, F, Fut>(
    outcome: Result<A, Pending>,
    delivery: &Delivery,
    max_receive_count: u32,
    held: &str,
    fail: F,
) -> Result<A, Retry>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), Retry>>,
{
    match outcome {
        Ok(advance) => Ok(advance),
        Err(Pending::Held) => Err(Retry(held.to_owned())),
        Err(pending) => {
            let Some(Retry(reason)) = pending.gives_up(delivery.receive_count, max_receive_count)
            else {
                let Pending::Retry(retry) = pending else {
                    unreachable!("a held lease was answered above")
                };
                return Err(retry);
            };
            let reason = format!(
                "gave up after {} attempts: {reason}",
                delivery.receive_count
            );
            if let Err(e) = fail(reason.clone()).await {
                tracing::error!(message_id = ?delivery.message_id, error = %e, "could not mark the job failed");
            }
            Err(Retry(reason))
        }
    }
}

impl From<Retry> for Pending {
    fn from(r: Retry) -> Self {
        Pending::Retry(r)
    }
}

impl From<DbError> for Pending {
    fn from(e: DbError) -> Self {
        Pending::Retry(e.into())
    }
}

impl From<IdempotencyError> for Pending {
    /// A lease another delivery holds is `Held` wherever it is met, so no path can turn it into a
    /// failure on the last delivery.
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::AlreadyInProgress => Pending::Held,
            other => Pending::Retry(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_names_read_as_failed() {
        for status in [
            Status::Queued,
            Status::Processing,
            Status::Completed,
            Status::Failed,
        ] {
            assert_eq!(Status::parse(status.as_str()), status);
        }
        assert_eq!(Status::parse("exploded"), Status::Failed);
        assert!(Status::Completed.is_final() && !Status::Processing.is_final());
    }

    #[test]
    fn error_codes_round_trip_and_anything_else_reads_as_internal() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            let json = serde_json::to_value(PublicError::from_stored(Some(code.as_str()))).unwrap();
            assert_eq!(json["code"], code.as_str());
            assert_eq!(json["message"], code.message());
        }
        let legacy = PublicError::from_stored(Some("AssemblyAI refused the job (400): key sk_123"));
        assert_eq!(legacy.unwrap().code, ErrorCode::Internal);
        assert!(PublicError::from_stored(None).is_none());
    }

    #[test]
    fn only_a_retryable_failure_on_the_last_delivery_gives_up() {
        let retry = Pending::Retry(Retry("vendor down".into()));
        assert!(retry.gives_up(4, 5).is_none());
        assert_eq!(retry.gives_up(5, 5).unwrap().0, "vendor down");
        assert!(Pending::Held.gives_up(5, 5).is_none());
        let held = Pending::from(IdempotencyError::AlreadyInProgress);
        assert!(matches!(held, Pending::Held));
        assert!(held.gives_up(5, 5).is_none());
    }
}
