//! Telnyx's keyless stand-in (feature `local`): Call Control commands, dial and the Recordings API
//! with Telnyx's auth and shapes, refusing what Telnyx refuses (401 without the key, 422 for a
//! missing required field or an ended call), recording everything it was sent, and serving real WAV
//! recordings behind expiring download URLs, like Telnyx's presigned S3 links.
//!
//! Its webhook signing key is a fixed development key whose public half is the `local` stage's
//! default `TELNYX_PUBLIC_KEY`; the call simulation signs its events with [`TelnyxSandbox::sign`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::config::{SANDBOX_API_KEY, SANDBOX_PUBLIC_KEY_B64};
use super::wire::RecordingUrls;

/// The sandbox's signing seed: public on purpose, trusted only in the `local` stage.
pub const SANDBOX_SIGNING_SEED: [u8; 32] = *b"parley-local-telnyx-sandbox-key!";
/// Telnyx's recording links are presigned for 10 minutes.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(600);

/// A command as the sandbox received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    pub call_control_id: String,
    pub action: String,
    pub body: Value,
}

/// A call the sandbox knows: registered by the simulation (inbound) or dialled (outbound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCall {
    pub call_control_id: String,
    pub call_leg_id: String,
    pub call_session_id: String,
    pub connection_id: String,
    pub from: String,
    pub to: String,
    /// `incoming` or `outgoing`, as webhooks spell it.
    pub direction: String,
    pub client_state: Option<String>,
    pub webhook_url: Option<String>,
    pub answered: bool,
    pub ended: bool,
}

#[derive(Debug, Clone)]
struct SandboxRecording {
    call_control_id: String,
    call_leg_id: String,
    call_session_id: String,
    seconds: f64,
    deleted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    calls: HashMap<String, SandboxCall>,
    commands: Vec<ReceivedCommand>,
    dials: Vec<Value>,
    recordings: HashMap<String, SandboxRecording>,
    /// Download token → (recording id, format, expiry).
    tokens: HashMap<String, (String, &'static str, OffsetDateTime)>,
}

#[derive(Clone)]
pub struct TelnyxSandbox {
    inner: Arc<Mutex<Inner>>,
    api_key: String,
    /// The sandbox server's own base URL (`http://127.0.0.1:9010`), for download links.
    base_url: String,
    signing: Arc<SigningKey>,
    url_ttl: Duration,
}

impl std::fmt::Debug for TelnyxSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelnyxSandbox")
            .field("base_url", &self.base_url)
            .field("public_key", &self.public_key_b64())
            .finish()
    }
}

fn telnyx_error(status: StatusCode, code: &str, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "code": code, "title": title, "detail": detail }] })),
    )
        .into_response()
}

