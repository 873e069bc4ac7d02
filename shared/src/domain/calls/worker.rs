//! The call worker: applies stored webhook events to calls and sends the commands they call for,
//! places outbound calls and ends them. Every step is idempotent: a redelivered or replayed event
//! finds its commands already recorded in `call_commands` and sends nothing twice.

use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{self, Applied, CallEvent, CallState, EventKind};
use super::telnyx::{self as telnyx_events, Leg};
use super::webhooks::{StoredEvent, WebhookEvents};
use super::{CallJob, CallStatus, Direction, Provider, minutes, signalwire};
use crate::domain::Error;
use crate::domain::billing::Ledger;
use crate::platform::db::{self, DbPool, Type};
use crate::platform::queue::{Delivery, JobQueue};
use crate::vendors::signalwire::client::SignalWire;
use crate::vendors::telnyx::client::{CommandOptions, DialRequest, Telnyx, TelnyxError};

/// A recording-ingest message: the stored `recording.saved` event to take the file from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestJob {
    pub event: Uuid,
}

/// What one job did, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied { call: Uuid, commands: usize },
    Ignored(&'static str),
    Dialled(Uuid),
    Ended(Uuid),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct CallWorker {
    pub db: DbPool,
    pub events: WebhookEvents,
    pub ingest: JobQueue,
    pub telnyx: Option<Telnyx>,
    /// `speak` requires a voice (`TELNYX_SPEAK_VOICE`).
    pub speak_voice: String,
    pub signalwire: Option<SignalWire>,
    /// Public base URL for the callbacks of calls Parley places through SignalWire.
    pub callback_base: Option<String>,
    pub max_receive_count: u32,
    pub ledger: Ledger,
}

/// A transient failure: the delivery fails and SQS retries it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

impl From<Error> for Retry {
    fn from(e: Error) -> Self {
        Retry(e.to_string())
    }
}

impl CallWorker {
    pub async fn process(
        &self,
        job: &CallJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Outcome, Retry> {
        let last = delivery.receive_count >= self.max_receive_count;
        match job {
            CallJob::Event(id) => self.event(*id, last, deadline_ms).await,
            CallJob::Dial(id) => self.dial(*id, last, deadline_ms).await,
            CallJob::Hangup(id) => self.hang_up(*id, deadline_ms).await,
        }
    }

    async fn event(&self, id: Uuid, last: bool, deadline_ms: u64) -> Result<Outcome, Retry> {
        let Some(stored) = self.events.load(id).await? else {
            return Ok(Outcome::Ignored("no such event (purged?)"));
        };
        if stored.status == "processed" {
            return Ok(Outcome::Ignored("already processed"));
        }
        match self.apply(&stored, deadline_ms).await {
            Ok((outcome, owner)) => {
                self.events
                    .settle(id, owner, None)
                    .await
                    .map_err(Retry::from)?;
                Ok(outcome)
            }
            Err(Step::Unreadable(reason)) => {
                // Signed by the vendor but not a shape we know: retrying cannot help.
                self.events.settle(id, None, Some(&reason)).await?;
                Ok(Outcome::Failed(reason))
            }
            Err(Step::Retry(reason)) => {
                if last {
                    self.events.settle(id, None, Some(&reason)).await?;
                    return Ok(Outcome::Failed(reason));
                }
                // Best effort: the reason helps an operator; the retry does not depend on it.
                let _ = self.events.note_error(id, &reason).await;
                Err(Retry(reason))
            }
        }
    }

    async fn apply(
        &self,
        stored: &StoredEvent,
        deadline_ms: u64,
    ) -> Result<(Outcome, Option<crate::domain::UserId>), Step> {
        let event = match stored.vendor {
            Provider::Telnyx => telnyx_events::read(&stored.body)
                .map(|(_, event)| event)
                .map_err(|e| Step::Unreadable(e.to_string()))?,
            Provider::Signalwire => {
                signalwire::read(stored).map_err(|e| Step::Unreadable(e.to_string()))?
            }
        };
        let Some(event) = event else {
            return Ok((Outcome::Ignored("an event type Parley does not use"), None));
        };
        let applied = events::apply(&self.db, &event).await?;
        match applied {
            Applied::Unowned => {
                if event.provider == Provider::Telnyx && event.kind == EventKind::Initiated {
                    self.reject_unowned(&event, deadline_ms).await?;
                }
                Ok((Outcome::Ignored("a number nobody owns"), None))
            }
            Applied::Unknown => Ok((Outcome::Ignored("not a call Parley knows"), None)),
            Applied::Call { call, other_leg } => {
                if call.status.is_terminal() && !call.status_before.is_terminal() && !other_leg {
                    minutes::settle(&self.ledger, &self.db, call.id).await?;
                }
                let mut commands = 0;
                if let EventKind::RecordingSaved(_) = &event.kind {
                    self.ingest
                        .send(&IngestJob { event: stored.id })
                        .await
                        .map_err(|e| Step::Retry(e.to_string()))?;
                } else if event.provider == Provider::Telnyx && !other_leg {
                    commands = self.telnyx_commands(&call, &event, deadline_ms).await?;
                }
                Ok((
                    Outcome::Applied {
                        call: call.id,
                        commands,
                    },
                    Some(call.owner),
                ))
            }
        }
    }

    /// What Parley tells Telnyx after an event of the call's own leg.
    async fn telnyx_commands(
        &self,
        call: &CallState,
        event: &CallEvent,
        deadline_ms: u64,
    ) -> Result<usize, Step> {
        if call.status.is_terminal() {
            return Ok(0);
        }
        let Some(control_id) = event.call_control_id.as_deref() else {
            return Ok(0);
        };
        let telnyx = self.telnyx()?;
        let own = Leg::Own(call.id).client_state();
        let mut sent = 0;
        match event.kind {
            EventKind::Initiated if call.direction == Direction::Inbound => {
                let subject = minutes::subject(call.provider, call.direction, call.id, None);
                match minutes::hold(&self.ledger, call.owner, call.provider, &subject).await {
                    Ok(_) => {}
                    Err(e @ (Error::QuotaExceeded(_) | Error::BudgetExhausted(_))) => {
                        tracing::info!(call_id = %call.id, reason = %e, "inbound call rejected: no call minutes left");
                        return self
                            .once(
                                call.id,
                                "reject",
                                |options| async move {
                                    let action = crate::vendors::telnyx::client::Action::Reject {
                                cause: crate::vendors::telnyx::client::RejectCause::CallRejected,
                            };
                                    telnyx
                                        .command(control_id, &action, &options, deadline_ms)
                                        .await
                                },
                                None,
                            )
                            .await;
                    }
                    Err(e) => return Err(Step::Retry(e.to_string())),
                }
                sent += self
                    .once(call.id, "answer", |options| async move {
                        telnyx.answer(control_id, &options, deadline_ms).await
                    }, Some(own))
                    .await?;
            }
            EventKind::Answered => {
                let handling = call.handling.as_ref();
                let inbound = call.direction == Direction::Inbound;
                if let (true, Some(greeting)) =
                    (inbound, handling.and_then(|h| h.greeting.as_deref()))
                {
                    let voice = self.speak_voice.as_str();
                    sent += self
                        .once(
                            call.id,
                            "speak",
                            |options| async move {
                                telnyx
                                    .speak(control_id, greeting, voice, None, &options, deadline_ms)
                                    .await
                            },
                            None,
                        )
                        .await?;
                }
                if call.record {
                    let max = handling.map(|h| h.max_recording_seconds as u32);
                    sent += self
                        .once(
                            call.id,
                            "record_start",
                            |options| async move {
                                telnyx
                                    .record_start(control_id, max, &options, deadline_ms)
                                    .await
                            },
                            None,
                        )
                        .await?;
                }
                if let (true, Some(to)) = (inbound, handling.and_then(|h| h.forward_to.as_deref()))
                {
                    let transfer = Leg::Transfer(call.id).client_state();
                    sent += self
                        .once(
                            call.id,
                            "transfer",
                            |options| async move {
                                telnyx
                                    .transfer(control_id, to, None, &options, deadline_ms)
                                    .await
                            },
                            Some(transfer),
                        )
                        .await?;
                }
            }
            _ => {}
        }
        Ok(sent)
    }

    /// An inbound call to a number nobody owns is rejected, so the caller hears it end at once.
    async fn reject_unowned(&self, event: &CallEvent, deadline_ms: u64) -> Result<(), Step> {
        let (Some(telnyx), Some(control_id)) = (&self.telnyx, event.call_control_id.as_deref())
        else {
            return Ok(());
        };
        let action = crate::vendors::telnyx::client::Action::Reject {
            cause: crate::vendors::telnyx::client::RejectCause::CallRejected,
        };
        // No call row to key a command record on: Telnyx's own command_id dedupes repeats.
        let options = CommandOptions {
            command_id: Some(Uuid::new_v5(&Uuid::NAMESPACE_URL, control_id.as_bytes()).to_string()),
            client_state: None,
        };
        match telnyx
            .command(control_id, &action, &options, deadline_ms)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.call_has_ended() => Ok(()),
            Err(e) if e.is_transient() => Err(Step::Retry(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "could not reject a call to an unowned number");
                Ok(())
            }
        }
    }

    /// Sends a command at most once per call and action: the row in `call_commands` is written
    /// before the send and marked after, and its id is the `command_id` Telnyx dedupes on.
    async fn once<F, Fut>(
        &self,
        call: Uuid,
        action: &str,
        send: F,
        client_state: Option<crate::vendors::telnyx::wire::ClientState>,
    ) -> Result<usize, Step>
    where
        F: FnOnce(CommandOptions) -> Fut,
        Fut: Future<Output = Result<(), TelnyxError>>,
    {
        let command_id = Uuid::new_v5(&call, action.as_bytes());
        let rows = db::fetch(
            &self.db,
            "INSERT INTO call_commands (command_id, call_id, action) VALUES ($1, $2, $3)
             ON CONFLICT (command_id) DO UPDATE SET action = EXCLUDED.action
             RETURNING sent_at IS NOT NULL",
            &[
                (&command_id, Type::UUID),
                (&call, Type::UUID),
                (&action, Type::TEXT),
            ],
        )
        .await
        .map_err(Error::from)?;
        if rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(0);
        }
        let options = CommandOptions {
            command_id: Some(command_id.to_string()),
            client_state,
        };
        let error = match send(options).await {
            Ok(()) => None,
            // The call ended first: nothing left to do, and nothing to retry.
            Err(e) if e.call_has_ended() => Some("the call had ended".to_owned()),
            Err(e) if e.is_transient() => return Err(Step::Retry(e.to_string())),
            Err(e) => {
                tracing::warn!(call_id = %call, action, error = %e, "Telnyx refused a command");
                Some(e.to_string())
            }
        };
        db::fetch(
            &self.db,
            "UPDATE call_commands SET sent_at = now(), error = $2 WHERE command_id = $1",
            &[(&command_id, Type::UUID), (&error, Type::TEXT)],
        )
        .await
        .map_err(Error::from)?;
        Ok(usize::from(error.is_none()))
    }

    fn telnyx(&self) -> Result<&Telnyx, Step> {
        self.telnyx
            .as_ref()
            .ok_or_else(|| Step::Retry("Telnyx is not configured for this function".into()))
    }

    /// Places a queued outbound call. A checkpoint is written first: if a delivery dies between it
    /// and the vendor's answer, the call is failed rather than dialled twice.
    async fn dial(&self, id: Uuid, last: bool, deadline_ms: u64) -> Result<Outcome, Retry> {
        let rows = db::fetch(
            &self.db,
            "SELECT c.status, c.provider, c.from_e164, c.to_e164, c.dial_started_at IS NOT NULL,
                    c.hangup_requested_at IS NOT NULL, n.telnyx_connection_id
               FROM calls c LEFT JOIN phone_numbers n ON n.id = c.phone_number_id
              WHERE c.id = $1 AND c.direction = 'outbound'",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(Error::from)?;
        let Some(row) = rows.first() else {
            return Ok(Outcome::Ignored("no such outbound call"));
        };
        if CallStatus::parse(row.get(0)) != CallStatus::Queued {
            return Ok(Outcome::Ignored("already dialled"));
        }
        if row.get::<_, bool>(5) {
            self.finish(id, CallStatus::Canceled, None).await?;
            return Ok(Outcome::Ended(id));
        }
        if row.get::<_, bool>(4) {
            self.finish(id, CallStatus::Failed, Some("interrupted while dialling"))
                .await?;
            return Ok(Outcome::Failed("interrupted while dialling".into()));
        }
        let claimed = db::fetch(
            &self.db,
            "UPDATE calls SET dial_started_at = now(), updated_at = now()
              WHERE id = $1 AND dial_started_at IS NULL AND status = 'queued' RETURNING id",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(Error::from)?;
        if claimed.is_empty() {
            return Ok(Outcome::Ignored("another delivery is dialling"));
        }
        let provider = Provider::parse(row.get(1)).unwrap_or(Provider::Telnyx);
        let from: String = row.get(2);
        let to: String = row.get(3);
        let result = match provider {
            Provider::Telnyx => {
                self.dial_telnyx(id, row.get(6), &from, &to, deadline_ms)
                    .await
            }
            Provider::Signalwire => self.dial_signalwire(id, &from, &to, deadline_ms).await,
        };
        match result {
            Ok(()) => Ok(Outcome::Dialled(id)),
            Err(Dial::NotPlaced(reason)) if !last => {
                // Nothing reached the vendor: undo the checkpoint so the retry dials.
                db::fetch(
                    &self.db,
                    "UPDATE calls SET dial_started_at = NULL WHERE id = $1",
                    &[(&id, Type::UUID)],
                )
                .await
                .map_err(Error::from)?;
                Err(Retry(reason))
            }
            Err(Dial::NotPlaced(reason) | Dial::Refused(reason)) => {
                self.finish(id, CallStatus::Failed, Some(&reason)).await?;
                Ok(Outcome::Failed(reason))
            }
        }
    }

    async fn dial_telnyx(
        &self,
        id: Uuid,
        connection_id: Option<String>,
        from: &str,
        to: &str,
        deadline_ms: u64,
    ) -> Result<(), Dial> {
        let telnyx = self
            .telnyx
            .as_ref()
            .ok_or_else(|| Dial::Refused("Telnyx is not configured".into()))?;
        let connection_id = connection_id.ok_or_else(|| {
            Dial::Refused("the number has no Telnyx connection id (assign it with one)".into())
        })?;
        let request = DialRequest {
            connection_id,
            to: to.to_owned(),
            from: from.to_owned(),
            // On the dial itself: call.initiated can arrive before this worker's write returns.
            client_state: Some(Leg::Own(id).client_state()),
            command_id: Some(Uuid::new_v5(&id, b"dial").to_string()),
            webhook_url: None,
            timeout_secs: Some(30),
        };
        let dialed = telnyx.dial(&request, deadline_ms).await.map_err(|e| {
            if e.certainly_not_processed() && e.is_transient() {
                Dial::NotPlaced(e.to_string())
            } else {
                Dial::Refused(e.to_string())
            }
        })?;
        db::fetch(
            &self.db,
            "UPDATE calls SET call_control_id = COALESCE(call_control_id, $2),
                              call_session_id = COALESCE(call_session_id, $3), updated_at = now()
              WHERE id = $1",
            &[
                (&id, Type::UUID),
                (&dialed.call_control_id, Type::TEXT),
                (&dialed.call_session_id, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| Dial::Refused(format!("dialled, but not recorded: {e}")))?;
        Ok(())
    }

    async fn dial_signalwire(
        &self,
        id: Uuid,
        from: &str,
        to: &str,
        deadline_ms: u64,
    ) -> Result<(), Dial> {
        let signalwire = self
            .signalwire
            .as_ref()
            .ok_or_else(|| Dial::Refused("SignalWire is not configured".into()))?;
        let base = self
            .callback_base
            .as_deref()
            .ok_or_else(|| Dial::Refused("no public URL for SignalWire's callbacks".into()))?;
        let sid = signalwire::place(signalwire, base, id, from, to, deadline_ms)
            .await
            .map_err(|e| {
                if e.certainly_not_processed() && e.is_transient() {
                    Dial::NotPlaced(e.to_string())
                } else {
                    Dial::Refused(e.to_string())
                }
            })?;
        db::fetch(
            &self.db,
            "UPDATE calls SET call_sid = COALESCE(call_sid, $2), updated_at = now() WHERE id = $1",
            &[(&id, Type::UUID), (&sid, Type::TEXT)],
        )
        .await
        .map_err(|e| Dial::Refused(format!("dialled, but not recorded: {e}")))?;
        Ok(())
    }

    /// Ends a call: cancels it before the dial, or hangs it up at the vendor.
    async fn hang_up(&self, id: Uuid, deadline_ms: u64) -> Result<Outcome, Retry> {
        let rows = db::fetch(
            &self.db,
            "SELECT status, provider, call_control_id, call_sid, dial_started_at IS NOT NULL
               FROM calls WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .map_err(Error::from)?;
        let Some(row) = rows.first() else {
            return Ok(Outcome::Ignored("no such call"));
        };
        let status = CallStatus::parse(row.get(0));
        if status.is_terminal() {
            return Ok(Outcome::Ignored("already ended"));
        }
        let control_id: Option<String> = row.get(2);
        let sid: Option<String> = row.get(3);
        if control_id.is_none() && sid.is_none() {
            if row.get::<_, bool>(4) {
                // Being dialled right now: retry once the vendor's id is recorded.
                return Err(Retry("the call is being dialled; hang up after".into()));
            }
            self.finish(id, CallStatus::Canceled, None).await?;
            return Ok(Outcome::Ended(id));
        }
        match Provider::parse(row.get(1)).unwrap_or(Provider::Telnyx) {
            Provider::Telnyx => {
                let telnyx = self
                    .telnyx
                    .as_ref()
                    .ok_or_else(|| Retry("Telnyx is not configured".into()))?;
                let options = CommandOptions {
                    command_id: Some(Uuid::new_v5(&id, b"hangup").to_string()),
                    client_state: None,
                };
                let control_id = control_id.unwrap_or_default();
                telnyx
                    .hangup(&control_id, &options, deadline_ms)
                    .await
                    .map_err(|e| Retry(e.to_string()))?;
            }
            Provider::Signalwire => {
                let signalwire = self
                    .signalwire
                    .as_ref()
                    .ok_or_else(|| Retry("SignalWire is not configured".into()))?;
                signalwire::hang_up(signalwire, &sid.unwrap_or_default(), status, deadline_ms)
                    .await
                    .map_err(|e| Retry(e.to_string()))?;
            }
        }
        // The vendor's hangup event sets the final status and times.
        Ok(Outcome::Ended(id))
    }

    /// Ends a call Parley never reached the vendor with.
    async fn finish(&self, id: Uuid, status: CallStatus, error: Option<&str>) -> Result<(), Retry> {
        db::fetch(
            &self.db,
            "UPDATE calls SET status = $2, error = $3, ended_at = COALESCE(ended_at, now()),
                              updated_at = now()
              WHERE id = $1 AND status IN ('queued', 'ringing', 'in_progress')",
            &[
                (&id, Type::UUID),
                (&status.as_str(), Type::TEXT),
                (&error, Type::TEXT),
            ],
        )
        .await
        .map_err(Error::from)?;
        Ok(())
    }
}

/// Why applying an event stopped.
enum Step {
    Unreadable(String),
    Retry(String),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Step::Retry(e.to_string())
    }
}

enum Dial {
    /// Certainly not placed: safe to try again.
    NotPlaced(String),
    /// Refused, or unknown whether placed: never dialled again.
    Refused(String),
}
