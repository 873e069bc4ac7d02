//! The job lifecycle every job type shares: a row in Postgres says where the job is
//! (`queued → processing → completed | failed`), SQS carries its id, and a delivery either advances
//! it, leaves it to another delivery that holds its lease, or asks SQS to retry.

use serde::Serialize;

use crate::platform::db::DbError;
use crate::platform::idempotency::IdempotencyError;

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
    fn from(e: IdempotencyError) -> Self {
        Pending::Retry(e.into())
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
    fn only_a_retryable_failure_on_the_last_delivery_gives_up() {
        let retry = Pending::Retry(Retry("vendor down".into()));
        assert!(retry.gives_up(4, 5).is_none());
        assert_eq!(retry.gives_up(5, 5).unwrap().0, "vendor down");
        assert!(Pending::Held.gives_up(5, 5).is_none());
    }
}
