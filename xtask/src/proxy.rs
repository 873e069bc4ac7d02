//! The local API Gateway: an HTTP API (payload format 2.0) in front of `cargo lambda watch`.
//!
//! It routes by template.yaml's routes as API Gateway does (literal segments beat `{param}`),
//! answers CORS preflight from the template's `CorsConfiguration` without invoking anything, and
//! invokes functions through watch's Lambda invoke API, which stays on a loopback port nobody is
//! told about. What it does differently from API Gateway is listed in docs/local-stack.md.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Result;
use crate::template::{CorsConfiguration, Route};

/// API Gateway's request payload limit.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// HTTP APIs give up on an integration after at most 30 s.
const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);
/// A function's first invocation may wait for watch to compile it.
const FIRST_INVOKE_TIMEOUT: Duration = Duration::from_secs(900);
/// The problem type of a request no route takes.
pub const NOT_FOUND_TYPE: &str = "tag:parley.dev,2026:problem:not-found";

/// What the proxy serves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub routes: Vec<Route>,
    pub cors: Option<CorsConfiguration>,
    /// watch's address, e.g. `http://127.0.0.1:41234`.
    pub invoke_base: String,
    /// Each function's template `Timeout`.
    pub timeouts: BTreeMap<String, Duration>,
    /// Overrides every warm function's timeout (`PARLEY_INVOKE_TIMEOUT_SECONDS`).
    pub invoke_timeout: Option<Duration>,
}

struct Shared {
    config: ProxyConfig,
    http: reqwest::Client,
    /// Functions that have answered once: compiled and started, so their timeout applies.
    warm: Mutex<HashSet<String>>,
}

/// A running proxy; `stop` frees its port.
pub struct Proxy {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(addr: SocketAddr, config: ProxyConfig) -> Result<Proxy> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("the API proxy cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            config,
            http: shared::platform::http_client::http_client(FIRST_INVOKE_TIMEOUT),
            warm: Mutex::new(HashSet::new()),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = served {
                eprintln!("proxy: {e}");
            }
        });
        Ok(Proxy {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting, lets requests in flight finish for a moment, then drops them.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = answer(&shared, peer, request, &request_id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", value);
    }
    response
}

async fn answer(
    shared: &Shared,
    peer: SocketAddr,
    request: Request,
    request_id: &str,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cors = shared.config.cors.as_ref();

    // CorsConfiguration answers a preflight itself, for any path, before routing.
    if let Some(cors) = cors
        && parts.method == Method::OPTIONS
        && origin.is_some()
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(cors, origin.as_deref());
    }

    let path = parts.uri.path().to_owned();
    let Some((route, path_parameters)) =
        find_route(&shared.config.routes, parts.method.as_str(), &path)
    else {
        return not_found(parts.method.as_str(), &path);
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
    };
    let event = event(&parts, route, &path_parameters, &body, peer, request_id);
    let mut response = invoke(shared, &route.function, &event).await;
    if let Some(cors) = cors {
        apply_cors(cors, origin.as_deref(), response.headers_mut());
    }
    response
}

/// Path parameters by name, decoded.
pub type PathParameters = Vec<(String, String)>;

/// The route API Gateway would pick: same method and segment count, most literal segments first.
pub fn find_route<'a>(
    routes: &'a [Route],
    method: &str,
    path: &str,
) -> Option<(&'a Route, PathParameters)> {
    let wanted: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &Route, PathParameters)> = None;
    for route in routes.iter().filter(|r| r.method == method) {
        let pattern: Vec<&str> = route.path.split('/').collect();
        let Some((literals, params)) = match_segments(&pattern, &wanted) else {
            continue;
        };
        if best.as_ref().is_none_or(|(l, _, _)| literals > *l) {
            best = Some((literals, route, params));
        }
    }
    best.map(|(_, route, params)| (route, params))
}

/// Literal segments matched and the parameters taken, if `pattern` matches `wanted`.
fn match_segments(pattern: &[&str], wanted: &[&str]) -> Option<(usize, PathParameters)> {
    let mut literals = 0;
    let mut params = Vec::new();
    for (i, segment) in pattern.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            // A greedy parameter takes the rest of the path, and at least one segment.
            let rest = wanted.get(i..).filter(|r| !r.is_empty())?.join("/");
            params.push((name.to_owned(), decode(&rest)));
            return Some((literals, params));
        }
        let value = wanted.get(i)?;
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !value.is_empty() => params.push((name.to_owned(), decode(value))),
            Some(_) => return None,
            None if segment == value => literals += 1,
            None => return None,
        }
    }
    (pattern.len() == wanted.len()).then_some((literals, params))
}

