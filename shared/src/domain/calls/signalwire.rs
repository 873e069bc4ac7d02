//! SignalWire's cXML calls in Parley's terms: the document the voice webhook answers with, the
//! form callbacks read into call events, and placing or ending a call through the LaML REST API.
//! Callback URLs are built from the public URL SignalWire called, so they verify the same way.

use uuid::Uuid;

use super::events::{CallEvent, EventKind, RecordingRef};
use super::numbers::Handling;
use super::webhooks::StoredEvent;
use super::{CallStatus, Direction, Provider};
use crate::vendors::signalwire::client::{
    self, CreateCall, HangupStatus, SignalWire, SignalWireError,
};
use crate::vendors::signalwire::cxml::{
    self, Dial, DialRecord, Record, RejectReason, Response, Verb,
};
use crate::vendors::signalwire::wire::{
    self, Form, RecordingCallback, RecordingStatus, StatusCallback, VoiceRequest, WireError,
};

/// The three receivers' paths, under the API's public base URL.
pub const VOICE_PATH: &str = "/webhooks/signalwire/voice";
pub const STATUS_PATH: &str = "/webhooks/signalwire/status";
pub const RECORDING_PATH: &str = "/webhooks/signalwire/recording";

/// What a callback is, by the receiver that took it (stored as the event's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Voice,
    Status,
    Recording,
}

impl Callback {
    pub fn as_str(self) -> &'static str {
        match self {
            Callback::Voice => "voice",
            Callback::Status => "status",
            Callback::Recording => "recording",
        }
    }
}

/// A verified callback, parsed: its stable event id (SignalWire sends none) and the call event.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub event_id: String,
    pub event: Option<CallEvent>,
    pub voice: Option<VoiceRequest>,
}

fn status_of(status: wire::CallStatus) -> EventKind {
    let ended = |status| EventKind::Ended {
        status,
        cause: None,
        source: None,
        duration_seconds: None,
    };
    match status {
        wire::CallStatus::Queued | wire::CallStatus::Initiated => EventKind::Initiated,
        wire::CallStatus::Ringing => EventKind::Ringing,
        wire::CallStatus::InProgress => EventKind::Answered,
        wire::CallStatus::Completed => ended(CallStatus::Completed),
        wire::CallStatus::Busy => ended(CallStatus::Busy),
        wire::CallStatus::Failed => ended(CallStatus::Failed),
        wire::CallStatus::NoAnswer => ended(CallStatus::NoAnswer),
        wire::CallStatus::Canceled => ended(CallStatus::Canceled),
    }
}

fn direction(d: Option<wire::Direction>) -> (Direction, bool) {
    match d {
        Some(wire::Direction::OutboundApi) => (Direction::Outbound, false),
        // The leg `<Dial>` created: the far end of a forwarded call.
        Some(wire::Direction::OutboundDial) => (Direction::Outbound, true),
        Some(wire::Direction::Inbound) | None => (Direction::Inbound, false),
    }
}

/// Reads a callback body of `kind`; `occurred_at` is used when the form carries no `Timestamp`.
pub fn parse(
    kind: Callback,
    body: &[u8],
    call_hint: Option<Uuid>,
    occurred_at: time::OffsetDateTime,
) -> Result<Parsed, WireError> {
    let form = Form::parse(body)?;
    let event = |call_sid: &str, from: &str, to: &str, d, kind, at| {
        let (direction, transfer_leg) = direction(d);
        CallEvent {
            provider: Provider::Signalwire,
            occurred_at: at,
            call_control_id: None,
            call_session_id: None,
            call_sid: Some(call_sid.to_owned()),
            call_id: call_hint,
            transfer_leg,
            direction,
            from: from.to_owned(),
            to: to.to_owned(),
            kind,
        }
    };
    match kind {
        Callback::Voice => {
            let v = VoiceRequest::parse(&form)?;
            let e = event(
                &v.call_sid,
                &v.from,
                &v.to,
                Some(v.direction),
                status_of(v.call_status),
                occurred_at,
            );
            Ok(Parsed {
                event_id: v.event_id(),
                event: Some(e),
                voice: Some(v),
            })
        }
        Callback::Status => {
            let s = StatusCallback::parse(&form)?;
            let mut kind = status_of(s.call_status);
            if let EventKind::Ended {
                duration_seconds,
                source,
                ..
            } = &mut kind
            {
                *duration_seconds = s.call_duration.and_then(|d| i32::try_from(d).ok());
                *source = s.hangup_by.clone();
            }
            let e = event(
                &s.call_sid,
                s.from.as_deref().unwrap_or_default(),
                s.to.as_deref().unwrap_or_default(),
                s.direction,
                kind,
                s.timestamp.unwrap_or(occurred_at),
            );
            Ok(Parsed {
                event_id: s.event_id(),
                event: Some(e),
                voice: None,
            })
        }
        Callback::Recording => {
            let r = RecordingCallback::parse(&form)?;
            let kind = if r.recording_status == RecordingStatus::Completed {
                EventKind::RecordingSaved(recording_ref(&r))
            } else {
                EventKind::Other
            };
            // A recording callback names no direction; the call already exists by its sid.
            let e = event(&r.call_sid, "", "", None, kind, occurred_at);
            Ok(Parsed {
                event_id: r.event_id(),
                event: Some(e),
                voice: None,
            })
        }
    }
}

