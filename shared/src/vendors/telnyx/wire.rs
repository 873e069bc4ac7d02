//! Telnyx Call Control v2 wire types: the webhook envelope and the events Parley acts on, the
//! `client_state` carried through every command, and the REST responses (dial, recordings).
//!
//! Strict where Parley depends on a field (ids, event type, times, directions), tolerant of extra
//! fields and of event types Parley does not use (those parse as [`TelnyxEvent::Ignored`]).

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The longest webhook body parsed; real events are a few KB.
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;
/// Telnyx echoes `client_state` as given; it must be base64 and small.
pub const CLIENT_STATE_LIMIT: usize = 4096;

/// `client_state`: valid (standard) base64, as Telnyx requires; build it from raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ClientState(String);

impl ClientState {
    pub fn encode(raw: &[u8]) -> ClientState {
        ClientState(base64::engine::general_purpose::STANDARD.encode(raw))
    }

    /// Accepts what a webhook echoes, checking it decodes.
    pub fn from_base64(value: &str) -> Result<ClientState, WireError> {
        if value.len() > CLIENT_STATE_LIMIT {
            return Err(WireError::Invalid("client_state is too long".into()));
        }
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| WireError::Invalid("client_state is not base64".into()))?;
        Ok(ClientState(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn decode(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.0)
            .expect("checked when built")
    }

    /// The decoded state as UTF-8 (Parley stores its call id there).
    pub fn decode_utf8(&self) -> Option<String> {
        String::from_utf8(self.decode()).ok()
    }
}

impl<'de> Deserialize<'de> for ClientState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ClientState::from_base64(&raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a Telnyx event: {0}")]
    Invalid(String),
}

/// `call.initiated`'s `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// `call.hangup`'s `hangup_cause`: the documented values, anything else kept as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangupCause {
    CallRejected,
    NormalClearing,
    OriginatorCancel,
    Timeout,
    TimeLimit,
    UserBusy,
    NotFound,
    NoAnswer,
    Unspecified,
    Other(String),
}

impl HangupCause {
    pub fn parse(value: &str) -> HangupCause {
        match value {
            "call_rejected" => HangupCause::CallRejected,
            "normal_clearing" => HangupCause::NormalClearing,
            "originator_cancel" => HangupCause::OriginatorCancel,
            "timeout" => HangupCause::Timeout,
            "time_limit" => HangupCause::TimeLimit,
            "user_busy" => HangupCause::UserBusy,
            "not_found" => HangupCause::NotFound,
            "no_answer" => HangupCause::NoAnswer,
            "unspecified" => HangupCause::Unspecified,
            other => HangupCause::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            HangupCause::CallRejected => "call_rejected",
            HangupCause::NormalClearing => "normal_clearing",
            HangupCause::OriginatorCancel => "originator_cancel",
            HangupCause::Timeout => "timeout",
            HangupCause::TimeLimit => "time_limit",
            HangupCause::UserBusy => "user_busy",
            HangupCause::NotFound => "not_found",
            HangupCause::NoAnswer => "no_answer",
            HangupCause::Unspecified => "unspecified",
            HangupCause::Other(s) => s,
        }
    }
}

/// `call.hangup`'s `hangup_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupSource {
    Caller,
    Callee,
    Unknown,
}

impl HangupSource {
    pub fn parse(value: &str) -> HangupSource {
        match value {
            "caller" => HangupSource::Caller,
            "callee" => HangupSource::Callee,
            _ => HangupSource::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HangupSource::Caller => "caller",
            HangupSource::Callee => "callee",
            HangupSource::Unknown => "unknown",
        }
    }
}

