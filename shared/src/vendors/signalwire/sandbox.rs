//! SignalWire's keyless stand-in (feature `local`): the Compatibility API's Calls and Recordings
//! resources under `/api/laml/2010-04-01/Accounts/{project}`, with HTTP Basic `project:token` and
//! form bodies, refusing what SignalWire refuses (401, 400 for a missing parameter, 404 for an
//! unknown sid), recording every request, and serving real WAV media without credentials as
//! SignalWire does. The call simulation registers calls and recordings through its methods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::config::{SANDBOX_API_TOKEN, SANDBOX_PROJECT_ID};
use super::wire::Form;

const PREFIX: &str = "/api/laml/2010-04-01/Accounts";

/// A REST request as the sandbox received it (after auth passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub form: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCall {
    pub sid: String,
    pub from: String,
    pub to: String,
    /// `inbound` or `outbound-api`.
    pub direction: String,
    pub status: String,
    /// The voice URL of an outbound call, and its status callback.
    pub url: Option<String>,
    pub status_callback: Option<String>,
    pub recording_status_callback: Option<String>,
}

#[derive(Debug, Clone)]
struct SandboxRecording {
    call_sid: String,
    seconds: f64,
}

#[derive(Debug, Default)]
struct Inner {
    calls: HashMap<String, SandboxCall>,
    recordings: HashMap<String, SandboxRecording>,
    requests: Vec<ReceivedRequest>,
}

#[derive(Clone)]
pub struct SignalWireSandbox {
    inner: Arc<Mutex<Inner>>,
    project_id: String,
    api_token: String,
    /// The sandbox server's base URL: the stand-in "space".
    base_url: String,
}

impl std::fmt::Debug for SignalWireSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalWireSandbox")
            .field("project_id", &self.project_id)
            .field("base_url", &self.base_url)
            .finish()
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://developer.signalwire.com/compatibility-api/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn missing(name: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "errors": [{
            "code": "missing_parameter",
            "message": format!("{name} is required or invalid"),
            "more_info": "https://developer.signalwire.com/compatibility-api/rest/create-a-call",
        }] })),
    )
        .into_response()
}

fn sid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl SignalWireSandbox {
    pub fn new(base_url: &str) -> SignalWireSandbox {
        SignalWireSandbox {
            inner: Arc::default(),
            project_id: SANDBOX_PROJECT_ID.to_owned(),
            api_token: SANDBOX_API_TOKEN.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn with_credentials(mut self, project_id: &str, api_token: &str) -> SignalWireSandbox {
        self.project_id = project_id.to_owned();
        self.api_token = api_token.to_owned();
        self
    }

    pub fn routes(&self) -> Router {
        Router::new()
            .route(
                &format!("{PREFIX}/{{project}}/Calls.json"),
                post(create_call),
            )
            .route(&format!("{PREFIX}/{{project}}/Calls"), post(create_call))
            .route(
                &format!("{PREFIX}/{{project}}/Calls/{{sid}}"),
                post(update_call),
            )
            .route(
                &format!("{PREFIX}/{{project}}/Recordings/{{sid}}"),
                get(recording).delete(delete_recording),
            )
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// An inbound call ringing at `to`, before the voice webhook is asked.
    pub fn register_call(&self, from: &str, to: &str) -> SandboxCall {
        let call = SandboxCall {
            sid: sid(),
            from: from.to_owned(),
            to: to.to_owned(),
            direction: "inbound".to_owned(),
            status: "ringing".to_owned(),
            url: None,
            status_callback: None,
            recording_status_callback: None,
        };
        self.lock().calls.insert(call.sid.clone(), call.clone());
        call
    }

    pub fn call(&self, sid: &str) -> Option<SandboxCall> {
        self.lock().calls.get(sid).cloned()
    }

    /// Every call the sandbox knows (registered inbound or created through the API).
    pub fn calls(&self) -> Vec<SandboxCall> {
        self.lock().calls.values().cloned().collect()
    }

    pub fn set_status(&self, sid: &str, status: &str) {
        if let Some(c) = self.lock().calls.get_mut(sid) {
            c.status = status.to_owned();
        }
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.lock().requests.clone()
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Saves a recording of a call; returns its sid and the `RecordingUrl` a callback carries.
    pub fn add_recording(&self, call_sid: &str, seconds: f64) -> (String, String) {
        let recording_sid = sid();
        self.lock().recordings.insert(
            recording_sid.clone(),
            SandboxRecording {
                call_sid: call_sid.to_owned(),
                seconds,
            },
        );
        let url = format!(
            "{}{PREFIX}/{}/Recordings/{recording_sid}",
            self.base_url, self.project_id
        );
        (recording_sid, url)
    }

    pub fn has_recording(&self, recording_sid: &str) -> bool {
        self.lock().recordings.contains_key(recording_sid)
    }

    /// Basic `project:token`, and the path's project must be the authenticated one.
    fn authorized(&self, headers: &HeaderMap, project: &str) -> bool {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.project_id, self.api_token))
        );
        project == self.project_id
            && headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == expected)
    }

    fn record(&self, method: &Method, path: String, form: &Form) {
        self.lock().requests.push(ReceivedRequest {
            method: method.to_string(),
            path,
            form: form.0.clone(),
        });
    }
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        20003,
        "Authentication Error - invalid username",
    )
}