fn recording_ref(r: &RecordingCallback) -> RecordingRef {
    RecordingRef {
        recording_id: r.recording_sid.clone(),
        url: Some(r.wav_url()),
        duration_seconds: r.recording_duration.map(f64::from),
    }
}

/// A stored callback read again by the worker.
pub fn read(stored: &StoredEvent) -> Result<Option<CallEvent>, WireError> {
    let kind = match stored.event_type.as_str() {
        "voice" => Callback::Voice,
        "status" => Callback::Status,
        "recording" => Callback::Recording,
        other => {
            return Err(WireError::Invalid(format!(
                "stored SignalWire event of unknown type {other:?}"
            )));
        }
    };
    Ok(parse(kind, &stored.body, stored.call_hint, stored.occurred_at)?.event)
}

/// The callback URLs of one call, under the public base URL SignalWire called.
#[derive(Debug, Clone)]
pub struct CallbackUrls {
    base: String,
}

impl CallbackUrls {
    pub fn new(public_base: &str) -> CallbackUrls {
        CallbackUrls {
            base: public_base.trim_end_matches('/').to_owned(),
        }
    }

    fn with_call(&self, path: &str, call: Option<Uuid>) -> String {
        match call {
            Some(id) => format!("{}{path}?call={id}", self.base),
            None => format!("{}{path}", self.base),
        }
    }

    pub fn voice(&self, call: Option<Uuid>) -> String {
        self.with_call(VOICE_PATH, call)
    }

    /// Where `<Dial>`/`<Record>` go when they end: answered with `<Hangup/>`, never the same
    /// document again (which would loop).
    pub fn after(&self) -> String {
        format!("{}{VOICE_PATH}?after=1", self.base)
    }

    pub fn status(&self, call: Option<Uuid>) -> String {
        self.with_call(STATUS_PATH, call)
    }

    pub fn recording(&self, call: Option<Uuid>) -> String {
        self.with_call(RECORDING_PATH, call)
    }
}

/// The cXML document for a call: how its number's owner configured it, or a rejection when
/// nobody owns the number.
pub fn document(
    handling: Option<&Handling>,
    call: Option<Uuid>,
    urls: &CallbackUrls,
) -> Result<String, cxml::CxmlError> {
    let Some(h) = handling else {
        return Response::new().reject(RejectReason::Rejected).render();
    };
    let mut doc = Response::new();
    if let Some(greeting) = &h.greeting {
        doc = doc.say(greeting);
    }
    let max = u32::try_from(h.max_recording_seconds).unwrap_or(cxml::MAX_SECONDS);
    if let Some(number) = &h.forward_to {
        doc = doc.verb(Verb::Dial(Dial {
            number: number.clone(),
            record: if h.record {
                DialRecord::RecordFromAnswerDual
            } else {
                DialRecord::DoNotRecord
            },
            action: Some(urls.after()),
            recording_status_callback: h.record.then(|| urls.recording(call)),
            caller_id: None,
            timeout: None,
            time_limit: Some(max),
            number_status_callback: None,
        }));
    } else if h.record {
        doc = doc.verb(Verb::Record(Record {
            max_length: max,
            action: urls.after(),
            recording_status_callback: Some(urls.recording(call)),
            play_beep: Some(true),
            timeout: None,
        }));
    }
    doc.hangup().render()
}

/// The document for the request `<Dial>` or `<Record>` makes when it ends.
pub fn after_document() -> Result<String, cxml::CxmlError> {
    Response::new().hangup().render()
}