fn invalid(field: &str, detail: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "errors": [{
            "code": "10015", "title": "Invalid parameter", "detail": detail,
            "source": { "pointer": format!("/{field}") }
        }] })),
    )
        .into_response()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl TelnyxSandbox {
    /// `base_url` is where this sandbox is served (its download links point there).
    pub fn new(base_url: &str) -> TelnyxSandbox {
        let signing = SigningKey::from_bytes(&SANDBOX_SIGNING_SEED);
        debug_assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes()),
            SANDBOX_PUBLIC_KEY_B64
        );
        TelnyxSandbox {
            inner: Arc::default(),
            api_key: SANDBOX_API_KEY.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            signing: Arc::new(signing),
            url_ttl: DOWNLOAD_URL_TTL,
        }
    }

    /// Accepts only this key (tests use one of their own).
    pub fn with_api_key(mut self, key: &str) -> TelnyxSandbox {
        self.api_key = key.to_owned();
        self
    }

    /// How long download URLs live (tests shorten it to exercise expiry).
    pub fn with_url_ttl(mut self, ttl: Duration) -> TelnyxSandbox {
        self.url_ttl = ttl;
        self
    }

    pub fn routes(&self) -> Router {
        Router::new()
            .route("/v2/calls", post(dial))
            .route(
                "/v2/calls/{call_control_id}/actions/{action}",
                post(command),
            )
            .route(
                "/v2/recordings/{id}",
                get(get_recording).delete(delete_recording),
            )
            .route("/telnyx-sandbox/recordings/{token}", get(download))
            .with_state(self.clone())
    }

    pub fn public_key_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.signing.verifying_key().as_bytes())
    }

    /// `telnyx-signature-ed25519` for a body sent at `timestamp`: Ed25519 over `"{timestamp}|{body}"`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let mut message = format!("{timestamp}|").into_bytes();
        message.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(self.signing.sign(&message).to_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// A call arriving at `to` (inbound) as Telnyx would park it before `call.initiated`.
    pub fn register_call(&self, from: &str, to: &str, connection_id: &str) -> SandboxCall {
        let call = SandboxCall {
            call_control_id: format!("v3:{}", uuid::Uuid::new_v4().simple()),
            call_leg_id: new_id(),
            call_session_id: new_id(),
            connection_id: connection_id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            direction: "incoming".to_owned(),
            client_state: None,
            webhook_url: None,
            answered: false,
            ended: false,
        };
        self.lock()
            .calls
            .insert(call.call_control_id.clone(), call.clone());
        call
    }

    pub fn call(&self, call_control_id: &str) -> Option<SandboxCall> {
        self.lock().calls.get(call_control_id).cloned()
    }

    /// Ends a call from the far side (the caller hung up).
    pub fn end_call(&self, call_control_id: &str) {
        if let Some(c) = self.lock().calls.get_mut(call_control_id) {
            c.ended = true;
        }
    }

    /// Every command received, in order.
    pub fn commands(&self) -> Vec<ReceivedCommand> {
        self.lock().commands.clone()
    }

    /// Every call the sandbox knows (registered inbound or dialled), in no particular order.
    pub fn calls(&self) -> Vec<SandboxCall> {
        self.lock().calls.values().cloned().collect()
    }

    /// Every accepted dial body, in order.
    pub fn dials(&self) -> Vec<Value> {
        self.lock().dials.clone()
    }

    /// Saves a recording of `seconds` for a call; returns its id and fresh download URLs, as
    /// `call.recording.saved` would carry them.
    pub fn add_recording(
        &self,
        call_control_id: &str,
        seconds: f64,
    ) -> Option<(String, RecordingUrls)> {
        let id = new_id();
        {
            let mut inner = self.lock();
            let call = inner.calls.get(call_control_id)?.clone();
            inner.recordings.insert(
                id.clone(),
                SandboxRecording {
                    call_control_id: call.call_control_id,
                    call_leg_id: call.call_leg_id,
                    call_session_id: call.call_session_id,
                    seconds,
                    deleted: false,
                },
            );
        }
        let urls = self.fresh_urls(&id);
        Some((id, urls))
    }

    /// New download links for a recording, valid for the TTL.
    pub fn fresh_urls(&self, recording_id: &str) -> RecordingUrls {
        let expires = OffsetDateTime::now_utc() + self.url_ttl;
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.lock()
            .tokens
            .insert(token.clone(), (recording_id.to_owned(), "wav", expires));
        RecordingUrls {
            wav: Some(format!(
                "{}/telnyx-sandbox/recordings/{token}.wav",
                self.base_url
            )),
            mp3: None,
        }
    }

    /// Expires every download link issued so far (a worker that waited too long).
    pub fn expire_urls(&self) {
        let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        for (_, _, expiry) in self.lock().tokens.values_mut() {
            *expiry = past;
        }
    }

    pub fn recording_deleted(&self, recording_id: &str) -> Option<bool> {
        self.lock().recordings.get(recording_id).map(|r| r.deleted)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k == self.api_key)
    }
}

fn unauthorized() -> Response {
    telnyx_error(
        StatusCode::UNAUTHORIZED,
        "10009",
        "Authentication failed",
        "The API key looks malformed or is not valid.",
    )
}

/// The JSON object body every command carries, with its optional common fields checked.
fn json_body(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json && !body.is_empty() {
        return Err(Box::new(invalid(
            "",
            "Content-Type must be application/json",
        )));
    }
    let value: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|_| Box::new(invalid("", "The body is not valid JSON")))?
    };
    let Value::Object(map) = value else {
        return Err(Box::new(invalid("", "The body must be a JSON object")));
    };
    if let Some(state) = map.get("client_state") {
        let ok = state
            .as_str()
            .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
        if !ok {
            return Err(Box::new(invalid(
                "client_state",
                "client_state must be valid Base64",
            )));
        }
    }
    if let Some(id) = map.get("command_id")
        && !id.is_string()
    {
        return Err(Box::new(invalid(
            "command_id",
            "command_id must be a string",
        )));
    }
    Ok(map)
}

fn str_field<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    map.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn e164(n: &str) -> bool {
    super::client::valid_e164(n)
}

