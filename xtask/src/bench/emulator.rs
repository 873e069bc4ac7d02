//! A loopback Lambda Runtime API (2018-06-01) for one function process at a time.
//!
//! It speaks what the managed runtime does: `GET …/invocation/next` long-polls and answers with the
//! event and the `Lambda-Runtime-*` headers; `POST …/invocation/{id}/response` and `…/{id}/error`
//! finish an invocation; `POST …/init/error` reports a failed init. The driver queues events with
//! [`Emulator::submit`] and learns when each answer arrived, which is what the bench times.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot, watch};

use xtask::Result;

const API: &str = "/2018-06-01/runtime";
/// The ports this project's helpers may bind (other agents share the machine).
pub const PORTS: std::ops::RangeInclusive<u16> = 9300..=9399;

/// What the function process answered for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response(Bytes),
    /// `…/error`, with the `Lambda-Runtime-Function-Error-Type` header if one was sent.
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
}

/// A reply and the instant its body had been read: the end of the invocation, as Lambda sees it.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    pub at: Instant,
}

/// An invocation queued for the function; await it with [`Emulator::wait`].
pub struct Pending {
    pub request_id: String,
    outcome: oneshot::Receiver<Outcome>,
}

struct Invocation {
    request_id: String,
    event: Bytes,
    deadline_ms: u128,
}

struct Shared {
    function_arn: String,
    timeout: Duration,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: watch::Sender<Option<String>>,
    closed: watch::Sender<bool>,
}

/// One emulator serves one process: a killed process's abandoned `/next` must not take the next
/// process's event, so each gets a fresh emulator on its own port.
pub struct Emulator {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
}

impl Emulator {
    /// Serves on the first free port in [`PORTS`]; `timeout` sets the deadline header.
    pub async fn start(function_name: &str, timeout: Duration) -> Result<Emulator> {
        let listener = bind_in(PORTS).await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            timeout,
            queue: tokio::sync::Mutex::new(receiver),
            in_flight: Mutex::new(HashMap::new()),
            init_error: watch::Sender::new(None),
            closed: watch::Sender::new(false),
        });
        let router = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(response))
            .route(&format!("{API}/invocation/{{id}}/error"), post(error))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(shared.clone());
        let mut closed = shared.closed.subscribe();
        tokio::spawn(async move {
            let stop = async move {
                let _ = closed.wait_for(|c| *c).await;
            };
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await;
        });
        Ok(Emulator {
            addr,
            queue,
            shared,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme).
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; the function's next (or pending) `/next` receives it.
    pub fn submit(&self, event: Bytes) -> Pending {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (sender, outcome) = oneshot::channel();
        self.shared
            .in_flight
            .lock()
            .expect("in-flight map")
            .insert(request_id.clone(), sender);
        let deadline_ms = epoch_ms() + self.shared.timeout.as_millis();
        let _ = self.queue.send(Invocation {
            request_id: request_id.clone(),
            event,
            deadline_ms,
        });
        Pending {
            request_id,
            outcome,
        }
    }

    /// The invocation's outcome, or the init error the process reported instead.
    pub async fn wait(&self, pending: Pending) -> Result<Outcome> {
        let mut init_error = self.shared.init_error.subscribe();
        tokio::select! {
            outcome = pending.outcome => outcome.map_err(|_| {
                format!("the emulator stopped before invocation {} was answered", pending.request_id)
            }),
            failed = init_error.wait_for(Option::is_some) => Err(format!(
                "init failed: {}",
                failed.map(|e| e.clone().unwrap_or_default()).unwrap_or_default()
            )),
        }
    }

    /// Stops serving and releases any `/next` still waiting.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.close();
    }
}

