//! SignalWire's cXML callbacks as typed values: the voice request, the call status callback and the
//! recording status callback, all `application/x-www-form-urlencoded` (vendors.md §11 B.1, B.3,
//! B.4), plus the REST Call resource. Strict on what Parley uses, tolerant of extra parameters.
//!
//! Form callbacks have no event id, so [`StatusCallback::event_id`] and
//! [`RecordingCallback::event_id`] build a stable one from the sid and the status: a redelivery
//! gets the same id and is deduplicated.

use serde::Deserialize;
use time::OffsetDateTime;

/// The longest callback body parsed; real ones are well under 4 KB.
pub const CALLBACK_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a SignalWire callback: {0}")]
    Invalid(String),
}

/// The decoded form parameters in submission order (repeated names kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, WireError> {
        if body.len() > CALLBACK_BODY_LIMIT {
            return Err(WireError::Invalid("the body is too large".into()));
        }
        Ok(Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    /// The first value of `name`, empty counted as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<String, WireError> {
        match self.get(name) {
            Some(v) if v.len() <= 512 => Ok(v.to_owned()),
            Some(_) => Err(WireError::Invalid(format!("{name} is too long"))),
            None => Err(WireError::Invalid(format!("{name} is missing"))),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, WireError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| WireError::Invalid(format!("{name} is not a whole number: {v:?}")))
            })
            .transpose()
    }
}

/// `Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    OutboundApi,
    OutboundDial,
}

impl Direction {
    pub fn parse(v: &str) -> Result<Direction, WireError> {
        match v {
            "inbound" => Ok(Direction::Inbound),
            "outbound-api" => Ok(Direction::OutboundApi),
            "outbound-dial" => Ok(Direction::OutboundDial),
            other => Err(WireError::Invalid(format!(
                "Direction {other:?} is unknown"
            ))),
        }
    }
}

