//! Calls: the numbers an operator assigns, the calls on them, and how vendor events move a call.
//! Vendors' events are first read into [`events::CallEvent`], so the lifecycle is written once.

pub mod events;
pub mod ingest;
pub mod minutes;
pub mod numbers;
pub mod signalwire;
pub mod telnyx;
pub mod webhooks;
pub mod worker;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::billing::Ledger;
use crate::domain::ids::UserId;
use crate::domain::owned::owned_row;
use crate::domain::paging::{Cursors, Keyed, Page, Position};
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbPool, Row, Type};
use crate::platform::queue::JobQueue;

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

/// The telephony vendor a number and its calls belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Telnyx,
    Signalwire,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Telnyx => "telnyx",
            Provider::Signalwire => "signalwire",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "telnyx" => Some(Provider::Telnyx),
            "signalwire" => Some(Provider::Signalwire),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Where a call is. It only moves forward (by [`CallStatus::rank`]); the terminal states are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in_progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no_answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> CallStatus {
        match s {
            "queued" => CallStatus::Queued,
            "ringing" => CallStatus::Ringing,
            "in_progress" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "no_answer" => CallStatus::NoAnswer,
            "canceled" => CallStatus::Canceled,
            _ => CallStatus::Failed,
        }
    }

    /// Position in the lifecycle; every terminal state shares the last rank.
    pub fn rank(self) -> i16 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Ringing => 1,
            CallStatus::InProgress => 2,
            _ => 3,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == 3
    }
}

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub id: Uuid,
    pub provider: Provider,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub duration_seconds: Option<i32>,
    pub hangup_cause: Option<String>,
    pub recording_ids: Vec<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const CALL_COLUMNS: &str = "c.id, c.provider, c.direction, c.from_e164, c.to_e164, c.status, \
     c.started_at, c.answered_at, c.ended_at, c.duration_seconds, c.hangup_cause, c.created_at, \
     ARRAY(SELECT r.id FROM recordings r WHERE r.call_id = c.id AND r.status = 'ready' \
           ORDER BY r.created_at, r.id) AS recording_ids";

impl Call {
    fn from_row(row: &Row) -> Call {
        Call {
            id: row.get(0),
            provider: Provider::parse(row.get(1)).unwrap_or(Provider::Telnyx),
            direction: if row.get::<_, &str>(2) == "outbound" {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            from: row.get(3),
            to: row.get(4),
            status: CallStatus::parse(row.get(5)),
            started_at: row.get(6),
            answered_at: row.get(7),
            ended_at: row.get(8),
            duration_seconds: row.get(9),
            hangup_cause: row.get(10),
            created_at: row.get(11),
            recording_ids: row.get(12),
        }
    }
}

impl Keyed for Call {
    fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// A call-worker message: a stored webhook event to apply, or an outbound call to place or end.
/// Messages carry ids only; the rows hold the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CallJob {
    Event(Uuid),
    Dial(Uuid),
    Hangup(Uuid),
}

/// `POST /api/calls`, as the client sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRequest {
    pub from: String,
    pub to: String,
}

/// True for an E.164 number: `+`, a non-zero country digit, 7 to 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The API side of calls: list, read, place and hang up.
#[derive(Debug, Clone)]
pub struct Calls {
    db: DbPool,
    cursors: Cursors,
    /// `None` in the read-only functions, which then build no SQS client.
    queue: Option<JobQueue>,
    ledger: Option<Ledger>,
}

impl Calls {
    pub fn new(db: DbPool, cursors: Cursors, queue: JobQueue, ledger: Ledger) -> Calls {
        Calls {
            db,
            cursors,
            queue: Some(queue),
            ledger: Some(ledger),
        }
    }

    pub fn read_only(db: DbPool, cursors: Cursors) -> Calls {
        Calls {
            db,
            cursors,
            queue: None,
            ledger: None,
        }
    }

    fn queue(&self) -> Result<&JobQueue, Error> {
        self.queue.as_ref().ok_or_else(|| {
            Error::Internal("this function was built read-only, without its queue".into())
        })
    }

