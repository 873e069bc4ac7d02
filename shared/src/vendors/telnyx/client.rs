//! Telnyx Call Control v2 over [`VendorClient`]: call commands (`POST /calls/{id}/actions/<action>`),
//! dial (`POST /calls`) and the Recordings API, with `Authorization: Bearer <key>` and JSON bodies
//! (vendors.md §3, §10).
//!
//! A command carrying a `command_id` is idempotent at Telnyx (a repeat is ignored), so it is retried
//! even after a timeout; one without is retried only when Telnyx certainly did not act. "Call has
//! already ended" (error `90018`) is told apart, so a hangup of a finished call counts as done.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::platform::http_client::{Replay, VendorClient, VendorError, VendorMessage};

use super::config::TelnyxSettings;
use super::wire::{Channels, ClientState, Data, Dialed, Recording};

pub const VENDOR: &str = "Telnyx";
/// Telnyx's code for a command sent to a call that is over.
pub const CALL_ENDED_CODE: &str = "90018";
/// `speak`'s documented payload limit.
pub const SPEAK_PAYLOAD_LIMIT: usize = 3000;
const RESPONSE_LIMIT: usize = 256 * 1024;

/// `{"errors":[{"code":"90018","title":"…","detail":"…"}]}`: the first error's code and words.
pub fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let first = value["errors"].as_array()?.first()?;
    let code = match &first["code"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let title = first["title"].as_str().unwrap_or_default();
    let detail = first["detail"].as_str().unwrap_or_default();
    let message = match (title.is_empty(), detail.is_empty()) {
        (false, false) if title != detail => format!("{title}: {detail}"),
        (false, _) => title.to_owned(),
        (true, false) => detail.to_owned(),
        (true, true) => {
            return code.map(|c| VendorMessage {
                code: Some(c.clone()),
                message: format!("error {c}"),
            });
        }
    };
    Some(VendorMessage { code, message })
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TelnyxError {
    /// Refused before sending: an id or a field Telnyx would reject. Nothing was sent.
    #[error("not sent to Telnyx: {0}")]
    Invalid(String),
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

impl TelnyxError {
    /// The call is over, so the command has nothing to act on (harmless for a hangup).
    pub fn call_has_ended(&self) -> bool {
        match self {
            TelnyxError::Vendor(e @ VendorError::Status { status, .. }) => {
                e.code() == Some(CALL_ENDED_CODE)
                    || (*status == 422 && {
                        let m = e.to_string().to_ascii_lowercase();
                        m.contains("already ended") || m.contains("no longer active")
                    })
            }
            _ => false,
        }
    }

    /// Worth another try later (throttling, 5xx, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            TelnyxError::Invalid(_) => false,
            TelnyxError::Vendor(e) => e.is_transient(),
        }
    }

    pub fn certainly_not_processed(&self) -> bool {
        match self {
            TelnyxError::Invalid(_) => true,
            TelnyxError::Vendor(e) => e.certainly_not_processed(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            TelnyxError::Vendor(e) => e.status(),
            TelnyxError::Invalid(_) => None,
        }
    }
}

/// What every command may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Telnyx ignores a repeat of the same id on the same call; derive it from Parley's call id and
    /// the action so a retried send is never acted on twice.
    pub command_id: Option<String>,
    pub client_state: Option<ClientState>,
}

/// `record_start`'s `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    Wav,
    Mp3,
}