fn decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// The payload-format-2.0 event API Gateway sends for this request.
fn event(
    parts: &http::request::Parts,
    route: &Route,
    path_parameters: &[(String, String)],
    body: &Bytes,
    peer: SocketAddr,
    request_id: &str,
) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in parts.headers.keys() {
        let values = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if name == header::COOKIE {
            // Format 2.0 moves cookies out of the headers, one array entry per cookie.
            for value in values {
                cookies.extend(
                    value
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                );
            }
            continue;
        }
        // Repeated headers arrive joined with commas.
        headers.insert(
            name.as_str().to_owned(),
            Value::String(values.collect::<Vec<_>>().join(",")),
        );
    }
    let source_ip = peer.ip().to_string();
    headers
        .entry("x-forwarded-for")
        .or_insert_with(|| json!(source_ip));
    let host = headers
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost")
        .to_owned();
    let (domain, port) = host.split_once(':').unwrap_or((host.as_str(), "80"));
    let (domain, port) = (domain.to_owned(), port.to_owned());
    headers.insert("x-forwarded-proto".into(), json!("http"));
    headers.insert("x-forwarded-port".into(), json!(port));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let user_agent = headers.get("user-agent").cloned().unwrap_or(json!(""));
    let raw_query = parts.uri.query().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key(),
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": shared::local::ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or_default(),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": format!("{:?}", parts.version),
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route.key(),
            "stage": "$default",
            "time": clf_time(now),
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(
            path_parameters
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        );
    }
    if !raw_query.is_empty() {
        let mut params: Map<String, Value> = Map::new();
        for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
            match params.get_mut(k.as_ref()) {
                // Repeated parameters arrive joined with commas.
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&v);
                }
                _ => {
                    params.insert(k.into_owned(), json!(v));
                }
            }
        }
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) if is_text(parts.headers.get(header::CONTENT_TYPE)) => {
                event["body"] = json!(text);
            }
            _ => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// Media types sent as text; anything else (or a body that is not UTF-8) goes base64-encoded.
fn is_text(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
}

/// `05/Dec/2026:03:00:00 +0000`, the request context's `time`.
fn clf_time(since_epoch: Duration) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(since_epoch.as_secs() as i64)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Invokes `function` and turns its answer into the HTTP response API Gateway would send.
async fn invoke(shared: &Shared, function: &str, event: &Value) -> Response<Body> {
    let warm = shared.warm.lock().expect("not poisoned").contains(function);
    let timeout = if warm {
        shared.config.invoke_timeout.unwrap_or_else(|| {
            shared
                .config
                .timeouts
                .get(function)
                .copied()
                .unwrap_or(API_GATEWAY_TIMEOUT)
                .min(API_GATEWAY_TIMEOUT)
        })
    } else {
        FIRST_INVOKE_TIMEOUT
    };
    let url = format!(
        "{}/2015-03-31/functions/{function}/invocations",
        shared.config.invoke_base
    );
    let sent = shared
        .http
        .post(url)
        .json(event)
        .timeout(timeout)
        .send()
        .await;
    let answer = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            eprintln!("proxy: {function} did not answer within {timeout:?}");
            return gateway_message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        Err(e) => {
            eprintln!("proxy: invoking {function}: {e}");
            return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let failed =
        !answer.status().is_success() || answer.headers().contains_key("x-amz-function-error");
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("proxy: reading {function}'s answer: {e}");
            return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    if failed {
        eprintln!(
            "proxy: {function} failed: {}",
            String::from_utf8_lossy(&bytes)
        );
        return gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    shared
        .warm
        .lock()
        .expect("not poisoned")
        .insert(function.to_owned());
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => function_response(&value).unwrap_or_else(|| {
            eprintln!("proxy: {function} answered a malformed response");
            gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }),
        Err(_) => {
            eprintln!("proxy: {function} answered something that is not JSON");
            gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Format 2.0's response: `{statusCode, headers, multiValueHeaders, cookies, body,
/// isBase64Encoded}`; without `statusCode`, the whole value is a 200 JSON body.
fn function_response(value: &Value) -> Option<Response<Body>> {
    let Some(status) = value.get("statusCode") else {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(value.to_string()))
            .ok();
    };
    let status = StatusCode::from_u16(u16::try_from(status.as_u64()?).ok()?).ok()?;
    let mut builder = Response::builder().status(status);
    let headers = builder.headers_mut()?;
    for (name, v) in value["headers"].as_object().into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let v = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        headers.append(name, HeaderValue::from_str(&v).ok()?);
    }
    for (name, values) in value["multiValueHeaders"].as_object().into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        for v in values.as_array().into_iter().flatten() {
            headers.append(name.clone(), HeaderValue::from_str(v.as_str()?).ok()?);
        }
    }
    for cookie in value["cookies"].as_array().into_iter().flatten() {
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_str(cookie.as_str()?).ok()?,
        );
    }
    let body = match value["body"].as_str() {
        None => Bytes::new(),
        Some(text) if value["isBase64Encoded"].as_bool() == Some(true) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?,
        ),
        Some(text) => Bytes::from(text.to_owned()),
    };
    builder.body(Body::from(body)).ok()
}

