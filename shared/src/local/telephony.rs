//! Whole calls played against the local stack (feature `local`): the telephony sandboxes' far side.
//! A real vendor sends signed webhooks as a call progresses and reacts to the commands it gets;
//! this does the same with the sandboxes' keys, so `cargo xtask call` (inbound) and
//! `POST /api/calls` (outbound) run end to end with no account.
//!
//! Telnyx: `call.initiated` → waits for `answer` → `call.answered` → (the commands Parley sends)
//! → `call.hangup` → `call.recording.saved` when `record_start` was sent. SignalWire: the voice
//! request → the cXML answer → status callbacks → the recording callback when the document
//! records, then the `action` request a `<Record>`/`<Dial>` makes when it ends.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use quick_xml::events::Event;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::vendors::signalwire::config::SANDBOX_SIGNING_KEY;
use crate::vendors::signalwire::sandbox::{SandboxCall as SwCall, SignalWireSandbox};
use crate::vendors::signalwire::signature as sw_signature;
use crate::vendors::telnyx::sandbox::{SandboxCall as TxCall, TelnyxSandbox};

/// The connection id inbound sandbox calls arrive on.
pub const SANDBOX_CONNECTION_ID: &str = "1494404757140276705";
/// How long the far end of an outbound sandbox call talks before hanging up.
pub const OUTBOUND_SECONDS: f64 = 3.0;
/// How long to wait for Parley to answer or command before giving up on a step.
const COMMAND_WAIT: Duration = Duration::from_secs(20);
/// How long an answered call waits for Parley's first command (greeting, recording, transfer).
const COMMAND_GRACE: Duration = Duration::from_secs(10);

/// `POST /_sandbox/calls`: play one inbound call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPlan {
    pub provider: String,
    pub from: String,
    pub to: String,
    #[serde(default = "default_seconds")]
    pub seconds: f64,
}

fn default_seconds() -> f64 {
    5.0
}

/// What a played call did, step by step, for the person running it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Played {
    pub provider: String,
    pub vendor_call_id: String,
    pub steps: Vec<String>,
    pub recorded: bool,
}

#[derive(Clone)]
pub struct Simulator {
    telnyx: TelnyxSandbox,
    signalwire: SignalWireSandbox,
    http: reqwest::Client,
    /// Parley's public base URL; set once the API is up ([`Simulator::attach`]).
    parley: Arc<OnceLock<String>>,
    seen: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("parley", &self.parley.get())
            .finish()
    }
}

impl Simulator {
    pub fn new(telnyx: TelnyxSandbox, signalwire: SignalWireSandbox) -> Simulator {
        Simulator {
            telnyx,
            signalwire,
            http: crate::platform::http_client::http_client(Duration::from_secs(60)),
            parley: Arc::new(OnceLock::new()),
            seen: Arc::default(),
        }
    }

    /// Points the simulator at Parley and starts answering the calls Parley dials.
    pub fn attach(&self, parley_base_url: &str) {
        if self
            .parley
            .set(parley_base_url.trim_end_matches('/').to_owned())
            .is_ok()
        {
            let me = self.clone();
            tokio::spawn(async move { me.watch_outbound().await });
        }
    }