/// The call actions Parley sends, with the fields each requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Answer,
    /// `payload` is text (≤ 3000 characters); `voice` is required by Telnyx.
    Speak {
        payload: String,
        voice: String,
        language: Option<String>,
    },
    RecordStart {
        format: RecordingFormat,
        channels: Channels,
        /// Seconds, 0–14400 (0 = no limit).
        max_length: Option<u32>,
        play_beep: Option<bool>,
    },
    /// `from` defaults at Telnyx to the original call's `to`.
    Transfer {
        to: String,
        from: Option<String>,
        timeout_secs: Option<u32>,
    },
    Hangup,
    Reject {
        cause: RejectCause,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCause {
    CallRejected,
    UserBusy,
}

impl Action {
    /// The path segment after `/actions/`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Answer => "answer",
            Action::Speak { .. } => "speak",
            Action::RecordStart { .. } => "record_start",
            Action::Transfer { .. } => "transfer",
            Action::Hangup => "hangup",
            Action::Reject { .. } => "reject",
        }
    }

    /// The action's own fields, validated the way Telnyx validates them.
    pub fn body(&self) -> Result<Map<String, Value>, TelnyxError> {
        let mut body = Map::new();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        match self {
            Action::Answer | Action::Hangup => {}
            Action::Speak {
                payload,
                voice,
                language,
            } => {
                let n = payload.chars().count();
                if n == 0 || n > SPEAK_PAYLOAD_LIMIT {
                    return Err(TelnyxError::Invalid(format!(
                        "speak payload must be 1–{SPEAK_PAYLOAD_LIMIT} characters; got {n}"
                    )));
                }
                if voice.trim().is_empty() {
                    return Err(TelnyxError::Invalid("speak needs a voice".into()));
                }
                put("payload", Value::from(payload.as_str()));
                put("payload_type", Value::from("text"));
                put("voice", Value::from(voice.as_str()));
                if let Some(l) = language {
                    put("language", Value::from(l.as_str()));
                }
            }
            Action::RecordStart {
                format,
                channels,
                max_length,
                play_beep,
            } => {
                put("format", serde_json::to_value(format).expect("an enum"));
                put("channels", serde_json::to_value(channels).expect("an enum"));
                if let Some(m) = max_length {
                    if *m > 14_400 {
                        return Err(TelnyxError::Invalid(format!(
                            "record_start max_length must be 0–14400 seconds; got {m}"
                        )));
                    }
                    put("max_length", Value::from(*m));
                }
                if let Some(b) = play_beep {
                    put("play_beep", Value::from(*b));
                }
            }
            Action::Transfer {
                to,
                from,
                timeout_secs,
            } => {
                if !valid_destination(to) {
                    return Err(TelnyxError::Invalid(
                        "transfer needs an E.164 number or a sip: URI in `to`".into(),
                    ));
                }
                put("to", Value::from(to.as_str()));
                if let Some(f) = from {
                    if !valid_e164(f) {
                        return Err(TelnyxError::Invalid("transfer `from` must be E.164".into()));
                    }
                    put("from", Value::from(f.as_str()));
                }
                if let Some(t) = timeout_secs {
                    if !(5..=600).contains(t) {
                        return Err(TelnyxError::Invalid(
                            "transfer timeout_secs must be 5–600".into(),
                        ));
                    }
                    put("timeout_secs", Value::from(*t));
                }
            }
            Action::Reject { cause } => put(
                "cause",
                Value::from(match cause {
                    RejectCause::CallRejected => "CALL_REJECTED",
                    RejectCause::UserBusy => "USER_BUSY",
                }),
            ),
        }
        Ok(body)
    }
}

/// `+` and 2–15 digits, the first not 0.
pub fn valid_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn valid_destination(to: &str) -> bool {
    valid_e164(to)
        || (to.starts_with("sip:")
            && to.len() <= 256
            && !to.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Telnyx ids (`v3:…` call control ids, UUIDs) are URL-safe; anything else would change the path.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b'='))
}

/// How a hangup (or another end-of-call command) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Done,
    /// The call was over already; nothing to do.
    AlreadyEnded,
}

/// How a deletion went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Done,
    AlreadyGone,
}

/// `POST /calls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialRequest {
    /// The Call Control application (connection) id.
    pub connection_id: String,
    pub to: String,
    pub from: String,
    /// Set on the dial itself: `call.initiated` can arrive before the caller stored the ids.
    pub client_state: Option<ClientState>,
    pub command_id: Option<String>,
    pub webhook_url: Option<String>,
    /// 5–600 s of ringing before `call.hangup` with `timeout`.
    pub timeout_secs: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Telnyx {
    client: VendorClient,
    base_url: String,
}

impl Telnyx {
    pub fn new(
        settings: &TelnyxSettings,
        http: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Telnyx {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| secrecy::SecretString::from(""));
        Telnyx {
            client: VendorClient::new(VENDOR, http, timeout, key, parse_error),
            base_url: settings.base_url.clone(),
        }
    }

