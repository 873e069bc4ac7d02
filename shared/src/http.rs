//! HTTP conventions in one place: RFC 9457 problems, JSON bodies and their limits, CORS, CSRF,
//! security headers and the one log line per request.

use std::future::Future;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, TokenSource};
use crate::db::DbError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A field that failed validation, named as the client sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every error a handler can answer with. Each kind has a stable problem `type`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A webhook whose shared secret or signature is missing or wrong.
    #[error("the callback's credentials are missing or wrong")]
    BadCallbackCredentials,
    /// A vendor refused a request for a reason that retrying will not fix.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => ApiError::Unavailable(cause),
            DbError::Query(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::vendor::VendorError> for ApiError {
    fn from(e: crate::vendor::VendorError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::BadGateway(e.to_string())
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadCallbackCredentials => StatusCode::UNAUTHORIZED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of this kind; the problem `type` is `tag:parley.dev,2026:problem:<slug>`.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "malformed-request",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::Validation(_) => "validation-failed",
            ApiError::BadCallbackCredentials => "invalid-callback-credentials",
            ApiError::BadGateway(_) => "vendor-error",
            ApiError::Unavailable(_) => "service-unavailable",
            ApiError::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "Malformed request",
            ApiError::Unauthenticated => "Authentication required",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound => "Not found",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::Validation(_) => "Validation failed",
            ApiError::BadCallbackCredentials => "Invalid callback credentials",
            ApiError::BadGateway(_) => "Vendor error",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// What the client may read. Causes of 5xx stay in our logs.
    fn public_detail(&self) -> String {
        match self {
            ApiError::Unauthenticated => "a valid session is required".to_owned(),
            ApiError::NotFound => "no such resource".to_owned(),
            ApiError::Validation(_) => "one or more fields are invalid".to_owned(),
            ApiError::Unavailable(_) => "a dependency is unavailable; retry shortly".to_owned(),
            ApiError::Internal(_) => "an unexpected error occurred".to_owned(),
            ApiError::BadGateway(_) => "an upstream vendor refused the request".to_owned(),
            other => other.to_string(),
        }
    }

    /// The RFC 9457 response. Server-side causes are logged here, once, never sent.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(request_id, cause = %cause, "internal error")
            }
            ApiError::BadGateway(cause) => {
                tracing::warn!(request_id, cause = %cause, "vendor refused")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(request_id, cause = %cause, "dependency unavailable")
            }
            _ => {}
        }
        let mut problem = serde_json::json!({
            "type": format!("tag:parley.dev,2026:problem:{}", self.slug()),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": self.public_detail(),
            "request_id": request_id,
        });
        match self {
            ApiError::Validation(errors) => problem["errors"] = serde_json::json!(errors),
            ApiError::BadRequest {
                field: Some(field), ..
            } => {
                problem["errors"] =
                    serde_json::json!([FieldError::new(field.clone(), self.to_string())])
            }
            _ => {}
        }
        let mut response = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(Body::Text(problem.to_string()))
            .expect("static parts are valid");
        if matches!(self, ApiError::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if matches!(self, ApiError::Unauthenticated) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult = Result<Response<Body>, ApiError>;

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body = serde_json::to_string(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .expect("static parts are valid"))
}

/// An empty 204.
pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .expect("static parts are valid")
}

