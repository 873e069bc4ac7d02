//! Every error a handler can answer with, as RFC 9457 problem+json with a stable `type` per kind.

use http::StatusCode;
use http::header::{self, HeaderValue};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::domain;
pub use crate::domain::FieldError;
use crate::domain::billing::{QuotaExceeded, Vendor};
use crate::platform::db::DbError;
use crate::platform::http_client::VendorError;

pub const PROBLEM_JSON: &str = "application/problem+json";

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
    /// The function was invoked with a method its route does not take; `allow` lists the one it does.
    #[error("this resource only accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
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
    /// The user is over the function's rate limit (`api::ratelimit`); carries the figures the
    /// `Retry-After`, `RateLimit` and `RateLimit-Policy` fields report.
    #[error("too many {} requests; retry in {} s", .0.policy.class, .0.retry_after_secs.unwrap_or(1))]
    RateLimited(crate::api::ratelimit::RateStatus),
    /// A vendor refused a request for a reason that retrying will not fix.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    /// 402: the user's plan cannot cover the request; nothing was queued and no vendor was called.
    #[error("the {} allowance cannot cover this request", .0.meter)]
    QuotaExceeded(QuotaExceeded),
    /// 503: the operator's daily cap on a vendor is reached for everyone until midnight UTC.
    #[error("new paid work is paused for today: the daily budget for {0} is exhausted")]
    VendorBudgetExhausted(Vendor),
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

impl From<VendorError> for ApiError {
    fn from(e: VendorError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::BadGateway(e.to_string())
        }
    }
}

impl From<domain::Error> for ApiError {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::Invalid(fields) => ApiError::Validation(fields),
            domain::Error::NotFound => ApiError::NotFound,
            domain::Error::Conflict(detail) => ApiError::Conflict(detail),
            domain::Error::Rejected(cause) => ApiError::BadGateway(cause),
            domain::Error::Unavailable(cause) => ApiError::Unavailable(cause),
            domain::Error::QuotaExceeded(q) => ApiError::QuotaExceeded(q),
            domain::Error::BudgetExhausted(v) => ApiError::VendorBudgetExhausted(v),
            domain::Error::Internal(cause) => ApiError::Internal(cause),
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
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadCallbackCredentials => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::QuotaExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::VendorBudgetExhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::Validation(_) => "validation-failed",
            ApiError::BadCallbackCredentials => "invalid-callback-credentials",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::BadGateway(_) => "vendor-error",
            ApiError::Unavailable(_) => "service-unavailable",
            ApiError::QuotaExceeded(_) => "quota-exceeded",
            ApiError::VendorBudgetExhausted(_) => "vendor-budget-exhausted",
            ApiError::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "Malformed request",
            ApiError::Unauthenticated => "Authentication required",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::Validation(_) => "Validation failed",
            ApiError::BadCallbackCredentials => "Invalid callback credentials",
            ApiError::RateLimited(_) => "Too many requests",
            ApiError::BadGateway(_) => "Vendor error",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::QuotaExceeded(_) => "Quota exceeded",
            ApiError::VendorBudgetExhausted(_) => "Vendor budget exhausted",
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
            ApiError::QuotaExceeded(q) => quota_detail(q),
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
            ApiError::VendorBudgetExhausted(vendor) => {
                tracing::error!(
                    request_id,
                    vendor = vendor.as_str(),
                    "refused: operator daily cap reached"
                )
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
            ApiError::QuotaExceeded(q) => {
                problem["meter"] = serde_json::json!(q.meter);
                problem["limit"] = serde_json::json!(q.limit);
                problem["remaining"] = serde_json::json!(q.remaining);
                problem["resets_at"] = serde_json::json!(q.resets_at.and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }));
            }
            ApiError::VendorBudgetExhausted(vendor) => {
                problem["vendor"] = serde_json::json!(vendor)
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
        if matches!(self, ApiError::VendorBudgetExhausted(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds_until_utc_midnight());
        }
        if let ApiError::RateLimited(status) = self {
            status.apply(response.headers_mut());
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(self, ApiError::Unauthenticated) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn quota_detail(q: &QuotaExceeded) -> String {
    let left = format!("{} {} left", q.remaining, q.meter);
    let when = match q.resets_at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        Some(at) => format!("; the allowance resets at {at}"),
        None => "; delete stored audio to free space".to_owned(),
    };
    if q.overdrawn {
        format!(
            "a vendor billed more than was reserved, so {} is closed until it resets{when}",
            q.meter
        )
    } else {
        format!(
            "your plan's {} allowance cannot cover this request ({left}{when})",
            q.meter
        )
    }
}

/// The cap is per UTC day: a client may try again when the day turns.
fn seconds_until_utc_midnight() -> HeaderValue {
    let now = time::OffsetDateTime::now_utc();
    let midnight = (now.date() + time::Duration::days(1))
        .midnight()
        .assume_utc();
    HeaderValue::from((midnight - now).whole_seconds().max(1))
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
