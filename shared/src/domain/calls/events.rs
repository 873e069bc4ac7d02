//! The call lifecycle, written once for every vendor. Events arrive at least once, in any order and
//! sometimes together: each one only adds facts (a time is set once, the status only moves forward
//! by rank and a terminal status is final), so applying them in any order gives the same call.

use time::OffsetDateTime;
use uuid::Uuid;

use super::numbers::Handling;
use super::{CallStatus, Direction, Provider};
use crate::domain::Error;
use crate::domain::ids::UserId;
use crate::platform::db::{self, DbPool, Row, Type};

/// A vendor's event, read into Parley's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    pub provider: Provider,
    pub occurred_at: OffsetDateTime,
    /// Telnyx: the leg's `call_control_id`.
    pub call_control_id: Option<String>,
    /// Telnyx: the session every leg of one call shares.
    pub call_session_id: Option<String>,
    /// SignalWire: `CallSid`.
    pub call_sid: Option<String>,
    /// Our call id, carried back by Telnyx's `client_state` or SignalWire's callback URL.
    pub call_id: Option<Uuid>,
    /// A leg Parley created by transferring the call: it never moves the call's own status.
    pub transfer_leg: bool,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Initiated,
    Ringing,
    Answered,
    Ended {
        status: CallStatus,
        cause: Option<String>,
        source: Option<String>,
        duration_seconds: Option<i32>,
    },
    RecordingSaved(RecordingRef),
    /// Read and acknowledged, but it changes no call (speak ended, DTMF, ...).
    Other,
}

/// A finished recording at the vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRef {
    pub recording_id: String,
    /// Where to download it now (Telnyx's expire after 10 minutes).
    pub url: Option<String>,
    pub duration_seconds: Option<f64>,
}

impl EventKind {
    /// The status this event says the call reached, if any.
    pub fn status(&self) -> Option<CallStatus> {
        match self {
            EventKind::Initiated | EventKind::Ringing => Some(CallStatus::Ringing),
            EventKind::Answered => Some(CallStatus::InProgress),
            EventKind::Ended { status, .. } => Some(*status),
            EventKind::RecordingSaved(_) | EventKind::Other => None,
        }
    }
}

/// A call after an event was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CallState {
    pub id: Uuid,
    pub owner: UserId,
    pub provider: Provider,
    pub direction: Direction,
    pub status: CallStatus,
    pub status_before: CallStatus,
    pub call_control_id: Option<String>,
    pub call_sid: Option<String>,
    pub record: bool,
    pub transcribe: bool,
    pub handling: Option<Handling>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The event was applied to this call (a duplicate changes nothing but still lands here).
    Call {
        call: CallState,
        /// The event came from a leg that is not the call's own (a transfer's far end).
        other_leg: bool,
    },
    /// An inbound call to a number nobody owns: rejected, never stored.
    Unowned,
    /// An event for a call Parley did not start and cannot place (no owned number, no call id).
    Unknown,
}

const STATE_COLUMNS: &str = "c.id, c.owner_id, c.provider, c.direction, c.status, \
     c.call_control_id, c.call_sid, c.record, c.transcribe";

