//! The request pipeline every API function runs: body limits and content type, CORS, CSRF,
//! security headers and the one log line per request.

use std::future::Future;
use std::time::Instant;

use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::api::auth::{self, TokenSource};
use crate::api::error::{ApiError, ApiResult, no_content};

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

/// Request headers whose values Parley reads as text.
const READ_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ORIGIN,
    HeaderName::from_static("idempotency-key"),
];

/// The origins allowed to call with credentials, and the one place CORS headers are decided.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
}

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key";
/// Response fields a browser script may read beyond the CORS-safelisted ones: the rate-limit
/// fields and `Retry-After` (docs/rate-limits.md). template.yaml's `ExposeHeaders` is the same.
const EXPOSED_HEADERS: &str = "ratelimit, ratelimit-policy, retry-after";

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

/// The functions whose every route only reads (each is `GET` in template.yaml; tests/tests/hardening.rs
/// checks it). Every other function changes state whatever method it is invoked with (a Lambda can be
/// invoked with any), so its cookie requests always need an allowed Origin: the CSRF guard asks what the
/// function does, not what the request's method claims.
pub const READ_ONLY_FUNCTIONS: &[&str] = &[
    "billing-get",
    "calls-get",
    "calls-list",
    "export-get",
    "health",
    "me",
    "phone-numbers-list",
    "recordings-get",
    "recordings-list",
    "transcription-translations-list",
    "transcriptions-get",
    "transcriptions-list",
    "translations-get",
    "tts-get",
];

/// Per-function HTTP policy: built once per cold start, wraps every request.
#[derive(Debug, Clone)]
pub struct Http {
    pub function: &'static str,
    pub cors: Cors,
    pub max_body_bytes: usize,
    /// Webhook receivers only: also admit `application/x-www-form-urlencoded` bodies.
    pub accepts_forms: bool,
    /// In [`READ_ONLY_FUNCTIONS`]: a cookie `GET`/`HEAD` needs no Origin.
    pub reads_only: bool,
}

impl Http {
    pub fn new(function: &'static str, cors: Cors, max_body_bytes: usize) -> Self {
        Http {
            function,
            cors,
            max_body_bytes,
            accepts_forms: false,
            reads_only: READ_ONLY_FUNCTIONS.contains(&function),
        }
    }

    /// For the receivers of vendors that post forms (SignalWire, Telnyx's TeXML).
    pub fn accepting_forms(mut self) -> Self {
        self.accepts_forms = true;
        self
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
        let cold_start = crate::platform::telemetry::take_cold_start();
        let request_id = req
            .lambda_context_ref()
            .map(|c| c.request_id.clone())
            .unwrap_or_default();
        let method = req.method().clone();
        let path = req.raw_http_path().to_owned();
        // API Gateway's own id for the request (its access log's `requestId`), next to Lambda's.
        let (route, apigw_request_id) = req
            .request_context_ref()
            .map(|c| match c {
                lambda_http::request::RequestContext::ApiGatewayV2(c) => {
                    (c.route_key.clone(), c.request_id.clone())
                }
                #[allow(unreachable_patterns)]
                _ => (None, None),
            })
            .unwrap_or_default();
        let route = route.unwrap_or_default();
        let apigw_request_id = apigw_request_id.unwrap_or_default();
        let origin = self.cors.allowed_origin(req.headers()).map(str::to_owned);

        // Boxed: the handler's future is large, and this keeps `serve`'s own future small.
        let (outcome, auth) = auth::with_request_user(Box::pin(async {
            if method == Method::OPTIONS {
                self.preflight(&req, origin.as_deref())
            } else {
                match self.admit(&req, origin.as_deref()) {
                    Ok(()) => handler(req).await,
                    Err(e) => Err(e),
                }
            }
        }))
        .await;
        let mut response = outcome.unwrap_or_else(|e| e.to_response(&request_id));
        // Every authenticated answer (2xx, 4xx or the 429 itself) reports the user's standing.
        if let Some(rate) = auth.rate {
            rate.apply(response.headers_mut());
        }
        apply_headers(response.headers_mut(), origin.as_deref());

        tracing::info!(
            request_id,
            apigw_request_id,
            user_id = auth.user.map(|u| u.get()),
            rate_limited = auth.rate.is_some_and(|r| !r.allowed),
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
        // The headers Parley reads are ASCII by their specs; bytes beyond it (which API Gateway
        // passes on inside its UTF-8 JSON event) are a malformed request, said so, not a guess.
        for name in &READ_HEADERS {
            if req
                .headers()
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_err())
            {
                return Err(ApiError::BadRequest {
                    detail: format!("the {name} header must be visible ASCII"),
                    field: Some(name.as_str().to_owned()),
                });
            }
        }
        let body: &[u8] = req.body().as_ref();
        if body.len() > self.max_body_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let content_type = req.headers().get(header::CONTENT_TYPE);
        let form = self.accepts_forms && crate::api::extract::is_form_content_type(content_type);
        if !body.is_empty() && !is_json_content_type(content_type) && !form {
            return Err(ApiError::UnsupportedMediaType);
        }
        let only_reads = self.reads_only && matches!(*req.method(), Method::GET | Method::HEAD);
        let cookie_session = matches!(auth::credentials(req.headers()), Some(c) if matches!(c.source, TokenSource::Cookie(_)));
        if !only_reads && cookie_session && origin.is_none() {
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
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PROBLEM_JSON, parse_json};

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
            // JSON Schema's reading: a struct is an object, never an array by position.
            (
                r#"[1, {"speed": 1}]"#,
                "body",
                "invalid type: sequence, expected an object",
            ),
            (
                r#"{"size_bytes":1,"settings":[2]}"#,
                "settings",
                "invalid type: sequence, expected an object",
            ),
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
    fn a_whole_number_written_with_a_fraction_is_an_integer() {
        #[derive(serde::Deserialize)]
        struct Sized {
            size_bytes: u64,
            offset: i32,
            speed: f64,
        }
        let req = http::Request::builder()
            .body(Body::from(
                r#"{"size_bytes":99999.0,"offset":-3.0,"speed":2}"#,
            ))
            .unwrap();
        let input: Sized = parse_json(&req).unwrap();
        assert_eq!((input.size_bytes, input.offset), (99_999, -3));
        assert_eq!(input.speed, 2.0);
        let req = http::Request::builder()
            .body(Body::from(r#"{"size_bytes":1.5,"offset":0,"speed":1}"#))
            .unwrap();
        assert!(parse_json::<Sized>(&req).is_err());
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