    /// The control route `cargo xtask call` uses.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/_sandbox/calls", post(play_route))
            .with_state(self.clone())
    }

    fn parley(&self) -> Result<&str, String> {
        self.parley
            .get()
            .map(String::as_str)
            .ok_or_else(|| "the sandbox is not attached to a running API yet".to_owned())
    }

    /// Plays one inbound call to `plan.to`.
    pub async fn inbound(&self, plan: &CallPlan) -> Result<Played, String> {
        if !(0.5..=600.0).contains(&plan.seconds) {
            return Err("seconds must be from 0.5 to 600".into());
        }
        match plan.provider.as_str() {
            "telnyx" => {
                let call = self
                    .telnyx
                    .register_call(&plan.from, &plan.to, SANDBOX_CONNECTION_ID);
                self.play_telnyx(call, plan.seconds).await
            }
            "signalwire" => {
                let call = self.signalwire.register_call(&plan.from, &plan.to);
                self.play_signalwire(call, plan.seconds).await
            }
            other => Err(format!(
                "provider must be telnyx or signalwire, not {other:?}"
            )),
        }
    }

    async fn watch_outbound(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for call in self.telnyx.calls() {
                if call.direction == "outgoing" && self.first_sight(&call.call_control_id) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let played = me.play_telnyx(call, OUTBOUND_SECONDS).await;
                        report(played);
                    });
                }
            }
            for call in self.signalwire.calls() {
                if call.direction == "outbound-api" && self.first_sight(&call.sid) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let played = me.play_signalwire(call, OUTBOUND_SECONDS).await;
                        report(played);
                    });
                }
            }
        }
    }

    fn first_sight(&self, id: &str) -> bool {
        self.seen
            .lock()
            .expect("not poisoned")
            .insert(id.to_owned())
    }

    // ----------------------------------------------------------------------------------- Telnyx

    async fn telnyx_event(
        &self,
        event_type: &str,
        payload: Value,
        played: &mut Played,
    ) -> Result<(), String> {
        let url = format!("{}/webhooks/telnyx", self.parley()?);
        let body = json!({
            "data": {
                "record_type": "event",
                "event_type": event_type,
                "id": uuid::Uuid::new_v4(),
                "occurred_at": now(),
                "payload": payload,
            },
            "meta": { "attempt": 1, "delivered_to": url },
        })
        .to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = self.telnyx.sign(timestamp, body.as_bytes());
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("telnyx-timestamp", timestamp.to_string())
            .header("telnyx-signature-ed25519", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{event_type}: {e}"))?;
        played
            .steps
            .push(format!("{event_type} → {}", response.status().as_u16()));
        if !response.status().is_success() {
            return Err(format!(
                "Parley answered {} to {event_type}",
                response.status()
            ));
        }
        Ok(())
    }

    /// Waits until Parley sent `action` for the leg; `None` when it never did.
    async fn telnyx_command(
        &self,
        control_id: &str,
        action: &str,
        wait: Duration,
    ) -> Option<Value> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(c) = self
                .telnyx
                .commands()
                .into_iter()
                .find(|c| c.call_control_id == control_id && c.action == action)
            {
                return Some(c.body);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn play_telnyx(&self, call: TxCall, seconds: f64) -> Result<Played, String> {
        let mut played = Played {
            provider: "telnyx".into(),
            vendor_call_id: call.call_control_id.clone(),
            ..Played::default()
        };
        let leg = |state: &Option<String>| {
            json!({
                "call_control_id": call.call_control_id,
                "call_leg_id": call.call_leg_id,
                "call_session_id": call.call_session_id,
                "connection_id": call.connection_id,
                "client_state": state,
                "from": call.from,
                "to": call.to,
                "direction": call.direction,
            })
        };
        let mut state = call.client_state.clone();
        let mut initiated = leg(&state);
        initiated["state"] = json!(if call.direction == "incoming" {
            "parked"
        } else {
            "bridging"
        });
        initiated["start_time"] = json!(now());
        self.telnyx_event("call.initiated", initiated, &mut played)
            .await?;
        if call.direction == "incoming" {
            tokio::select! {
                answer = self.telnyx_command(&call.call_control_id, "answer", COMMAND_WAIT) => {
                    let Some(answer) = answer else {
                        played.steps.push("never answered".into());
                        return Ok(played);
                    };
                    state = answer["client_state"].as_str().map(str::to_owned);
                    played.steps.push("answer ←".into());
                }
                Some(_) = self.telnyx_command(&call.call_control_id, "reject", COMMAND_WAIT) => {
                    played.steps.push("reject ← (nobody owns the number)".into());
                    return Ok(played);
                }
            }
        }
        let mut answered = leg(&state);
        answered["start_time"] = json!(now());
        self.telnyx_event("call.answered", answered, &mut played)
            .await?;
        // The call talks for `seconds`, unless Parley hangs it up first. Its commands follow the
        // answer as soon as the worker runs, which locally waits on the queue pump: the caller
        // stays on until the first one arrives (or COMMAND_GRACE passes, for a number that asks
        // for nothing), as a person would still be talking.
        let answered_at = tokio::time::Instant::now();
        let until = answered_at + Duration::from_secs_f64(seconds);
        let commands = |sandbox: &TelnyxSandbox| -> Vec<String> {
            sandbox
                .commands()
                .into_iter()
                .filter(|c| c.call_control_id == call.call_control_id && c.action != "answer")
                .map(|c| c.action)
                .collect()
        };
        let mut source = "caller";
        loop {
            if self
                .telnyx
                .call(&call.call_control_id)
                .is_some_and(|c| c.ended)
            {
                source = "callee";
                played.steps.push("hangup ←".into());
                break;
            }
            let now = tokio::time::Instant::now();
            let heard = !commands(&self.telnyx).is_empty();
            if now >= until && (heard || now >= answered_at + COMMAND_GRACE) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let commands = commands(&self.telnyx);
        for c in &commands {
            played.steps.push(format!("{c} ←"));
        }
        let recording = commands.iter().any(|c| c == "record_start");
        self.telnyx.end_call(&call.call_control_id);
        let mut hangup = leg(&state);
        hangup["hangup_cause"] = json!("normal_clearing");
        hangup["hangup_source"] = json!(source);
        hangup["end_time"] = json!(now());
        self.telnyx_event("call.hangup", hangup, &mut played)
            .await?;
        if recording {
            let (id, urls) = self
                .telnyx
                .add_recording(&call.call_control_id, seconds)
                .ok_or("the sandbox lost the call")?;
            let mut saved = leg(&state);
            saved["recording_id"] = json!(id);
            saved["channels"] = json!("dual");
            saved["format"] = json!("wav");
            saved["recording_urls"] = json!({ "wav": urls.wav, "mp3": urls.mp3 });
            saved["public_recording_urls"] = json!({});
            let ended = OffsetDateTime::now_utc();
            let started = ended - time::Duration::seconds_f64(seconds);
            saved["recording_started_at"] = json!(started.format(&Rfc3339).unwrap_or_default());
            saved["recording_ended_at"] = json!(ended.format(&Rfc3339).unwrap_or_default());
            self.telnyx_event("call.recording.saved", saved, &mut played)
                .await?;
            played.recorded = true;
        }
        Ok(played)
    }

    // ------------------------------------------------------------------------------- SignalWire

    /// Posts a signed form to `url`, as SignalWire does; returns the answer's body.
    async fn signalwire_post(
        &self,
        url: &str,
        form: &[(&str, String)],
        played: &mut Played,
        label: &str,
    ) -> Result<String, String> {
        let key = SecretString::from(SANDBOX_SIGNING_KEY);
        let signature = sw_signature::sign_form(&key, url, form);
        let body = form
            .iter()
            .fold(
                form_urlencoded::Serializer::new(String::new()),
                |mut s, (k, v)| {
                    s.append_pair(k, v);
                    s
                },
            )
            .finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-signalwire-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        let status = response.status();
        played.steps.push(format!("{label} → {}", status.as_u16()));
        let text = response.text().await.map_err(|e| format!("{label}: {e}"))?;
        if !status.is_success() {
            return Err(format!("Parley answered {status} to {label}: {text}"));
        }
        Ok(text)
    }

    async fn play_signalwire(&self, call: SwCall, seconds: f64) -> Result<Played, String> {
        let parley = self.parley()?.to_owned();
        let mut played = Played {
            provider: "signalwire".into(),
            vendor_call_id: call.sid.clone(),
            ..Played::default()
        };
        let outbound = call.direction == "outbound-api";
        let project = self.signalwire.project_id().to_owned();
        let base = |status: &str| {
            vec![
                ("AccountSid", project.clone()),
                ("ApiVersion", "2010-04-01".to_owned()),
                ("CallSid", call.sid.clone()),
                ("CallStatus", status.to_owned()),
                ("Direction", call.direction.clone()),
                ("From", call.from.clone()),
                ("To", call.to.clone()),
            ]
        };
        // Inbound calls use the number's configured URLs; placed calls the ones Parley gave.
        let voice_url = call
            .url
            .clone()
            .unwrap_or_else(|| format!("{parley}/webhooks/signalwire/voice"));
        let status_url = call
            .status_callback
            .clone()
            .unwrap_or_else(|| format!("{parley}/webhooks/signalwire/status"));
        if outbound {
            self.signalwire_post(&status_url, &base("ringing"), &mut played, "status ringing")
                .await?;
        }
        let status = if outbound { "in-progress" } else { "ringing" };
        let document = self
            .signalwire_post(&voice_url, &base(status), &mut played, "voice")
            .await?;
        let verbs = verbs(&document)?;
        played.steps.push(format!(
            "cXML ← {}",
            verbs
                .iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if verbs.iter().any(|(v, _)| v == "Reject") {
            self.signalwire.set_status(&call.sid, "canceled");
            return Ok(played);
        }
        self.signalwire.set_status(&call.sid, "in-progress");
        if !outbound {
            self.signalwire_post(
                &status_url,
                &base("in-progress"),
                &mut played,
                "status in-progress",
            )
            .await?;
        }
        let recorder = verbs.iter().find(|(v, a)| {
            v == "Record"
                || (v == "Dial"
                    && a.get("record")
                        .is_some_and(|r| r.starts_with("record-from")))
        });
        let until = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
        while tokio::time::Instant::now() < until {
            if self
                .signalwire
                .call(&call.sid)
                .is_some_and(|c| c.status == "completed" || c.status == "canceled")
            {
                played.steps.push("hangup ←".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some((verb, attrs)) = recorder {
            let (recording_sid, recording_url) = self.signalwire.add_recording(&call.sid, seconds);
            if let Some(callback) = attrs.get("recordingStatusCallback") {
                let channels = if verb == "Dial" { "2" } else { "1" };
                let form = vec![
                    ("AccountSid", project.clone()),
                    ("CallSid", call.sid.clone()),
                    ("RecordingSid", recording_sid),
                    ("RecordingUrl", recording_url),
                    ("RecordingStatus", "completed".to_owned()),
                    ("RecordingDuration", format!("{}", seconds.round() as u64)),
                    ("RecordingChannels", channels.to_owned()),
                    ("RecordingSource", format!("{verb}Verb")),
                ];
                self.signalwire_post(callback, &form, &mut played, "recording completed")
                    .await?;
                played.recorded = true;
            }
            if let Some(action) = attrs.get("action") {
                self.signalwire_post(action, &base("completed"), &mut played, "action")
                    .await?;
            }
        }
        self.signalwire.set_status(&call.sid, "completed");
        let mut completed = base("completed");
        completed.push(("CallDuration", format!("{}", seconds.round() as u64)));
        self.signalwire_post(&status_url, &completed, &mut played, "status completed")
            .await?;
        Ok(played)
    }
}

/// A cXML verb and its attributes.
type Verb = (String, BTreeMap<String, String>);

/// The top-level verbs of a cXML document and their attributes.
fn verbs(document: &str) -> Result<Vec<Verb>, String> {
    let mut reader = quick_xml::Reader::from_str(document);
    let mut depth = 0usize;
    let mut found = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the cXML answer does not parse: {e}"))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        if let Some(e) = start {
            if depth == 1 {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let mut attrs = BTreeMap::new();
                for a in e.attributes().flatten() {
                    let value = a
                        .unescape_value()
                        .map_err(|e| format!("a cXML attribute does not parse: {e}"))?;
                    attrs.insert(
                        String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                        value.into_owned(),
                    );
                }
                found.push((name, attrs));
            }
            if !empty {
                depth += 1;
            }
        }
    }
    Ok(found)
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn report(played: Result<Played, String>) {
    match played {
        Ok(p) => eprintln!(
            "sandbox: {} call {}: {}",
            p.provider,
            p.vendor_call_id,
            p.steps.join(" · ")
        ),
        Err(e) => eprintln!("sandbox: outbound call failed: {e}"),
    }
}

async fn play_route(State(simulator): State<Simulator>, Json(plan): Json<CallPlan>) -> Response {
    match simulator.inbound(&plan).await {
        Ok(played) => Json(played).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_verbs_of_a_document() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi &amp; bye</Say><Record maxLength="60" action="https://x.test/a?after=1" recordingStatusCallback="https://x.test/r"/><Hangup/></Response>"#;
        let v = verbs(doc).unwrap();
        let names: Vec<_> = v.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Say", "Record", "Hangup"]);
        assert_eq!(v[1].1["recordingStatusCallback"], "https://x.test/r");
    }
}