/// Applies `event`: finds (or, for an inbound call to an owned number, creates) the call and adds
/// the event's facts to it in one locked `UPDATE`, so concurrent events for one call serialize.
pub async fn apply(pool: &DbPool, event: &CallEvent) -> Result<Applied, Error> {
    let client = db::client(pool).await?;
    let mut found = find(&client, event).await?;
    if found.is_none() && event.direction == Direction::Inbound && !event.transfer_leg {
        if !create_inbound(&client, event).await? {
            return Ok(Applied::Unowned);
        }
        found = find(&client, event).await?;
    }
    let Some((id, stored_control_id)) = found else {
        return Ok(Applied::Unknown);
    };
    let other_leg = event.transfer_leg
        || (event.provider == Provider::Telnyx
            && matches!((&stored_control_id, &event.call_control_id),
                        (Some(ours), Some(theirs)) if ours != theirs));
    let facts = if other_leg {
        Facts::default()
    } else {
        Facts::of(event)
    };
    let rank = facts.status.map(CallStatus::rank);
    let status_name = facts.status.map(CallStatus::as_str);
    // Vendor ids are learnt once, from the call's own leg only.
    let (control_id, session_id, sid) = if other_leg {
        (None, None, None)
    } else {
        (
            event.call_control_id.clone(),
            event.call_session_id.clone(),
            event.call_sid.clone(),
        )
    };
    let moves = "$2::int2 IS NOT NULL AND o.before IN ('queued', 'ringing', 'in_progress')
                 AND $2 > (CASE o.before WHEN 'queued' THEN 0 WHEN 'ringing' THEN 1 ELSE 2 END)";
    let updated = db::query(
        &client,
        &format!(
            "UPDATE calls c SET
               status = CASE WHEN {moves} THEN $3 ELSE c.status END,
               status_at = CASE WHEN {moves} THEN $4 ELSE c.status_at END,
               started_at = COALESCE(c.started_at, $5),
               answered_at = COALESCE(c.answered_at, $6),
               ended_at = COALESCE(c.ended_at, $7),
               duration_seconds = COALESCE(c.duration_seconds, $8::int4,
                   CASE WHEN COALESCE(c.ended_at, $7) IS NOT NULL
                         AND COALESCE(c.answered_at, $6) IS NOT NULL
                        THEN GREATEST(0, EXTRACT(EPOCH FROM COALESCE(c.ended_at, $7)
                                                          - COALESCE(c.answered_at, $6)))::int4
                   END),
               hangup_cause = COALESCE(c.hangup_cause, $9),
               hangup_source = COALESCE(c.hangup_source, $10),
               call_control_id = COALESCE(c.call_control_id, $11),
               call_session_id = COALESCE(c.call_session_id, $12),
               call_sid = COALESCE(c.call_sid, $13),
               updated_at = now()
             FROM (SELECT l.id, l.status AS before, l.phone_number_id
                     FROM calls l WHERE l.id = $1 FOR UPDATE OF l) o
             LEFT JOIN phone_numbers n ON n.id = o.phone_number_id
             WHERE c.id = o.id
             RETURNING {STATE_COLUMNS}, o.before, {}",
            Handling::COLUMNS
        ),
        &[
            (&id, Type::UUID),
            (&rank, Type::INT2),
            (&status_name, Type::TEXT),
            (&event.occurred_at, Type::TIMESTAMPTZ),
            (&facts.started, Type::TIMESTAMPTZ),
            (&facts.answered, Type::TIMESTAMPTZ),
            (&facts.ended, Type::TIMESTAMPTZ),
            (&facts.duration, Type::INT4),
            (&facts.cause, Type::TEXT),
            (&facts.source, Type::TEXT),
            (&control_id, Type::TEXT),
            (&session_id, Type::TEXT),
            (&sid, Type::TEXT),
        ],
    )
    .await
    .map_err(db::DbError::from)?;
    let row = updated
        .first()
        .ok_or_else(|| Error::Internal("the call vanished while locked".into()))?;
    let mut call = state_from_row(row);
    call.status_before = CallStatus::parse(row.get(9));
    call.handling = row
        .get::<_, Option<Uuid>>(10)
        .is_some()
        .then(|| Handling::from_row(row, 10));
    Ok(Applied::Call { call, other_leg })
}

/// What one event says happened, as columns.
#[derive(Debug, Default)]
struct Facts {
    status: Option<CallStatus>,
    started: Option<OffsetDateTime>,
    answered: Option<OffsetDateTime>,
    ended: Option<OffsetDateTime>,
    duration: Option<i32>,
    cause: Option<String>,
    source: Option<String>,
}

impl Facts {
    fn of(event: &CallEvent) -> Facts {
        let status = event.kind.status();
        match &event.kind {
            EventKind::Initiated | EventKind::Ringing => Facts {
                status,
                started: Some(event.occurred_at),
                ..Facts::default()
            },
            EventKind::Answered => Facts {
                status,
                answered: Some(event.occurred_at),
                ..Facts::default()
            },
            EventKind::Ended {
                cause,
                source,
                duration_seconds,
                ..
            } => Facts {
                status,
                ended: Some(event.occurred_at),
                duration: *duration_seconds,
                cause: cause.clone(),
                source: source.clone(),
                ..Facts::default()
            },
            EventKind::RecordingSaved(_) | EventKind::Other => Facts::default(),
        }
    }
}

