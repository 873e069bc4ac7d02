//! What a webhook receiver hands the signature verifiers (`vendors::*::signature`): the public URL
//! the vendor signed and the body's exact bytes, and how a refusal is answered.

use http::header::HOST;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::api::ApiError;
use crate::vendors::signature_error::{SignatureError, SignatureErrorKind};

/// The URL a vendor called and signed: `PUBLIC_BASE_URL` (behind a proxy or CDN) or `https://` +
/// the request's `requestContext.domainName`, then the raw path and the raw query string exactly
/// as received. A function with an HttpApi event cannot be told the API's own URL in the
/// template (a circular dependency), hence the request context.
pub fn signed_url(request: &Request, public_base_url: Option<&str>) -> String {
    let mut url = match public_base_url.map(str::trim).filter(|b| !b.is_empty()) {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => format!("https://{}", domain_name(request)),
    };
    let raw_path = request.raw_http_path();
    url.push_str(if raw_path.is_empty() {
        request.uri().path()
    } else {
        raw_path
    });
    // lambda_http builds the URI's query from `rawQueryString` verbatim.
    if let Some(query) = request.uri().query().filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn domain_name(request: &Request) -> &str {
    let from_context = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.as_deref(),
        _ => None,
    };
    from_context
        .or_else(|| request.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .or_else(|| request.uri().host())
        .unwrap_or_default()
}

/// The body exactly as the vendor sent it: lambda_http has already decoded an API Gateway
/// base64 body (`isBase64Encoded`), and a text body is its UTF-8 bytes untouched.
pub fn raw_body(request: &Request) -> &[u8] {
    request.body().as_ref()
}

/// 400 for a malformed request, 401 for a missing, wrong or stale signature (the reason is for
/// our logs, not the caller), 500 when our key is not configured so the vendor retries.
impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        // The caller is told only that it was refused; why is for our logs (and `xtask webhook verify`).
        tracing::warn!(reason = %e, "webhook refused");
        match e.kind() {
            SignatureErrorKind::Malformed => ApiError::BadRequest {
                detail: e.to_string(),
                field: None,
            },
            SignatureErrorKind::Unauthorized => ApiError::BadCallbackCredentials,
            SignatureErrorKind::Misconfigured => ApiError::Internal(e.to_string()),
        }
    }
}

pub use crate::api::extract::is_form_content_type;

/// True when the request's body is a form.
pub fn is_form(request: &Request) -> bool {
    is_form_content_type(request.headers().get(http::header::CONTENT_TYPE))
}

/// The public base URL the vendor called (no trailing slash): what [`signed_url`] starts with, and
/// where callback URLs handed back to the vendor point.
pub fn public_base(request: &Request, public_base_url: Option<&str>) -> String {
    match public_base_url.map(str::trim).filter(|b| !b.is_empty()) {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => format!("https://{}", domain_name(request)),
    }
}

/// A 400 for a request that was signed but cannot be read.
pub fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        detail: e.to_string(),
        field: None,
    }
}

impl crate::api::app::SignalWireReceiver {
    /// What every SignalWire receiver does first: verify the signature over the public URL, read
    /// the form as a callback of `kind` (with the `?call=` id Parley put in the URLs of calls it
    /// placed; part of the signed URL, so it cannot be forged), and store it once and enqueue it.
    pub async fn receive(
        &self,
        request: &Request,
        kind: crate::domain::calls::signalwire::Callback,
    ) -> Result<crate::domain::calls::signalwire::Parsed, ApiError> {
        use crate::domain::calls::Provider;
        use crate::domain::calls::webhooks::Incoming;
        let url = signed_url(request, self.public_base_url.as_deref());
        let body = raw_body(request);
        crate::vendors::signalwire::signature::verify(
            &self.signing_key,
            &url,
            request.headers(),
            body,
        )?;
        let call_hint = crate::api::query_param(request, "call")
            .map(|raw| uuid::Uuid::parse_str(&raw))
            .transpose()
            .map_err(|_| malformed("the call parameter is not a call id"))?;
        let now = time::OffsetDateTime::now_utc();
        let parsed = crate::domain::calls::signalwire::parse(kind, body, call_hint, now)
            .map_err(malformed)?;
        self.events
            .receive(Incoming {
                vendor: Provider::Signalwire,
                event_id: parsed.event_id.clone(),
                event_type: kind.as_str().to_owned(),
                occurred_at: parsed.event.as_ref().map(|e| e.occurred_at),
                body,
                content_type: "application/x-www-form-urlencoded",
                call_hint,
            })
            .await?;
        Ok(parsed)
    }
}