/// Places call `id` through SignalWire; its callbacks carry the id back. Returns the CallSid.
pub async fn place(
    signalwire: &SignalWire,
    public_base: &str,
    id: Uuid,
    from: &str,
    to: &str,
    deadline_ms: u64,
) -> Result<String, SignalWireError> {
    let urls = CallbackUrls::new(public_base);
    let call = CreateCall {
        to: to.to_owned(),
        from: from.to_owned(),
        url: urls.voice(Some(id)),
        status_callback: Some(urls.status(Some(id))),
        status_callback_events: client::CallEvent::ALL.to_vec(),
        record: None,
        timeout: Some(30),
    };
    Ok(signalwire.create_call(&call, deadline_ms).await?.sid)
}

/// Ends a call at SignalWire: `canceled` while it rings, `completed` once answered.
pub async fn hang_up(
    signalwire: &SignalWire,
    sid: &str,
    status: CallStatus,
    deadline_ms: u64,
) -> Result<(), SignalWireError> {
    let how = if status == CallStatus::InProgress {
        HangupStatus::Completed
    } else {
        HangupStatus::Canceled
    };
    signalwire.hangup(sid, how, deadline_ms).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn handling() -> Handling {
        Handling {
            phone_number_id: Uuid::nil(),
            owner: UserId::new(1),
            record: true,
            transcribe: false,
            greeting: Some("Hi <there> & \"welcome\"".into()),
            forward_to: None,
            max_recording_seconds: 600,
            telnyx_connection_id: None,
        }
    }

    #[test]
    fn a_recorded_number_answers_with_an_escaped_greeting_and_a_record_that_cannot_loop() {
        let urls = CallbackUrls::new("https://api.example.com/");
        let doc = document(Some(&handling()), None, &urls).unwrap();
        assert!(doc.contains("Hi &lt;there&gt; &amp; "), "{doc}");
        assert!(doc.contains("maxLength=\"600\""), "{doc}");
        assert!(
            doc.contains("action=\"https://api.example.com/webhooks/signalwire/voice?after=1\""),
            "{doc}"
        );
        assert!(
            doc.contains(
                "recordingStatusCallback=\"https://api.example.com/webhooks/signalwire/recording\""
            ),
            "{doc}"
        );
    }

    #[test]
    fn a_forwarding_number_dials_and_records_both_sides() {
        let mut h = handling();
        h.forward_to = Some("+15552223333".into());
        h.greeting = None;
        let doc = document(Some(&h), None, &CallbackUrls::new("https://x.test")).unwrap();
        assert!(doc.contains("record=\"record-from-answer-dual\""), "{doc}");
        assert!(doc.contains("<Number>+15552223333</Number>"), "{doc}");
        assert!(!doc.contains("<Record"), "{doc}");
    }

    #[test]
    fn an_unowned_number_is_rejected() {
        let doc = document(None, None, &CallbackUrls::new("https://x.test")).unwrap();
        assert!(doc.contains("<Reject"), "{doc}");
    }

    #[test]
    fn callbacks_read_into_events_with_stable_ids() {
        let at = time::macros::datetime!(2026-12-05 10:00 UTC);
        let body = b"AccountSid=a&CallSid=CA1&CallStatus=completed&CallDuration=42&Direction=inbound&From=%2B15557654321&To=%2B15550001111";
        let parsed = parse(Callback::Status, body, None, at).unwrap();
        assert_eq!(parsed.event_id, "status:CA1:completed");
        let event = parsed.event.unwrap();
        assert!(matches!(
            event.kind,
            EventKind::Ended {
                status: CallStatus::Completed,
                duration_seconds: Some(42),
                ..
            }
        ));
        let body = b"AccountSid=a&CallSid=CA1&RecordingSid=RE1&RecordingUrl=https%3A%2F%2Fspace.signalwire.com%2Fapi%2Flaml%2F2010-04-01%2FAccounts%2Fa%2FRecordings%2FRE1&RecordingStatus=completed&RecordingDuration=40";
        let parsed = parse(Callback::Recording, body, None, at).unwrap();
        assert_eq!(parsed.event_id, "recording:RE1:completed");
        let EventKind::RecordingSaved(r) = parsed.event.unwrap().kind else {
            panic!()
        };
        assert!(r.url.unwrap().ends_with("/Recordings/RE1.wav"));
    }
}