fn state_from_row(row: &Row) -> CallState {
    let status = CallStatus::parse(row.get(4));
    CallState {
        id: row.get(0),
        owner: row.get(1),
        provider: Provider::parse(row.get(2)).unwrap_or(Provider::Telnyx),
        direction: if row.get::<_, &str>(3) == "outbound" {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        status,
        status_before: status,
        call_control_id: row.get(5),
        call_sid: row.get(6),
        record: row.get(7),
        transcribe: row.get(8),
        handling: None,
    }
}

/// The call an event belongs to (id and stored control id): by our id when the vendor carried it
/// back, else by the vendor's ids.
async fn find(
    client: &db::Client,
    event: &CallEvent,
) -> Result<Option<(Uuid, Option<String>)>, Error> {
    let provider = event.provider.as_str();
    let rows = if let Some(id) = event.call_id {
        db::query(
            client,
            "SELECT id, call_control_id FROM calls WHERE id = $1 AND provider = $2",
            &[(&id, Type::UUID), (&provider, Type::TEXT)],
        )
        .await
    } else {
        match event.provider {
            Provider::Telnyx => {
                db::query(
                    client,
                    "SELECT id, call_control_id FROM calls
                      WHERE provider = 'telnyx' AND (call_session_id = $1 OR call_control_id = $2)
                      ORDER BY created_at LIMIT 1",
                    &[
                        (&event.call_session_id, Type::TEXT),
                        (&event.call_control_id, Type::TEXT),
                    ],
                )
                .await
            }
            Provider::Signalwire => {
                db::query(
                    client,
                    "SELECT id, call_control_id FROM calls
                      WHERE provider = 'signalwire' AND call_sid = $1",
                    &[(&event.call_sid, Type::TEXT)],
                )
                .await
            }
        }
    }
    .map_err(db::DbError::from)?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1))))
}

/// Creates the call for an inbound event to an owned number, with the number's settings. False
/// when nobody owns the number. A concurrent event creating the same call is not an error.
async fn create_inbound(client: &db::Client, event: &CallEvent) -> Result<bool, Error> {
    let id = Uuid::now_v7();
    let provider = event.provider.as_str();
    let rows = db::query(
        client,
        "WITH number AS (
             SELECT n.id, n.owner_id, n.record, n.transcribe FROM phone_numbers n
              WHERE n.e164 = $3 AND n.provider = $2 AND n.owner_id IS NOT NULL),
         created AS (
             INSERT INTO calls (id, owner_id, phone_number_id, provider, direction, from_e164,
                                to_e164, status, record, transcribe, call_control_id,
                                call_session_id, call_sid)
             SELECT $1, number.owner_id, number.id, $2, 'inbound', $4, $3, 'ringing',
                    number.record, number.transcribe, $5, $6, $7 FROM number
             ON CONFLICT DO NOTHING RETURNING id)
         SELECT (SELECT count(*) FROM number) AS owned",
        &[
            (&id, Type::UUID),
            (&provider, Type::TEXT),
            (&event.to, Type::TEXT),
            (&event.from, Type::TEXT),
            (&event.call_control_id, Type::TEXT),
            (&event.call_session_id, Type::TEXT),
            (&event.call_sid, Type::TEXT),
        ],
    )
    .await
    .map_err(db::DbError::from)?;
    Ok(rows.first().is_some_and(|r| r.get::<_, i64>(0) > 0))
}

/// The owner of an event's number, for an inbound event that has no call yet.
pub async fn number_owner(
    pool: &DbPool,
    provider: Provider,
    e164: &str,
) -> Result<Option<UserId>, Error> {
    let rows = db::fetch(
        pool,
        "SELECT owner_id FROM phone_numbers WHERE e164 = $1 AND provider = $2 AND owner_id IS NOT NULL",
        &[(&e164, Type::TEXT), (&provider.as_str(), Type::TEXT)],
    )
    .await?;
    Ok(rows.first().map(|r| r.get(0)))
}
