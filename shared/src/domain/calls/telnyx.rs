//! Telnyx Call Control events in Parley's terms, and the `client_state` Parley puts on every call
//! it answers, dials or transfers so later events (even of another leg) find their call.

use uuid::Uuid;

use super::events::{CallEvent, EventKind, RecordingRef};
use super::{CallStatus, Direction, Provider};
use crate::vendors::telnyx::wire::{
    self, ClientState, Envelope, HangupCause, TelnyxEvent, WireError,
};

/// What Parley's `client_state` says about a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The call's own leg (answered or dialled by Parley).
    Own(Uuid),
    /// The far end Parley created by `transfer`.
    Transfer(Uuid),
}

impl Leg {
    pub fn client_state(self) -> ClientState {
        let text = match self {
            Leg::Own(id) => format!("call:{id}"),
            Leg::Transfer(id) => format!("transfer:{id}"),
        };
        ClientState::encode(text.as_bytes())
    }

    /// `None` for a state Parley did not write (another application's, or none).
    pub fn read(state: &ClientState) -> Option<Leg> {
        let text = state.decode_utf8()?;
        let (kind, id) = text.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "call" => Some(Leg::Own(id)),
            "transfer" => Some(Leg::Transfer(id)),
            _ => None,
        }
    }
}

/// Telnyx's `hangup_cause` as a call status (docs/telephony.md has the table).
pub fn status_of(cause: &HangupCause) -> CallStatus {
    match cause {
        HangupCause::NormalClearing | HangupCause::TimeLimit => CallStatus::Completed,
        HangupCause::UserBusy | HangupCause::CallRejected => CallStatus::Busy,
        HangupCause::Timeout | HangupCause::NoAnswer => CallStatus::NoAnswer,
        HangupCause::OriginatorCancel => CallStatus::Canceled,
        HangupCause::NotFound | HangupCause::Unspecified | HangupCause::Other(_) => {
            CallStatus::Failed
        }
    }
}

/// A verified body read into the envelope (for the store: id, type, time) and, for the events that
/// concern a call, the call event.
pub fn read(body: &[u8]) -> Result<(Envelope, Option<CallEvent>), WireError> {
    let envelope = wire::parse_webhook(body)?;
    let event = call_event(&envelope);
    Ok((envelope, event))
}

fn call_event(envelope: &Envelope) -> Option<CallEvent> {
    let leg = envelope.client_state().and_then(Leg::read);
    let (call_id, transfer_leg) = match leg {
        Some(Leg::Own(id)) => (Some(id), false),
        Some(Leg::Transfer(id)) => (Some(id), true),
        None => (None, false),
    };
    let base = |ids: &wire::CallIds, from: Option<&str>, to: Option<&str>, kind| CallEvent {
        provider: Provider::Telnyx,
        occurred_at: envelope.occurred_at,
        call_control_id: Some(ids.call_control_id.clone()),
        call_session_id: Some(ids.call_session_id.clone()),
        call_sid: None,
        call_id,
        transfer_leg,
        // Only calls Parley dials carry its state before it answers; the rest are inbound.
        direction: Direction::Inbound,
        from: from.unwrap_or_default().to_owned(),
        to: to.unwrap_or_default().to_owned(),
        kind,
    };
    match &envelope.event {
        TelnyxEvent::Initiated(e) => {
            let mut event = base(&e.ids, Some(&e.from), Some(&e.to), EventKind::Initiated);
            if e.direction == wire::Direction::Outgoing {
                event.direction = Direction::Outbound;
            }
            Some(event)
        }
        TelnyxEvent::Answered(e) => Some(base(
            &e.ids,
            e.from.as_deref(),
            e.to.as_deref(),
            EventKind::Answered,
        )),
        TelnyxEvent::Hangup(e) => Some(base(
            &e.ids,
            e.from.as_deref(),
            e.to.as_deref(),
            EventKind::Ended {
                status: status_of(&e.hangup_cause),
                cause: Some(e.hangup_cause.as_str().to_owned()),
                source: Some(e.hangup_source.as_str().to_owned()),
                duration_seconds: None,
            },
        )),
        TelnyxEvent::RecordingSaved(e) => {
            // Without Telnyx's recording id, the leg and start time identify the recording.
            let recording_id = e.recording_id.clone().unwrap_or_else(|| {
                format!(
                    "{}:{}",
                    e.call_leg_id,
                    e.recording_started_at
                        .map(|t| t.unix_timestamp().to_string())
                        .unwrap_or_default()
                )
            });
            let url = e
                .recording_urls
                .wav
                .clone()
                .or_else(|| e.recording_urls.mp3.clone())
                .or_else(|| e.public_recording_urls.wav.clone())
                .or_else(|| e.public_recording_urls.mp3.clone());
            Some(CallEvent {
                provider: Provider::Telnyx,
                occurred_at: envelope.occurred_at,
                call_control_id: e.call_control_id.clone(),
                call_session_id: Some(e.call_session_id.clone()),
                call_sid: None,
                call_id,
                transfer_leg,
                direction: Direction::Inbound,
                from: String::new(),
                to: String::new(),
                kind: EventKind::RecordingSaved(RecordingRef {
                    recording_id,
                    url,
                    duration_seconds: e.duration_seconds(),
                }),
            })
        }
        TelnyxEvent::SpeakEnded(e) => Some(base(&e.ids, None, None, EventKind::Other)),
        TelnyxEvent::Ignored => None,
    }
}

/// Telnyx's Recordings API id, when the event carried one (refetching expired URLs needs it).
pub fn recording_api_id(envelope: &Envelope) -> Option<&str> {
    match &envelope.event {
        TelnyxEvent::RecordingSaved(e) => e.recording_id.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_state_round_trips_and_ignores_foreign_states() {
        let id = Uuid::now_v7();
        assert_eq!(Leg::read(&Leg::Own(id).client_state()), Some(Leg::Own(id)));
        assert_eq!(
            Leg::read(&Leg::Transfer(id).client_state()),
            Some(Leg::Transfer(id))
        );
        assert_eq!(Leg::read(&ClientState::encode(b"someone else's")), None);
        assert_eq!(Leg::read(&ClientState::encode(b"call:not-a-uuid")), None);
    }

    #[test]
    fn hangup_causes_map_by_the_documented_table() {
        assert_eq!(
            status_of(&HangupCause::NormalClearing),
            CallStatus::Completed
        );
        assert_eq!(status_of(&HangupCause::UserBusy), CallStatus::Busy);
        assert_eq!(status_of(&HangupCause::Timeout), CallStatus::NoAnswer);
        assert_eq!(
            status_of(&HangupCause::OriginatorCancel),
            CallStatus::Canceled
        );
        assert_eq!(
            status_of(&HangupCause::Other("sip_503".into())),
            CallStatus::Failed
        );
    }
}