/// Whether `origin` is on the configuration's list (compared as the shared rule does).
fn allowed<'a>(cors: &CorsConfiguration, origin: Option<&'a str>) -> Option<&'a str> {
    let origin = origin?;
    cors.allow_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then_some(origin)
}

/// The preflight answer: 204, with the CORS headers only for an allowed origin.
fn preflight(cors: &CorsConfiguration, origin: Option<&str>) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let Some(origin) = allowed(cors, origin) else {
        return response;
    };
    let headers = response.headers_mut();
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        put(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    put(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &cors.allow_methods.join(","),
    );
    put(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        &cors.allow_headers.join(","),
    );
    if let Some(max_age) = cors.max_age {
        put(header::ACCESS_CONTROL_MAX_AGE, &max_age.to_string());
    }
    response
}

/// CorsConfiguration ignores the function's CORS headers and sets its own.
fn apply_cors(cors: &CorsConfiguration, origin: Option<&str>, headers: &mut HeaderMap) {
    let theirs: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in theirs {
        headers.remove(name);
    }
    let Some(origin) = allowed(cors, origin) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if cors.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(","))
    {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

/// problem+json 404 for a path no route takes, or a method the path does not declare. (API
/// Gateway itself answers both with 404 `{"message":"Not Found"}`.)
fn not_found(method: &str, path: &str) -> Response<Body> {
    let problem = json!({
        "type": NOT_FOUND_TYPE,
        "title": "Not Found",
        "status": 404,
        "detail": format!("no route for {method} {path}"),
    });
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "application/problem+json")
        .body(Body::from(problem.to_string()))
        .expect("static parts")
}

/// An answer API Gateway gives itself: `{"message": ...}`.
fn gateway_message(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "message": message }).to_string()))
        .expect("static parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, function: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            function: function.into(),
        }
    }

    #[test]
    fn literal_segments_win_and_parameters_are_decoded() {
        let routes = vec![
            route("GET", "/api/recordings/{id}", "get"),
            route("POST", "/api/recordings/uploads", "upload"),
            route("GET", "/api/recordings/uploads", "literal"),
            route("GET", "/files/{path+}", "files"),
        ];
        let (r, p) = find_route(&routes, "GET", "/api/recordings/uploads").unwrap();
        assert_eq!((r.function.as_str(), p.len()), ("literal", 0));
        let (r, p) = find_route(&routes, "GET", "/api/recordings/a%20b").unwrap();
        assert_eq!(r.function, "get");
        assert_eq!(p, vec![("id".to_owned(), "a b".to_owned())]);
        let (_, p) = find_route(&routes, "GET", "/files/a/b").unwrap();
        assert_eq!(p, vec![("path".to_owned(), "a/b".to_owned())]);
        assert!(find_route(&routes, "DELETE", "/api/recordings/x").is_none());
        assert!(find_route(&routes, "GET", "/api/recordings/").is_none());
        assert!(find_route(&routes, "GET", "/api/recordings/x/y").is_none());
    }

    #[test]
    fn a_response_maps_headers_cookies_and_base64_bodies() {
        let response = function_response(&json!({
            "statusCode": 201,
            "headers": {"content-type": "audio/ogg"},
            "multiValueHeaders": {"x-many": ["a", "b"]},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "AAEC",
            "isBase64Encoded": true
        }))
        .unwrap();
        assert_eq!(response.status(), 201);
        let set_cookie: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(set_cookie.len(), 2);
        assert_eq!(response.headers().get_all("x-many").iter().count(), 2);
    }
}