    pub async fn list(
        &self,
        owner: UserId,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<Call>, Error> {
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls c WHERE c.owner_id = $1
               AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3))
             ORDER BY c.created_at DESC, c.id DESC LIMIT $4"
        );
        self.cursors
            .fetch_page(
                &self.db,
                &sql,
                &[(&owner, Type::INT4)],
                owner,
                cursor,
                limit,
                Call::from_row,
            )
            .await
    }

    pub async fn get(&self, owner: UserId, id: Uuid) -> Result<Call, Error> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls c WHERE c.id = $1 AND c.owner_id = $2");
        Ok(Call::from_row(&owned_row(&self.db, &sql, id, owner).await?))
    }

    /// Queues an outbound call from one of the caller's numbers; the call worker dials it.
    pub async fn place(&self, owner: UserId, request: OutboundRequest) -> Result<Call, Error> {
        let mut problems = Vec::new();
        if !is_e164(&request.from) {
            problems.push(FieldError::new(
                "from",
                "must be an E.164 number such as +15551234567",
            ));
        }
        if !is_e164(&request.to) {
            problems.push(FieldError::new(
                "to",
                "must be an E.164 number such as +15551234567",
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let queue = self.queue()?;
        let id = Uuid::now_v7();
        // One statement: the number must be the caller's, and the call takes its settings.
        let rows = db::fetch(
            &self.db,
            "INSERT INTO calls (id, owner_id, phone_number_id, provider, direction, from_e164, to_e164,
                                status, record, transcribe)
             SELECT $1, n.owner_id, n.id, n.provider, 'outbound', n.e164, $3, 'queued', n.record,
                    n.transcribe
               FROM phone_numbers n WHERE n.e164 = $2 AND n.owner_id = $4
             RETURNING id, provider",
            &[
                (&id, Type::UUID),
                (&request.from, Type::TEXT),
                (&request.to, Type::TEXT),
                (&owner, Type::INT4),
            ],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Err(Error::invalid("from", "is not one of your phone numbers"));
        };
        // The minutes are held before anything is dialled; refused, the call is not kept.
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| Error::Internal("built without the usage ledger".into()))?;
        let provider = Provider::parse(row.get(1)).unwrap_or(Provider::Telnyx);
        let subject = minutes::subject(provider, Direction::Outbound, id, None);
        if let Err(e) = minutes::hold(ledger, owner, provider, &subject).await {
            db::fetch(
                &self.db,
                "DELETE FROM calls WHERE id = $1 AND status = 'queued'",
                &[(&id, Type::UUID)],
            )
            .await?;
            return Err(e);
        }
        // If SQS is down the call stays queued and the reconciler dials it.
        if let Err(e) = queue.send(&CallJob::Dial(id)).await {
            tracing::warn!(call_id = %id, error = %e, "dial not enqueued; the reconciler will send it");
        }
        self.get(owner, id).await
    }

    /// Asks for the call to end; the worker cancels it before the dial or hangs it up at the vendor.
    pub async fn hang_up(&self, owner: UserId, id: Uuid) -> Result<Call, Error> {
        let queue = self.queue()?;
        let rows = db::fetch(
            &self.db,
            "UPDATE calls SET hangup_requested_at = COALESCE(hangup_requested_at, now()),
                              updated_at = now()
              WHERE id = $1 AND owner_id = $2 RETURNING status",
            &[(&id, Type::UUID), (&owner, Type::INT4)],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Err(Error::NotFound);
        };
        if CallStatus::parse(row.get(0)).is_terminal() {
            return Err(Error::Conflict("the call has already ended".into()));
        }
        queue
            .send(&CallJob::Hangup(id))
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        self.get(owner, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+15551234567"));
        assert!(is_e164("+442071838750"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+05551234567"));
        assert!(!is_e164("+1555123456789012"));
        assert!(!is_e164("+1555-123-4567"));
        assert!(!is_e164("+123"));
    }

    #[test]
    fn terminal_states_share_the_last_rank() {
        for s in [
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::NoAnswer,
            CallStatus::Failed,
            CallStatus::Canceled,
        ] {
            assert!(s.is_terminal());
            assert_eq!(CallStatus::parse(s.as_str()), s);
        }
        assert!(CallStatus::Ringing.rank() < CallStatus::InProgress.rank());
        assert!(!CallStatus::InProgress.is_terminal());
    }

    #[test]
    fn jobs_are_tagged_ids() {
        let id = Uuid::nil();
        let text = serde_json::to_string(&CallJob::Dial(id)).unwrap();
        assert_eq!(text, format!("{{\"dial\":\"{id}\"}}"));
        assert!(serde_json::from_str::<CallJob>("{\"dial\":\"x\"}").is_err());
    }
}