fn form_body(headers: &HeaderMap, body: &Bytes) -> Result<Form, Box<Response>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            21000,
            "Content-Type must be application/x-www-form-urlencoded",
        )));
    }
    Form::parse(body)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, 21000, "Unreadable form")))
}

fn call_json(project: &str, c: &SandboxCall) -> Value {
    json!({
        "sid": c.sid,
        "account_sid": project,
        "api_version": "2010-04-01",
        "status": c.status,
        "direction": c.direction,
        "from": c.from,
        "to": c.to,
        "uri": format!("{PREFIX}/{project}/Calls/{}.json", c.sid),
    })
}

fn url_ok(u: &str) -> bool {
    u.starts_with("https://") || u.starts_with("http://")
}

async fn create_call(
    State(sandbox): State<SignalWireSandbox>,
    Path(project): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sandbox.authorized(&headers, &project) {
        return unauthorized();
    }
    let form = match form_body(&headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let e164 = |n: &str| crate::vendors::telnyx::client::valid_e164(n);
    let Some(to) = form.get("To").filter(|t| e164(t)) else {
        return missing("To");
    };
    let Some(from) = form.get("From").filter(|f| e164(f)) else {
        return missing("From");
    };
    let Some(url) = form.get("Url").filter(|u| url_ok(u)) else {
        return missing("Url");
    };
    if form.get("StatusCallback").is_some_and(|u| !url_ok(u)) {
        return missing("StatusCallback");
    }
    let events = ["initiated", "ringing", "answered", "completed"];
    if form
        .0
        .iter()
        .any(|(k, v)| k == "StatusCallbackEvent" && !events.contains(&v.as_str()))
    {
        return missing("StatusCallbackEvent");
    }
    let call = SandboxCall {
        sid: sid(),
        from: from.to_owned(),
        to: to.to_owned(),
        direction: "outbound-api".to_owned(),
        status: "queued".to_owned(),
        url: Some(url.to_owned()),
        status_callback: form.get("StatusCallback").map(str::to_owned),
        recording_status_callback: form.get("RecordingStatusCallback").map(str::to_owned),
    };
    sandbox.record(&method, format!("{PREFIX}/{project}/Calls.json"), &form);
    sandbox.lock().calls.insert(call.sid.clone(), call.clone());
    (StatusCode::CREATED, Json(call_json(&project, &call))).into_response()
}

async fn update_call(
    State(sandbox): State<SignalWireSandbox>,
    Path((project, sid)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sandbox.authorized(&headers, &project) {
        return unauthorized();
    }
    let form = match form_body(&headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let sid = sid.strip_suffix(".json").unwrap_or(&sid).to_owned();
    let status = form.get("Status");
    if !matches!(status, Some("completed" | "canceled")) {
        return missing("Status");
    }
    sandbox.record(
        &method,
        format!("{PREFIX}/{project}/Calls/{sid}.json"),
        &form,
    );
    let mut inner = sandbox.lock();
    let Some(call) = inner.calls.get_mut(&sid) else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    let finished = ["completed", "busy", "failed", "no-answer", "canceled"];
    if !finished.contains(&call.status.as_str()) {
        call.status = status.unwrap_or_default().to_owned();
    }
    let json = call_json(&project, call);
    (StatusCode::OK, Json(json)).into_response()
}

/// No extension or `.wav`: WAV media, no credentials. `.json`: metadata, Basic auth required.
async fn recording(
    State(sandbox): State<SignalWireSandbox>,
    Path((project, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (sid, ext) = match file.rsplit_once('.') {
        Some((s, e)) => (s.to_owned(), e.to_owned()),
        None => (file.clone(), "wav".to_owned()),
    };
    if project != sandbox.project_id {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let Some(rec) = sandbox.lock().recordings.get(&sid).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    match ext.as_str() {
        "wav" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "audio/x-wav")],
            crate::platform::audio::tone_wav(rec.seconds, 8_000),
        )
            .into_response(),
        "json" => {
            if !sandbox.authorized(&headers, &project) {
                return unauthorized();
            }
            (
                StatusCode::OK,
                Json(json!({
                    "sid": sid, "account_sid": project, "call_sid": rec.call_sid,
                    "duration": rec.seconds.round() as u64, "channels": 1, "status": "completed",
                })),
            )
                .into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

async fn delete_recording(
    State(sandbox): State<SignalWireSandbox>,
    Path((project, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !sandbox.authorized(&headers, &project) {
        return unauthorized();
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file).to_owned();
    sandbox.record(
        &Method::DELETE,
        format!("{PREFIX}/{project}/Recordings/{sid}.json"),
        &Form::default(),
    );
    match sandbox.lock().recordings.remove(&sid) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}