async fn command(
    State(sandbox): State<TelnyxSandbox>,
    Path((call_control_id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let map = match json_body(&headers, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let required: &[&str] = match action.as_str() {
        "answer" | "hangup" | "record_stop" => &[],
        "speak" => &["payload", "voice"],
        "record_start" => &["format", "channels"],
        "transfer" => &["to"],
        "reject" => &["cause"],
        _ => {
            return telnyx_error(
                StatusCode::NOT_FOUND,
                "10005",
                "Resource not found",
                "Unknown call action.",
            );
        }
    };
    for field in required {
        if str_field(&map, field).is_none() {
            return invalid(field, &format!("{field} is required"));
        }
    }
    let enum_ok =
        |field: &str, allowed: &[&str]| str_field(&map, field).is_none_or(|v| allowed.contains(&v));
    if !enum_ok("format", &["wav", "mp3"])
        || !enum_ok("channels", &["single", "dual"])
        || !enum_ok("cause", &["CALL_REJECTED", "USER_BUSY"])
        || !enum_ok("payload_type", &["text", "ssml"])
    {
        return invalid("", "A field has a value Telnyx does not accept");
    }
    if action == "speak" && str_field(&map, "payload").is_some_and(|p| p.chars().count() > 3000) {
        return invalid("payload", "payload must be at most 3000 characters");
    }
    if action == "transfer" {
        let to = str_field(&map, "to").unwrap_or_default();
        if !(e164(to) || to.starts_with("sip:")) {
            return invalid("to", "to must be E.164 or a SIP URI");
        }
    }
    let mut inner = sandbox.lock();
    let Some(call) = inner.calls.get_mut(&call_control_id) else {
        return telnyx_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "90018",
            "Call has already ended",
            "This call is no longer active and can't receive commands.",
        );
    };
    if call.ended {
        return telnyx_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "90018",
            "Call has already ended",
            "This call is no longer active and can't receive commands.",
        );
    }
    match action.as_str() {
        "answer" => call.answered = true,
        "hangup" | "reject" => call.ended = true,
        _ => {}
    }
    if let Some(state) = str_field(&map, "client_state") {
        call.client_state = Some(state.to_owned());
    }
    inner.commands.push(ReceivedCommand {
        call_control_id,
        action,
        body: Value::Object(map),
    });
    (StatusCode::OK, Json(json!({ "data": { "result": "ok" } }))).into_response()
}

async fn dial(State(sandbox): State<TelnyxSandbox>, headers: HeaderMap, body: Bytes) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let map = match json_body(&headers, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(connection_id) = str_field(&map, "connection_id") else {
        return invalid("connection_id", "connection_id is required");
    };
    let (Some(to), Some(from)) = (str_field(&map, "to"), str_field(&map, "from")) else {
        return invalid("to", "to and from are required");
    };
    if !e164(from) || !(e164(to) || to.starts_with("sip:")) {
        return invalid("to", "to and from must be E.164 numbers");
    }
    let call = SandboxCall {
        call_control_id: format!("v3:{}", uuid::Uuid::new_v4().simple()),
        call_leg_id: new_id(),
        call_session_id: new_id(),
        connection_id: connection_id.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        direction: "outgoing".to_owned(),
        client_state: str_field(&map, "client_state").map(str::to_owned),
        webhook_url: str_field(&map, "webhook_url").map(str::to_owned),
        answered: false,
        ended: false,
    };
    let mut inner = sandbox.lock();
    inner.dials.push(Value::Object(map));
    inner
        .calls
        .insert(call.call_control_id.clone(), call.clone());
    (
        StatusCode::OK,
        Json(json!({ "data": {
            "call_control_id": call.call_control_id,
            "call_leg_id": call.call_leg_id,
            "call_session_id": call.call_session_id,
            "client_state": call.client_state,
            "is_alive": false,
            "record_type": "call",
        } })),
    )
        .into_response()
}

fn recording_json(sandbox: &TelnyxSandbox, id: &str, r: &SandboxRecording) -> Value {
    json!({ "data": {
        "id": id,
        "record_type": "recording",
        "call_control_id": r.call_control_id,
        "call_leg_id": r.call_leg_id,
        "call_session_id": r.call_session_id,
        "channels": "single",
        "download_urls": sandbox.fresh_urls(id),
        "duration_millis": (r.seconds * 1000.0).round() as u64,
        "source": "call",
        "status": "completed",
    } })
}

async fn get_recording(
    State(sandbox): State<TelnyxSandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let found = sandbox
        .lock()
        .recordings
        .get(&id)
        .filter(|r| !r.deleted)
        .cloned();
    match found {
        Some(r) => (StatusCode::OK, Json(recording_json(&sandbox, &id, &r))).into_response(),
        None => telnyx_error(
            StatusCode::NOT_FOUND,
            "10005",
            "Resource not found",
            "The requested resource or URL could not be found.",
        ),
    }
}

async fn delete_recording(
    State(sandbox): State<TelnyxSandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let deleted = {
        let mut inner = sandbox.lock();
        match inner.recordings.get_mut(&id).filter(|r| !r.deleted) {
            Some(r) => {
                r.deleted = true;
                Some(r.clone())
            }
            None => None,
        }
    };
    match deleted {
        Some(r) => (StatusCode::OK, Json(recording_json(&sandbox, &id, &r))).into_response(),
        None => telnyx_error(
            StatusCode::NOT_FOUND,
            "10005",
            "Resource not found",
            "The requested resource or URL could not be found.",
        ),
    }
}

/// The presigned-link stand-in: 403 once expired (as S3 answers), the WAV otherwise.
async fn download(State(sandbox): State<TelnyxSandbox>, Path(token): Path<String>) -> Response {
    let token = token.strip_suffix(".wav").unwrap_or(&token).to_owned();
    let inner = sandbox.lock();
    let Some((id, _, expiry)) = inner.tokens.get(&token).cloned() else {
        return (StatusCode::FORBIDDEN, "AccessDenied").into_response();
    };
    if expiry < OffsetDateTime::now_utc() {
        return (StatusCode::FORBIDDEN, "AccessDenied: Request has expired").into_response();
    }
    let Some(recording) = inner.recordings.get(&id).filter(|r| !r.deleted).cloned() else {
        return (StatusCode::NOT_FOUND, "NoSuchKey").into_response();
    };
    drop(inner);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "audio/wav")],
        crate::platform::audio::tone_wav(recording.seconds, 8_000),
    )
        .into_response()
}