/// The three ids of a call leg; every call event Parley uses carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIds {
    pub call_control_id: String,
    pub call_leg_id: String,
    pub call_session_id: String,
    pub connection_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallInitiated {
    pub ids: CallIds,
    pub client_state: Option<ClientState>,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub state: Option<String>,
    pub start_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallAnswered {
    pub ids: CallIds,
    pub client_state: Option<ClientState>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub start_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallHangup {
    pub ids: CallIds,
    pub client_state: Option<ClientState>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub hangup_cause: HangupCause,
    pub hangup_source: HangupSource,
    pub sip_hangup_cause: Option<String>,
    pub start_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
}

/// `recording_urls` / `public_recording_urls` / `download_urls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RecordingUrls {
    #[serde(default)]
    pub wav: Option<String>,
    #[serde(default)]
    pub mp3: Option<String>,
}

impl RecordingUrls {
    pub fn is_empty(&self) -> bool {
        self.wav.is_none() && self.mp3.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    Single,
    Dual,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordingSaved {
    /// Not in Telnyx's SDK schema, but in its docs' examples; absent on some events.
    pub call_control_id: Option<String>,
    pub call_leg_id: String,
    pub call_session_id: String,
    pub connection_id: Option<String>,
    pub client_state: Option<ClientState>,
    /// Absent from the SDK schema too; without it, list recordings by call leg to refetch.
    pub recording_id: Option<String>,
    pub channels: Option<Channels>,
    pub format: Option<String>,
    pub recording_urls: RecordingUrls,
    pub public_recording_urls: RecordingUrls,
    pub recording_started_at: Option<OffsetDateTime>,
    pub recording_ended_at: Option<OffsetDateTime>,
}

impl RecordingSaved {
    /// The recording's length from its timestamps, when both are given.
    pub fn duration_seconds(&self) -> Option<f64> {
        let (a, b) = (self.recording_started_at?, self.recording_ended_at?);
        let d = (b - a).as_seconds_f64();
        (d >= 0.0).then_some(d)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeakEnded {
    pub ids: CallIds,
    pub client_state: Option<ClientState>,
    /// `completed`, `call_hangup` or `cancelled_amd`.
    pub status: Option<String>,
}

/// The events Parley acts on; any other `event_type` is acknowledged and ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum TelnyxEvent {
    Initiated(CallInitiated),
    Answered(CallAnswered),
    Hangup(CallHangup),
    RecordingSaved(RecordingSaved),
    SpeakEnded(SpeakEnded),
    Ignored,
}

/// A parsed webhook: `data.id` is the dedup key, `occurred_at` orders events of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub occurred_at: OffsetDateTime,
    pub event: TelnyxEvent,
}

impl Envelope {
    /// The call session the event belongs to, for correlating legs.
    pub fn call_session_id(&self) -> Option<&str> {
        match &self.event {
            TelnyxEvent::Initiated(e) => Some(&e.ids.call_session_id),
            TelnyxEvent::Answered(e) => Some(&e.ids.call_session_id),
            TelnyxEvent::Hangup(e) => Some(&e.ids.call_session_id),
            TelnyxEvent::SpeakEnded(e) => Some(&e.ids.call_session_id),
            TelnyxEvent::RecordingSaved(e) => Some(&e.call_session_id),
            TelnyxEvent::Ignored => None,
        }
    }

    pub fn client_state(&self) -> Option<&ClientState> {
        match &self.event {
            TelnyxEvent::Initiated(e) => e.client_state.as_ref(),
            TelnyxEvent::Answered(e) => e.client_state.as_ref(),
            TelnyxEvent::Hangup(e) => e.client_state.as_ref(),
            TelnyxEvent::SpeakEnded(e) => e.client_state.as_ref(),
            TelnyxEvent::RecordingSaved(e) => e.client_state.as_ref(),
            TelnyxEvent::Ignored => None,
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    record_type: String,
    event_type: String,
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(default)]
    payload: serde_json::Value,
}

/// The payload fields Parley reads; `null` and absence are the same (Telnyx sends both).
#[derive(Deserialize, Default)]
struct RawPayload {
    call_control_id: Option<String>,
    call_leg_id: Option<String>,
    call_session_id: Option<String>,
    connection_id: Option<String>,
    client_state: Option<ClientState>,
    direction: Option<Direction>,
    from: Option<String>,
    to: Option<String>,
    state: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    start_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    end_time: Option<OffsetDateTime>,
    hangup_cause: Option<String>,
    hangup_source: Option<String>,
    sip_hangup_cause: Option<serde_json::Value>,
    recording_id: Option<String>,
    channels: Option<Channels>,
    format: Option<String>,
    recording_urls: Option<RecordingUrls>,
    public_recording_urls: Option<RecordingUrls>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    recording_started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    recording_ended_at: Option<OffsetDateTime>,
    status: Option<String>,
}

fn required(value: Option<String>, name: &str) -> Result<String, WireError> {
    match value {
        Some(v) if !v.trim().is_empty() && v.len() <= 256 => Ok(v),
        Some(_) => Err(WireError::Invalid(format!(
            "payload.{name} is empty or too long"
        ))),
        None => Err(WireError::Invalid(format!("payload.{name} is missing"))),
    }
}

fn ids(p: &mut RawPayload) -> Result<CallIds, WireError> {
    Ok(CallIds {
        call_control_id: required(p.call_control_id.take(), "call_control_id")?,
        call_leg_id: required(p.call_leg_id.take(), "call_leg_id")?,
        call_session_id: required(p.call_session_id.take(), "call_session_id")?,
        connection_id: p.connection_id.take(),
    })
}

/// Parses and validates a Call Control webhook body (after its signature was checked).
pub fn parse_webhook(body: &[u8]) -> Result<Envelope, WireError> {
    if body.len() > WEBHOOK_BODY_LIMIT {
        return Err(WireError::Invalid("the body is too large".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let raw: RawEnvelope = serde_path_to_error::deserialize(de)
        .map_err(|e| WireError::Invalid(format!("at {}: {}", e.path(), e.inner())))?;
    let data = raw.data;
    if data.record_type != "event" {
        return Err(WireError::Invalid(format!(
            "data.record_type is {:?}, not \"event\"",
            data.record_type
        )));
    }
    if data.id.trim().is_empty() || data.id.len() > 128 {
        return Err(WireError::Invalid("data.id is empty or too long".into()));
    }
    let parley_uses = matches!(
        data.event_type.as_str(),
        "call.initiated"
            | "call.answered"
            | "call.hangup"
            | "call.recording.saved"
            | "call.speak.ended"
    );
    let event = if !parley_uses {
        TelnyxEvent::Ignored
    } else {
        if !data.payload.is_object() {
            return Err(WireError::Invalid("data.payload is not an object".into()));
        }
        let mut p: RawPayload = serde_path_to_error::deserialize(data.payload)
            .map_err(|e| WireError::Invalid(format!("at payload.{}: {}", e.path(), e.inner())))?;
        match data.event_type.as_str() {
            "call.initiated" => TelnyxEvent::Initiated(CallInitiated {
                ids: ids(&mut p)?,
                client_state: p.client_state,
                direction: p
                    .direction
                    .ok_or_else(|| WireError::Invalid("payload.direction is missing".into()))?,
                from: required(p.from, "from")?,
                to: required(p.to, "to")?,
                state: p.state,
                start_time: p.start_time,
            }),
            "call.answered" => TelnyxEvent::Answered(CallAnswered {
                ids: ids(&mut p)?,
                client_state: p.client_state,
                from: p.from,
                to: p.to,
                start_time: p.start_time,
            }),
            "call.hangup" => TelnyxEvent::Hangup(CallHangup {
                ids: ids(&mut p)?,
                client_state: p.client_state,
                from: p.from,
                to: p.to,
                hangup_cause: HangupCause::parse(
                    p.hangup_cause.as_deref().unwrap_or("unspecified"),
                ),
                hangup_source: HangupSource::parse(p.hangup_source.as_deref().unwrap_or("unknown")),
                // Documented as a SIP code or "unspecified"; some senders use a number.
                sip_hangup_cause: p.sip_hangup_cause.and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
                start_time: p.start_time,
                end_time: p.end_time,
            }),
            "call.recording.saved" => {
                let recording_urls = p.recording_urls.unwrap_or_default();
                let recording_id = p.recording_id.filter(|id| !id.trim().is_empty());
                if recording_urls.is_empty() && recording_id.is_none() {
                    return Err(WireError::Invalid(
                        "payload has neither recording_urls nor recording_id".into(),
                    ));
                }
                TelnyxEvent::RecordingSaved(RecordingSaved {
                    call_control_id: p.call_control_id,
                    call_leg_id: required(p.call_leg_id, "call_leg_id")?,
                    call_session_id: required(p.call_session_id, "call_session_id")?,
                    connection_id: p.connection_id,
                    client_state: p.client_state,
                    recording_id,
                    channels: p.channels,
                    format: p.format,
                    recording_urls,
                    public_recording_urls: p.public_recording_urls.unwrap_or_default(),
                    recording_started_at: p.recording_started_at,
                    recording_ended_at: p.recording_ended_at,
                })
            }
            _ => TelnyxEvent::SpeakEnded(SpeakEnded {
                ids: ids(&mut p)?,
                client_state: p.client_state,
                status: p.status,
            }),
        }
    };
    Ok(Envelope {
        id: data.id,
        event_type: data.event_type,
        occurred_at: data.occurred_at,
        event,
    })
}

/// `POST /calls` answers `{"data": {...}}` with at least the three ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dialed {
    pub call_control_id: String,
    pub call_leg_id: String,
    pub call_session_id: String,
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub recording_id: Option<String>,
}

/// `GET /recordings/{id}`'s `data`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Recording {
    pub id: String,
    #[serde(default)]
    pub call_control_id: Option<String>,
    #[serde(default)]
    pub call_leg_id: Option<String>,
    #[serde(default)]
    pub call_session_id: Option<String>,
    #[serde(default)]
    pub channels: Option<Channels>,
    #[serde(default)]
    pub download_urls: RecordingUrls,
    #[serde(default)]
    pub duration_millis: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Data<T> {
    pub data: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `call.recording.saved` sample from vendors.md §3 (developers.telnyx.com callbacks page).
    const RECORDING_SAVED: &str = r#"{"data":{"record_type":"event","event_type":"call.recording.saved","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2018-02-02T22:25:27.521992Z",
 "payload":{"connection_id":"7267xxxxxxxxxxxxxx","call_leg_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c1","call_session_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c1","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d",
  "recording_started_at":"2018-02-02T22:20:27.521992Z","recording_ended_at":"2018-02-02T22:20:27.521992Z","channels":"single",
  "recording_urls":{"mp3":"http://example.com/recording.mp3","wav":"http://example.com/recording.wav"},
  "public_recording_urls":{"mp3":"http://example.com/recording.mp3","wav":"http://example.com/recording.wav"}}}}"#;

    fn event(event_type: &str, payload: &str) -> String {
        format!(
            r#"{{"data":{{"record_type":"event","event_type":"{event_type}","id":"e-1","occurred_at":"2026-12-05T06:00:00.123456Z","payload":{payload}}},"meta":{{"attempt":1,"delivered_to":"https://x"}}}}"#
        )
    }

    const IDS: &str = r#""call_control_id":"v3:abc","call_leg_id":"leg-1","call_session_id":"sess-1","connection_id":"1684641123236054244""#;

    #[test]
    fn the_documented_recording_saved_sample_parses() {
        let e = parse_webhook(RECORDING_SAVED.as_bytes()).unwrap();
        assert_eq!(e.id, "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0");
        let TelnyxEvent::RecordingSaved(r) = &e.event else {
            panic!("{e:?}")
        };
        assert_eq!(r.call_session_id, "428c31b6-7af4-4bcb-b7f5-5013ef9657c1");
        assert_eq!(r.channels, Some(Channels::Single));
        assert_eq!(
            r.recording_urls.wav.as_deref(),
            Some("http://example.com/recording.wav")
        );
        assert_eq!(r.recording_id, None);
        assert_eq!(
            r.client_state.as_ref().unwrap().decode_utf8().as_deref(),
            Some("have a nice day =]")
        );
        assert_eq!(r.duration_seconds(), Some(0.0));
    }

    #[test]
    fn the_storing_recordings_sample_with_nulls_and_ids_parses() {
        let body = event(
            "call.recording.saved",
            r#"{"call_control_id":"9977677e-85ae-11ec-826d-02420a0d7e70","call_leg_id":"9977677e-85ae-11ec-826d-02420a0d7e70","call_session_id":"99706bb8-85ae-11ec-885c-02420a0d7e70","channels":"dual","client_state":null,"connection_id":"1684641123236054244","end_time":"2022-02-04T11:36:12.788447Z","format":"wav","occurred_at":"2022-02-04T11:36:13.508869Z","public_recording_urls":{},"recording_ended_at":"2022-02-04T11:36:12.788447Z","recording_id":"10cd86ac-fef8-4765-b203-0f7511f9fc75","recording_started_at":"2022-02-04T11:36:08.148619Z","recording_urls":{"wav":"https://s3.amazonaws.com/telephony-recorder-prod/x.wav?X-Amz-Expires=600"},"start_time":"2022-02-04T11:36:06.528866Z"}"#,
        );
        let TelnyxEvent::RecordingSaved(r) = parse_webhook(body.as_bytes()).unwrap().event else {
            panic!()
        };
        assert_eq!(
            r.recording_id.as_deref(),
            Some("10cd86ac-fef8-4765-b203-0f7511f9fc75")
        );
        assert_eq!(r.channels, Some(Channels::Dual));
        assert!(r.public_recording_urls.is_empty() && r.recording_urls.mp3.is_none());
        assert!((r.duration_seconds().unwrap() - 4.639828).abs() < 1e-6);
    }

    #[test]
    fn call_lifecycle_events_parse_to_typed_values() {
        let init = parse_webhook(event("call.initiated", &format!(r#"{{{IDS},"client_state":null,"direction":"incoming","from":"+15550001111","to":"+15551234567","state":"parked","start_time":"2026-12-05T06:00:00Z","caller_id_name":"x","custom_headers":[],"tags":[]}}"#)).as_bytes()).unwrap();
        let TelnyxEvent::Initiated(i) = &init.event else {
            panic!()
        };
        assert_eq!(i.direction, Direction::Incoming);
        assert_eq!(i.ids.call_control_id, "v3:abc");
        assert_eq!(i.to, "+15551234567");
        assert_eq!(init.call_session_id(), Some("sess-1"));
        assert_eq!(init.occurred_at.microsecond(), 123456);

        let hangup = parse_webhook(event("call.hangup", &format!(r#"{{{IDS},"client_state":"Y2FsbC0x","hangup_cause":"user_busy","hangup_source":"callee","sip_hangup_cause":"486","start_time":"2026-12-05T06:00:00Z","end_time":"2026-12-05T06:00:09Z","call_quality_stats":null}}"#)).as_bytes()).unwrap();
        let TelnyxEvent::Hangup(h) = &hangup.event else {
            panic!()
        };
        assert_eq!(h.hangup_cause, HangupCause::UserBusy);
        assert_eq!(h.hangup_source, HangupSource::Callee);
        assert_eq!(h.sip_hangup_cause.as_deref(), Some("486"));
        assert_eq!(
            hangup.client_state().unwrap().decode_utf8().as_deref(),
            Some("call-1")
        );

        let odd = parse_webhook(
            event(
                "call.hangup",
                &format!(r#"{{{IDS},"hangup_cause":"brand_new_cause"}}"#),
            )
            .as_bytes(),
        )
        .unwrap();
        let TelnyxEvent::Hangup(h) = odd.event else {
            panic!()
        };
        assert_eq!(h.hangup_cause, HangupCause::Other("brand_new_cause".into()));
        assert_eq!(h.hangup_source, HangupSource::Unknown);

        let answered = parse_webhook(
            event("call.answered", &format!(r#"{{{IDS},"state":"answered"}}"#)).as_bytes(),
        )
        .unwrap();
        assert!(matches!(answered.event, TelnyxEvent::Answered(_)));
        let spoke = parse_webhook(
            event(
                "call.speak.ended",
                &format!(r#"{{{IDS},"status":"completed"}}"#),
            )
            .as_bytes(),
        )
        .unwrap();
        let TelnyxEvent::SpeakEnded(s) = spoke.event else {
            panic!()
        };
        assert_eq!(s.status.as_deref(), Some("completed"));
    }

    #[test]
    fn other_event_types_are_ignored_without_reading_their_payload() {
        let e = parse_webhook(event("call.dtmf.received", r#""anything""#).as_bytes()).unwrap();
        assert_eq!(e.event, TelnyxEvent::Ignored);
        assert_eq!(e.event_type, "call.dtmf.received");
    }

    #[test]
    fn what_parley_depends_on_is_required() {
        let bad = [
            event("call.initiated", &format!(r#"{{{IDS},"from":"+1","to":"+2"}}"#)), // no direction
            event("call.initiated", r#"{"call_leg_id":"l","call_session_id":"s","direction":"incoming","from":"+1","to":"+2"}"#),
            event("call.initiated", &format!(r#"{{{IDS},"direction":"sideways","from":"+1","to":"+2"}}"#)),
            event("call.answered", &format!(r#"{{{IDS},"client_state":"not base64!"}}"#)),
            event("call.hangup", r#"{"call_control_id":"","call_leg_id":"l","call_session_id":"s"}"#),
            event("call.recording.saved", r#"{"call_leg_id":"l","call_session_id":"s","recording_urls":{}}"#),
            event("call.recording.saved", r#"{"call_leg_id":"l","call_session_id":"s","channels":"quad","recording_id":"r"}"#),
            event("call.answered", "[]"),
            r#"{"data":{"record_type":"call","event_type":"call.answered","id":"x","occurred_at":"2026-12-05T06:00:00Z","payload":{}}}"#.to_owned(),
            r#"{"data":{"record_type":"event","event_type":"call.answered","id":"x","occurred_at":"yesterday","payload":{}}}"#.to_owned(),
            r#"{"data":{"record_type":"event","event_type":"call.answered","id":"","occurred_at":"2026-12-05T06:00:00Z","payload":{}}}"#.to_owned(),
            r#"{"event_type":"call.answered"}"#.to_owned(),
            "not json".to_owned(),
        ];
        for body in bad {
            assert!(parse_webhook(body.as_bytes()).is_err(), "{body}");
        }
        let huge = vec![b' '; WEBHOOK_BODY_LIMIT + 1];
        assert!(parse_webhook(&huge).is_err());
    }

    #[test]
    fn client_state_round_trips_and_is_checked() {
        let s = ClientState::encode(b"018f0c2e-call");
        assert_eq!(s.decode_utf8().as_deref(), Some("018f0c2e-call"));
        assert_eq!(ClientState::from_base64(s.as_str()).unwrap(), s);
        assert!(ClientState::from_base64("%%%").is_err());
        assert!(ClientState::from_base64(&"A".repeat(CLIENT_STATE_LIMIT + 4)).is_err());
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let samples = [
            RECORDING_SAVED.to_owned(),
            event(
                "call.hangup",
                &format!(
                    r#"{{{IDS},"hangup_cause":"user_busy","start_time":"2026-12-05T06:00:00Z"}}"#
                ),
            ),
            event(
                "call.initiated",
                &format!(
                    r#"{{{IDS},"direction":"incoming","from":"+1","to":"+2","client_state":"Y2FsbC0x"}}"#
                ),
            ),
        ];
        for sample in samples {
            for _ in 0..3_000 {
                let mut bytes = sample.clone().into_bytes();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                let _ = parse_webhook(&bytes);
            }
        }
    }
}