    /// With a retry policy of its own (tests use a single attempt).
    pub fn with_client(client: VendorClient, base_url: &str) -> Telnyx {
        Telnyx {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    async fn post(
        &self,
        url: &str,
        body: &Map<String, Value>,
        replay: Replay,
        deadline_ms: u64,
    ) -> Result<reqwest::Response, TelnyxError> {
        Ok(self
            .client
            .send(
                |http| {
                    http.post(url)
                        .bearer_auth(self.client.key())
                        .header("accept", "application/json")
                        .json(body)
                },
                replay,
                deadline_ms,
            )
            .await?)
    }

    /// `POST {base}/calls/{call_control_id}/actions/{action}` with the action's fields plus
    /// `command_id` and `client_state` when given. Answers `{"data":{"result":"ok"}}`.
    pub async fn command(
        &self,
        call_control_id: &str,
        action: &Action,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<(), TelnyxError> {
        if !valid_id(call_control_id) {
            return Err(TelnyxError::Invalid(
                "a call_control_id with unexpected characters".into(),
            ));
        }
        let mut body = action.body()?;
        add_options(&mut body, options)?;
        let url = format!(
            "{}/calls/{call_control_id}/actions/{}",
            self.base_url,
            action.name()
        );
        let replay = if options.command_id.is_some() {
            Replay::Safe
        } else {
            Replay::OnlyIfRefused
        };
        let response = self.post(&url, &body, replay, deadline_ms).await?;
        // The result is informative only; a 2xx means Telnyx accepted the command.
        let _ = self.client.body(response, RESPONSE_LIMIT).await?;
        Ok(())
    }

    pub async fn answer(
        &self,
        call_control_id: &str,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<(), TelnyxError> {
        self.command(call_control_id, &Action::Answer, options, deadline_ms)
            .await
    }

    pub async fn speak(
        &self,
        call_control_id: &str,
        payload: &str,
        voice: &str,
        language: Option<&str>,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<(), TelnyxError> {
        let action = Action::Speak {
            payload: payload.to_owned(),
            voice: voice.to_owned(),
            language: language.map(str::to_owned),
        };
        self.command(call_control_id, &action, options, deadline_ms)
            .await
    }

    /// Dual-channel WAV, as Parley records calls.
    pub async fn record_start(
        &self,
        call_control_id: &str,
        max_length: Option<u32>,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<(), TelnyxError> {
        let action = Action::RecordStart {
            format: RecordingFormat::Wav,
            channels: Channels::Dual,
            max_length,
            play_beep: None,
        };
        self.command(call_control_id, &action, options, deadline_ms)
            .await
    }

    pub async fn transfer(
        &self,
        call_control_id: &str,
        to: &str,
        from: Option<&str>,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<(), TelnyxError> {
        let action = Action::Transfer {
            to: to.to_owned(),
            from: from.map(str::to_owned),
            timeout_secs: None,
        };
        self.command(call_control_id, &action, options, deadline_ms)
            .await
    }

    /// A hangup of a call that is already over is not an error.
    pub async fn hangup(
        &self,
        call_control_id: &str,
        options: &CommandOptions,
        deadline_ms: u64,
    ) -> Result<Ended, TelnyxError> {
        match self
            .command(call_control_id, &Action::Hangup, options, deadline_ms)
            .await
        {
            Ok(()) => Ok(Ended::Done),
            Err(e) if e.call_has_ended() => Ok(Ended::AlreadyEnded),
            Err(e) => Err(e),
        }
    }

    /// `POST {base}/calls`: places an outbound call and returns its ids.
    pub async fn dial(
        &self,
        request: &DialRequest,
        deadline_ms: u64,
    ) -> Result<Dialed, TelnyxError> {
        if request.connection_id.trim().is_empty() || !valid_id(&request.connection_id) {
            return Err(TelnyxError::Invalid("dial needs a connection_id".into()));
        }
        if !valid_destination(&request.to) || !valid_e164(&request.from) {
            return Err(TelnyxError::Invalid(
                "dial needs an E.164 `from` and an E.164 or sip: `to`".into(),
            ));
        }
        let mut body = Map::new();
        body.insert(
            "connection_id".into(),
            Value::from(request.connection_id.as_str()),
        );
        body.insert("to".into(), Value::from(request.to.as_str()));
        body.insert("from".into(), Value::from(request.from.as_str()));
        if let Some(url) = &request.webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(TelnyxError::Invalid(
                    "webhook_url must be an http(s) URL".into(),
                ));
            }
            body.insert("webhook_url".into(), Value::from(url.as_str()));
            body.insert("webhook_url_method".into(), Value::from("POST"));
        }
        if let Some(t) = request.timeout_secs {
            if !(5..=600).contains(&t) {
                return Err(TelnyxError::Invalid(
                    "dial timeout_secs must be 5–600".into(),
                ));
            }
            body.insert("timeout_secs".into(), Value::from(t));
        }
        add_options(
            &mut body,
            &CommandOptions {
                command_id: request.command_id.clone(),
                client_state: request.client_state.clone(),
            },
        )?;
        let url = format!("{}/calls", self.base_url);
        // A dial is billable: repeated after a timeout only when Telnyx dedupes it by command_id.
        let replay = if request.command_id.is_some() {
            Replay::Safe
        } else {
            Replay::OnlyIfRefused
        };
        let response = self.post(&url, &body, replay, deadline_ms).await?;
        let dialed: Data<Dialed> = self.client.json(response, RESPONSE_LIMIT).await?;
        let d = dialed.data;
        for (name, id) in [
            ("call_control_id", &d.call_control_id),
            ("call_leg_id", &d.call_leg_id),
            ("call_session_id", &d.call_session_id),
        ] {
            if !valid_id(id) {
                return Err(VendorError::InvalidResponse {
                    vendor: VENDOR,
                    reason: format!("data.{name} is empty or malformed"),
                }
                .into());
            }
        }
        Ok(d)
    }

    /// `GET {base}/recordings/{id}`: the recording with fresh `download_urls`.
    pub async fn recording(
        &self,
        recording_id: &str,
        deadline_ms: u64,
    ) -> Result<Recording, TelnyxError> {
        if !valid_id(recording_id) {
            return Err(TelnyxError::Invalid(
                "a recording id with unexpected characters".into(),
            ));
        }
        let url = format!("{}/recordings/{recording_id}", self.base_url);
        let response = self
            .client
            .send(
                |http| {
                    http.get(&url)
                        .bearer_auth(self.client.key())
                        .header("accept", "application/json")
                },
                Replay::Safe,
                deadline_ms,
            )
            .await?;
        let recording: Data<Recording> = self.client.json(response, RESPONSE_LIMIT).await?;
        if recording.data.download_urls.is_empty() {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "data.download_urls has no wav or mp3 URL".into(),
            }
            .into());
        }
        Ok(recording.data)
    }

    /// `DELETE {base}/recordings/{id}`: permanent; a recording already gone (404) counts as deleted.
    pub async fn delete_recording(
        &self,
        recording_id: &str,
        deadline_ms: u64,
    ) -> Result<Deleted, TelnyxError> {
        if !valid_id(recording_id) {
            return Err(TelnyxError::Invalid(
                "a recording id with unexpected characters".into(),
            ));
        }
        let url = format!("{}/recordings/{recording_id}", self.base_url);
        let sent = self
            .client
            .send(
                |http| {
                    http.delete(&url)
                        .bearer_auth(self.client.key())
                        .header("accept", "application/json")
                },
                Replay::Safe,
                deadline_ms,
            )
            .await;
        match sent {
            Ok(response) => {
                let _ = self.client.body(response, RESPONSE_LIMIT).await?;
                Ok(Deleted::Done)
            }
            Err(e) if e.status() == Some(404) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }
}

fn add_options(body: &mut Map<String, Value>, options: &CommandOptions) -> Result<(), TelnyxError> {
    if let Some(id) = &options.command_id {
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
            return Err(TelnyxError::Invalid(
                "command_id must be 1–256 printable characters".into(),
            ));
        }
        body.insert("command_id".into(), Value::from(id.as_str()));
    }
    if let Some(state) = &options.client_state {
        body.insert("client_state".into(), Value::from(state.as_str()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_from_the_telnyx_envelope() {
        let m = parse_error(br#"{"errors":[{"code":"90018","title":"Call has already ended","detail":"This call is no longer active and can't receive commands.","source":{"pointer":"/call_control_id"}}]}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("90018"));
        assert!(m.message.starts_with("Call has already ended: This call"));
        let n = parse_error(br#"{"errors":[{"code":10009,"detail":"Authentication failed"}]}"#)
            .unwrap();
        assert_eq!(
            (n.code.as_deref(), n.message.as_str()),
            (Some("10009"), "Authentication failed")
        );
        assert!(parse_error(b"<html>").is_none());
        assert!(parse_error(br#"{"errors":[]}"#).is_none());
    }

    #[test]
    fn call_ended_is_told_apart_from_other_refusals() {
        let status = |s: u16, code: Option<&str>, message: &str| {
            TelnyxError::Vendor(VendorError::Status {
                vendor: VENDOR,
                status: s,
                code: code.map(str::to_owned),
                message: message.to_owned(),
            })
        };
        assert!(status(422, Some("90018"), "Call has already ended").call_has_ended());
        assert!(status(404, Some("90018"), "x").call_has_ended());
        assert!(status(422, None, "This call is no longer active").call_has_ended());
        assert!(!status(422, Some("10015"), "Invalid value for voice").call_has_ended());
        assert!(!status(500, None, "oops").call_has_ended());
        assert!(status(500, None, "oops").is_transient());
        assert!(!status(422, Some("90018"), "x").is_transient());
        assert!(TelnyxError::Invalid("x".into()).certainly_not_processed());
    }

    #[test]
    fn action_bodies_have_the_documented_fields_and_limits() {
        let speak = Action::Speak {
            payload: "Hello".into(),
            voice: "AWS.Polly.Joanna-Neural".into(),
            language: Some("en-US".into()),
        };
        assert_eq!(
            Value::Object(speak.body().unwrap()),
            serde_json::json!({"payload":"Hello","payload_type":"text","voice":"AWS.Polly.Joanna-Neural","language":"en-US"})
        );
        let rec = Action::RecordStart {
            format: RecordingFormat::Wav,
            channels: Channels::Dual,
            max_length: Some(3600),
            play_beep: Some(false),
        };
        assert_eq!(
            Value::Object(rec.body().unwrap()),
            serde_json::json!({"format":"wav","channels":"dual","max_length":3600,"play_beep":false})
        );
        assert!(
            Action::Speak {
                payload: "x".repeat(3001),
                voice: "female".into(),
                language: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::Speak {
                payload: "".into(),
                voice: "female".into(),
                language: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::Speak {
                payload: "hi".into(),
                voice: " ".into(),
                language: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::RecordStart {
                format: RecordingFormat::Mp3,
                channels: Channels::Single,
                max_length: Some(14_401),
                play_beep: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::Transfer {
                to: "12345".into(),
                from: None,
                timeout_secs: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::Transfer {
                to: "+15551234567".into(),
                from: Some("nope".into()),
                timeout_secs: None
            }
            .body()
            .is_err()
        );
        assert!(
            Action::Transfer {
                to: "sip:agent@example.com".into(),
                from: None,
                timeout_secs: Some(30)
            }
            .body()
            .is_ok()
        );
        assert_eq!(
            Value::Object(
                Action::Reject {
                    cause: RejectCause::UserBusy
                }
                .body()
                .unwrap()
            ),
            serde_json::json!({"cause":"USER_BUSY"})
        );
        assert!(Action::Answer.body().unwrap().is_empty());
        assert_eq!(
            Action::RecordStart {
                format: RecordingFormat::Wav,
                channels: Channels::Dual,
                max_length: None,
                play_beep: None
            }
            .name(),
            "record_start"
        );
    }

    #[test]
    fn numbers_and_ids_are_checked() {
        assert!(valid_e164("+15551234567"));
        assert!(
            !valid_e164("15551234567")
                && !valid_e164("+0555")
                && !valid_e164("+1234567890123456")
                && !valid_e164("+1 555")
        );
        assert!(valid_id(
            "v3:e-31OnvjEM7Y4wvxr3TKNk8M3QyLcGZPiUIzCGtwQtOtEjY-B0urkw"
        ));
        assert!(!valid_id("../../x") && !valid_id("a b") && !valid_id("") && !valid_id("a?b"));
    }
}