/// Parses a JSON body into `T`. Text that is not JSON is a 400; JSON with a missing, mistyped or
/// unknown field is a 422 naming that field. Size and content type were checked by [`Http::serve`].
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.is_empty() {
        return Err(ApiError::BadRequest {
            detail: "a JSON body is required".to_owned(),
            field: None,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return ApiError::BadRequest {
                detail: format!("body is not valid JSON: {inner}"),
                field: None,
            };
        }
        let message = inner.to_string();
        // serde reports a missing field at its parent's path, so the name comes from the message.
        let field = match missing_field_name(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        // serde_json appends " at line L column C", which says nothing to an API client.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_owned();
        ApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    // Text after the value would otherwise be ignored silently.
    de.end().map_err(|e| ApiError::BadRequest {
        detail: format!("body is not valid JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

fn missing_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// A UUID path parameter; anything else is a resource that cannot exist (404, not 400).
pub fn path_uuid(req: &Request, name: &str) -> Result<uuid::Uuid, ApiError> {
    req.path_parameters()
        .first(name)
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .ok_or(ApiError::NotFound)
}

/// A query parameter, if present and non-empty.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters()
        .first(name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The origins allowed to call with credentials, and the one place CORS headers are decided.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
}

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key";

impl Cors {
    pub fn new(origins: Vec<String>) -> Self {
        Cors { origins }
    }

    /// The request's `Origin`, if it is on the allow-list (compared exactly, case-insensitively).
    pub fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }
}

/// Per-function HTTP policy: built once per cold start, wraps every request.
#[derive(Debug, Clone)]
pub struct Http {
    pub function: &'static str,
    pub cors: Cors,
    pub max_body_bytes: usize,
}

impl Http {
    pub fn new(function: &'static str, cors: Cors, max_body_bytes: usize) -> Self {
        Http {
            function,
            cors,
            max_body_bytes,
        }
    }

    /// Runs `handler` under Parley's conventions and never fails: every error becomes problem+json.
    pub async fn serve<F, Fut>(
        &self,
        req: Request,
        handler: F,
    ) -> Result<Response<Body>, lambda_http::Error>
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = ApiResult>,
    {
        let started = Instant::now();
        let cold_start = crate::telemetry::take_cold_start();
        let request_id = req
            .lambda_context_ref()
            .map(|c| c.request_id.clone())
            .unwrap_or_default();
        let method = req.method().clone();
        let path = req.raw_http_path().to_owned();
        let route = req
            .request_context_ref()
            .and_then(|c| match c {
                lambda_http::request::RequestContext::ApiGatewayV2(c) => c.route_key.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .unwrap_or_default();
        let origin = self.cors.allowed_origin(req.headers()).map(str::to_owned);

        let outcome = if method == Method::OPTIONS {
            self.preflight(&req, origin.as_deref())
        } else {
            match self.admit(&req, origin.as_deref()) {
                Ok(()) => handler(req).await,
                Err(e) => Err(e),
            }
        };
        let mut response = outcome.unwrap_or_else(|e| e.to_response(&request_id));
        apply_headers(response.headers_mut(), origin.as_deref());

        tracing::info!(
            request_id,
            function = self.function,
            cold_start,
            method = %method,
            route,
            path,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Ok(response)
    }

    /// Checks that apply before any handler runs: body size and type, and CSRF for cookie sessions.
    fn admit(&self, req: &Request, origin: Option<&str>) -> Result<(), ApiError> {
        let body: &[u8] = req.body().as_ref();
        if body.len() > self.max_body_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: self.max_body_bytes,
            });
        }
        if !body.is_empty() && !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let cookie_session = matches!(auth::credentials(req.headers()), Some(c) if matches!(c.source, TokenSource::Cookie(_)));
        if changes_state && cookie_session && origin.is_none() {
            // Cookies ride along on cross-site requests; the Origin header is what a browser can't fake.
            return Err(ApiError::Forbidden(
                "a cookie-authenticated request that changes state must carry an allowed Origin header".to_owned(),
            ));
        }
        Ok(())
    }

    fn preflight(&self, req: &Request, origin: Option<&str>) -> ApiResult {
        if !req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut response = no_content();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            return Ok(response);
        }
        if origin.is_none() {
            return Err(ApiError::Forbidden("origin not allowed".to_owned()));
        }
        let mut response = no_content();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        Ok(response)
    }
}

/// Security headers on every response, and CORS headers only for an allowed origin (never `*`).
fn apply_headers(headers: &mut HeaderMap, origin: Option<&str>) {
    const FIXED: &[(HeaderName, &str)] = &[
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        // Every answer is per-user or live state; nothing may be cached by a browser or a proxy.
        (header::CACHE_CONTROL, "no-store"),
        (header::VARY, "Origin"),
    ];
    for (name, value) in FIXED {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(
                is_json_content_type(Some(&HeaderValue::from_static(ok))),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "json",
        ] {
            assert!(
                !is_json_content_type(Some(&HeaderValue::from_static(bad))),
                "{bad}"
            );
        }
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn problems_have_a_stable_type_and_hide_internal_causes() {
        let response =
            ApiError::Internal("connection string postgres://secret".into()).to_response("req-1");
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["type"], "tag:parley.dev,2026:problem:internal-error");
        assert_eq!(body["status"], 500);
        assert_eq!(body["request_id"], "req-1");
        assert!(!body.to_string().contains("secret"));
    }

    fn problem_for(body: &str) -> serde_json::Value {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Settings {
            speed: f64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Input {
            size_bytes: u64,
            settings: Option<Settings>,
        }
        let req = http::Request::builder().body(Body::from(body)).unwrap();
        let err = parse_json::<Input>(&req).unwrap_err();
        serde_json::from_slice(err.to_response("r").body().as_ref()).unwrap()
    }

    #[test]
    fn json_with_a_bad_field_is_a_422_naming_the_field() {
        for (body, field, says) in [
            (r#"{"size_bytes":"big"}"#, "size_bytes", "invalid type"),
            (r#"{}"#, "size_bytes", "missing field `size_bytes`"),
            (
                r#"{"size_bytes":1,"key":"x"}"#,
                "key",
                "unknown field `key`",
            ),
            (
                r#"{"size_bytes":1,"settings":{}}"#,
                "settings.speed",
                "missing field `speed`",
            ),
            (r#""text""#, "body", "invalid type"),
        ] {
            let problem = problem_for(body);
            assert_eq!(problem["status"], 422, "{body}");
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
            let message = problem["errors"][0]["message"].as_str().unwrap();
            assert!(message.starts_with(says), "{body}: {message}");
            assert!(!message.contains(" at line "), "{message}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_a_400() {
        for body in [
            r#"{"size_bytes":"#,
            "size_bytes=1",
            r#"{"size_bytes":1} trailing"#,
        ] {
            let problem = problem_for(body);
            assert_eq!(problem["status"], 400, "{body}");
            assert!(problem["errors"].is_null(), "{body}");
        }
    }
}