async fn bind_in(ports: std::ops::RangeInclusive<u16>) -> Result<tokio::net::TcpListener> {
    for port in ports.clone() {
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return Ok(listener);
        }
    }
    Err(format!("no free port in {ports:?}"))
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// An X-Ray trace header as Lambda passes it (not sampled: nothing would read the segments).
fn trace_id(request_id: &str) -> String {
    let seconds = epoch_ms() / 1000;
    let random: String = request_id.chars().filter(|c| *c != '-').take(24).collect();
    let parent: String = request_id
        .chars()
        .rev()
        .filter(|c| *c != '-')
        .take(16)
        .collect();
    format!("Root=1-{seconds:08x}-{random};Parent={parent};Sampled=0;Lineage=1:0:0")
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("header values are ASCII we built")
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let mut closed = shared.closed.subscribe();
    let invocation = {
        let mut queue = shared.queue.lock().await;
        tokio::select! {
            invocation = queue.recv() => invocation,
            _ = closed.wait_for(|c| *c) => None,
        }
    };
    let Some(invocation) = invocation else {
        return problem(StatusCode::GONE, "ShuttingDown", "the emulator is stopping");
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "lambda-runtime-aws-request-id",
        header_value(&invocation.request_id),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        header_value(&invocation.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header_value(&shared.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header_value(&trace_id(&invocation.request_id)),
    );
    (StatusCode::OK, headers, invocation.event).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    finish(&shared, &id, Reply::Response(body))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    finish(&shared, &id, Reply::Error { error_type, body })
}

fn finish(shared: &Shared, id: &str, reply: Reply) -> Response {
    let at = Instant::now();
    let sender = shared.in_flight.lock().expect("in-flight map").remove(id);
    match sender {
        Some(sender) => {
            let _ = sender.send(Outcome { reply, at });
            accepted()
        }
        // Lambda answers an unknown or already-answered request id with 400.
        None => problem(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no invocation in flight has this id",
        ),
    }
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared
        .init_error
        .send_replace(Some(String::from_utf8_lossy(&body).into_owned()));
    accepted()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

fn problem(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One HTTP/1.1 exchange on a fresh connection: (status, lower-cased headers, body).
    async fn exchange(
        addr: &str,
        method: &str,
        path: &str,
        extra: &str,
        body: &str,
    ) -> (u16, HashMap<String, String>, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    #[tokio::test]
    async fn serves_an_invocation_with_lambdas_headers_and_takes_its_answers() {
        let emulator = Emulator::start("me", Duration::from_secs(10))
            .await
            .unwrap();
        let api = emulator.runtime_api();
        let next = format!("{API}/invocation/next");

        let pending = emulator.submit(Bytes::from_static(br#"{"hello":1}"#));
        let expected_id = pending.request_id.clone();
        let (status, headers, body) = exchange(&api, "GET", &next, "", "").await;
        assert_eq!(status, 200);
        assert_eq!(body, r#"{"hello":1}"#);
        assert_eq!(headers["lambda-runtime-aws-request-id"], expected_id);
        assert_eq!(
            headers["lambda-runtime-invoked-function-arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:me"
        );
        assert!(headers["lambda-runtime-trace-id"].starts_with("Root=1-"));
        let deadline: u128 = headers["lambda-runtime-deadline-ms"].parse().unwrap();
        let left = deadline.saturating_sub(epoch_ms());
        assert!((9_000..=10_000).contains(&left), "{left} ms left");

        let path = format!("{API}/invocation/{expected_id}/response");
        let (status, _, _) = exchange(&api, "POST", &path, "", r#"{"ok":true}"#).await;
        assert_eq!(status, 202);
        let outcome = emulator.wait(pending).await.unwrap();
        assert_eq!(
            outcome.reply,
            Reply::Response(Bytes::from_static(br#"{"ok":true}"#))
        );
        // A second answer for the same id is refused, as Lambda does.
        let (status, _, _) = exchange(&api, "POST", &path, "", "{}").await;
        assert_eq!(status, 400);

        let pending = emulator.submit(Bytes::from_static(b"{}"));
        let (_, headers, _) = exchange(&api, "GET", &next, "", "").await;
        let id = &headers["lambda-runtime-aws-request-id"];
        let path = format!("{API}/invocation/{id}/error");
        let kind = "lambda-runtime-function-error-type: unhandled\r\n";
        let (status, _, _) = exchange(&api, "POST", &path, kind, r#"{"errorType":"X"}"#).await;
        assert_eq!(status, 202);
        assert_eq!(
            emulator.wait(pending).await.unwrap().reply,
            Reply::Error {
                error_type: Some("unhandled".to_owned()),
                body: Bytes::from_static(br#"{"errorType":"X"}"#)
            }
        );
    }

    #[tokio::test]
    async fn an_init_error_ends_the_wait_for_the_first_invocation() {
        let emulator = Emulator::start("me", Duration::from_secs(10))
            .await
            .unwrap();
        let pending = emulator.submit(Bytes::from_static(b"{}"));
        let path = format!("{API}/init/error");
        let (status, _, _) = exchange(
            &emulator.runtime_api(),
            "POST",
            &path,
            "",
            r#"{"errorMessage":"no DATABASE_URL"}"#,
        )
        .await;
        assert_eq!(status, 202);
        let error = emulator.wait(pending).await.unwrap_err();
        assert!(error.contains("no DATABASE_URL"), "{error}");
    }
}