/// `CallStatus` (also the REST resource's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub fn parse(v: &str) -> Result<CallStatus, WireError> {
        Ok(match v {
            "queued" => CallStatus::Queued,
            "initiated" => CallStatus::Initiated,
            "ringing" => CallStatus::Ringing,
            "in-progress" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "failed" => CallStatus::Failed,
            "no-answer" => CallStatus::NoAnswer,
            "canceled" => CallStatus::Canceled,
            other => {
                return Err(WireError::Invalid(format!(
                    "CallStatus {other:?} is unknown"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// No later status follows.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

/// `RecordingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    InProgress,
    Completed,
    Absent,
    Failed,
}

impl RecordingStatus {
    pub fn parse(v: &str) -> Result<RecordingStatus, WireError> {
        Ok(match v {
            "in-progress" => RecordingStatus::InProgress,
            "completed" => RecordingStatus::Completed,
            "absent" => RecordingStatus::Absent,
            "failed" => RecordingStatus::Failed,
            other => {
                return Err(WireError::Invalid(format!(
                    "RecordingStatus {other:?} is unknown"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::InProgress => "in-progress",
            RecordingStatus::Completed => "completed",
            RecordingStatus::Absent => "absent",
            RecordingStatus::Failed => "failed",
        }
    }
}

/// The request SignalWire makes to the number's voice URL; answered with cXML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceRequest {
    pub account_sid: String,
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub call_status: CallStatus,
    pub parent_call_sid: Option<String>,
}

impl VoiceRequest {
    pub fn parse(form: &Form) -> Result<VoiceRequest, WireError> {
        Ok(VoiceRequest {
            account_sid: form.required("AccountSid")?,
            call_sid: form.required("CallSid")?,
            from: form.required("From")?,
            to: form.required("To")?,
            direction: Direction::parse(&form.required("Direction")?)?,
            call_status: CallStatus::parse(&form.required("CallStatus")?)?,
            parent_call_sid: form.get("ParentCallSid").map(str::to_owned),
        })
    }

    /// `voice:<CallSid>`: the same call asks once (a retry is the same request).
    pub fn event_id(&self) -> String {
        format!("voice:{}", self.call_sid)
    }
}

/// A `StatusCallback` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    pub account_sid: String,
    pub call_sid: String,
    pub call_status: CallStatus,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<Direction>,
    pub parent_call_sid: Option<String>,
    /// Seconds; sent with `completed`.
    pub call_duration: Option<u32>,
    /// RFC 2822, when sent.
    pub timestamp: Option<OffsetDateTime>,
    /// From 0, in firing order (delivery order may differ).
    pub sequence_number: Option<u32>,
    pub hangup_by: Option<String>,
    pub hangup_direction: Option<String>,
    pub sip_result_code: Option<String>,
    pub recording_sid: Option<String>,
    pub recording_url: Option<String>,
}

fn rfc2822(form: &Form, name: &str) -> Result<Option<OffsetDateTime>, WireError> {
    form.get(name)
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822)
                .map_err(|_| WireError::Invalid(format!("{name} is not an RFC 2822 date: {v:?}")))
        })
        .transpose()
}

impl StatusCallback {
    pub fn parse(form: &Form) -> Result<StatusCallback, WireError> {
        Ok(StatusCallback {
            account_sid: form.required("AccountSid")?,
            call_sid: form.required("CallSid")?,
            call_status: CallStatus::parse(&form.required("CallStatus")?)?,
            from: form.get("From").map(str::to_owned),
            to: form.get("To").map(str::to_owned),
            direction: form.get("Direction").map(Direction::parse).transpose()?,
            parent_call_sid: form.get("ParentCallSid").map(str::to_owned),
            call_duration: form.number("CallDuration")?,
            timestamp: rfc2822(form, "Timestamp")?,
            sequence_number: form.number("SequenceNumber")?,
            hangup_by: form.get("HangupBy").map(str::to_owned),
            hangup_direction: form.get("HangupDirection").map(str::to_owned),
            sip_result_code: form.get("SipResultCode").map(str::to_owned),
            recording_sid: form.get("RecordingSid").map(str::to_owned),
            recording_url: form.get("RecordingUrl").map(str::to_owned),
        })
    }

    /// `status:<CallSid>:<CallStatus>`: one event per status of a call, whatever the redeliveries.
    pub fn event_id(&self) -> String {
        format!("status:{}:{}", self.call_sid, self.call_status.as_str())
    }
}

/// A `recordingStatusCallback` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingCallback {
    pub account_sid: String,
    pub call_sid: String,
    pub recording_sid: String,
    pub recording_url: String,
    pub recording_status: RecordingStatus,
    pub recording_duration: Option<u32>,
    pub recording_channels: Option<u8>,
    pub recording_source: Option<String>,
}

impl RecordingCallback {
    pub fn parse(form: &Form) -> Result<RecordingCallback, WireError> {
        let status = RecordingStatus::parse(&form.required("RecordingStatus")?)?;
        // An `absent` or failed recording may carry no URL; a completed one must.
        let recording_url = match (form.get("RecordingUrl"), status) {
            (Some(u), _) if u.starts_with("https://") || u.starts_with("http://") => u.to_owned(),
            (Some(u), _) => {
                return Err(WireError::Invalid(format!(
                    "RecordingUrl is not a URL: {u:?}"
                )));
            }
            (None, RecordingStatus::Completed) => {
                return Err(WireError::Invalid("RecordingUrl is missing".into()));
            }
            (None, _) => String::new(),
        };
        Ok(RecordingCallback {
            account_sid: form.required("AccountSid")?,
            call_sid: form.required("CallSid")?,
            recording_sid: form.required("RecordingSid")?,
            recording_url,
            recording_status: status,
            recording_duration: form.number("RecordingDuration")?,
            recording_channels: form.number("RecordingChannels")?,
            recording_source: form.get("RecordingSource").map(str::to_owned),
        })
    }

    /// `recording:<RecordingSid>:<RecordingStatus>`.
    pub fn event_id(&self) -> String {
        format!(
            "recording:{}:{}",
            self.recording_sid,
            self.recording_status.as_str()
        )
    }

    /// The WAV media URL: the `RecordingUrl` has no extension, and no extension or `.wav` is WAV.
    pub fn wav_url(&self) -> String {
        media_url(&self.recording_url, "wav")
    }
}

/// `RecordingUrl` + `.wav`/`.mp3` (query kept), unless it already names a format.
pub fn media_url(recording_url: &str, extension: &str) -> String {
    let (base, query) = match recording_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (recording_url, None),
    };
    let base = base
        .strip_suffix(".wav")
        .or_else(|| base.strip_suffix(".mp3"))
        .or_else(|| base.strip_suffix(".json"))
        .unwrap_or(base);
    match query {
        Some(q) => format!("{base}.{extension}?{q}"),
        None => format!("{base}.{extension}"),
    }
}

/// The REST Call resource (create and update answer with it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    pub sid: String,
    #[serde(default)]
    pub account_sid: Option<String>,
    pub status: String,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

impl CallResource {
    pub fn call_status(&self) -> Option<CallStatus> {
        CallStatus::parse(&self.status).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_voice_request_parses_and_extra_parameters_are_ignored() {
        let f = form(
            "AccountSid=b3877c40-da60-4998-90ad-b792e98472af&ApiVersion=2010-04-01&CallSid=b3877c40-da60-4998-90ad-b792e98472ca&CallStatus=ringing&Direction=inbound&From=%2B13103384645&To=%2B13105678901&ForwardedFrom=&CallerName=Someone",
        );
        let v = VoiceRequest::parse(&f).unwrap();
        assert_eq!(v.from, "+13103384645");
        assert_eq!(v.direction, Direction::Inbound);
        assert_eq!(v.call_status, CallStatus::Ringing);
        assert_eq!(v.event_id(), "voice:b3877c40-da60-4998-90ad-b792e98472ca");
        assert!(
            VoiceRequest::parse(&form(
                "CallSid=x&From=%2B1&To=%2B2&Direction=inbound&CallStatus=ringing"
            ))
            .is_err()
        );
        assert!(
            VoiceRequest::parse(&form(
                "AccountSid=a&CallSid=x&From=%2B1&To=%2B2&Direction=sideways&CallStatus=ringing"
            ))
            .is_err()
        );
    }

    #[test]
    fn a_status_callback_parses_times_sequence_and_ids() {
        let f = form(
            "AccountSid=a&CallSid=c1&CallStatus=completed&CallDuration=42&Timestamp=Sat%2C%2005%20Dec%202026%2006%3A00%3A09%20%2B0000&SequenceNumber=3&CallbackSource=call-progress-events&HangupBy=%2B15550001111&Direction=outbound-api",
        );
        let s = StatusCallback::parse(&f).unwrap();
        assert_eq!(s.call_status, CallStatus::Completed);
        assert!(s.call_status.is_final());
        assert_eq!(s.call_duration, Some(42));
        assert_eq!(s.sequence_number, Some(3));
        assert_eq!(s.timestamp.unwrap().unix_timestamp(), 1_796_450_409);
        assert_eq!(s.direction, Some(Direction::OutboundApi));
        assert_eq!(s.event_id(), "status:c1:completed");
        // Redelivered: same id.
        assert_eq!(StatusCallback::parse(&f).unwrap().event_id(), s.event_id());
        for bad in [
            "AccountSid=a&CallSid=c1&CallStatus=exploded",
            "AccountSid=a&CallSid=c1&CallStatus=completed&CallDuration=-1",
            "AccountSid=a&CallSid=c1&CallStatus=completed&Timestamp=yesterday",
            "AccountSid=a&CallStatus=completed",
        ] {
            assert!(StatusCallback::parse(&form(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_recording_callback_parses_and_names_its_media() {
        let f = form(
            "AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingUrl=https%3A%2F%2Facme.signalwire.com%2Fapi%2Flaml%2F2010-04-01%2FAccounts%2Fp%2FRecordings%2Fr1&RecordingStatus=completed&RecordingDuration=12&RecordingChannels=2&RecordingSource=DialVerb",
        );
        let r = RecordingCallback::parse(&f).unwrap();
        assert_eq!(r.recording_duration, Some(12));
        assert_eq!(r.recording_channels, Some(2));
        assert_eq!(r.event_id(), "recording:r1:completed");
        assert_eq!(
            r.wav_url(),
            "https://acme.signalwire.com/api/laml/2010-04-01/Accounts/p/Recordings/r1.wav"
        );
        assert_eq!(
            media_url("https://x/R1.json?a=1", "mp3"),
            "https://x/R1.mp3?a=1"
        );
        let absent = RecordingCallback::parse(&form(
            "AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingStatus=absent",
        ))
        .unwrap();
        assert_eq!(absent.recording_status, RecordingStatus::Absent);
        assert!(
            RecordingCallback::parse(&form(
                "AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingStatus=completed"
            ))
            .is_err()
        );
        assert!(RecordingCallback::parse(&form("AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingStatus=completed&RecordingUrl=javascript:x")).is_err());
        assert!(RecordingCallback::parse(&form("AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingStatus=completed&RecordingUrl=https://x&RecordingChannels=300")).is_err());
    }

    #[test]
    fn forms_keep_repeats_in_order_and_refuse_huge_bodies() {
        let f = form("To=a&To=b&X=%E2%9C%93+y");
        assert_eq!(
            f.0,
            vec![
                ("To".into(), "a".into()),
                ("To".into(), "b".into()),
                ("X".into(), "✓ y".into())
            ]
        );
        assert_eq!(f.get("To"), Some("a"));
        assert!(Form::parse(&vec![b'a'; CALLBACK_BODY_LIMIT + 1]).is_err());
    }

    #[test]
    fn no_input_makes_the_parsers_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let sample = b"AccountSid=p&CallSid=c1&RecordingSid=r1&RecordingUrl=https%3A%2F%2Fx%2Fr&RecordingStatus=completed&RecordingDuration=12&CallStatus=completed&Timestamp=Sat%2C%2005%20Dec%202026%2006%3A00%3A09%20%2B0000&SequenceNumber=1&Direction=inbound&From=%2B1&To=%2B2";
        for _ in 0..5_000 {
            let mut bytes = sample.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            let form = Form::parse(&bytes).unwrap();
            let _ = VoiceRequest::parse(&form);
            let _ = StatusCallback::parse(&form);
            let _ = RecordingCallback::parse(&form);
        }
    }
}
