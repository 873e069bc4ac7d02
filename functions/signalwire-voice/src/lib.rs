//! `POST /webhooks/signalwire/voice`: SignalWire asks what to do with a call and is answered with
//! cXML built from the number's settings (or `<Reject/>` for a number nobody owns). The request is
//! stored and enqueued like every callback, so the call appears at once.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use shared::App;
use shared::api::app::SignalWireReceiver;
use shared::api::{self, ApiError, ApiResult, webhook};
use shared::domain::calls::numbers::{self, Handling};
use shared::domain::calls::signalwire::{self, Callback, CallbackUrls};
use shared::domain::calls::webhooks::Incoming;
use shared::domain::calls::{Direction, Provider};
use shared::vendors::signalwire::{cxml, signature};

pub const FUNCTION: &str = "signalwire-voice";

pub async fn handle(app: &App, receiver: &SignalWireReceiver, req: Request) -> ApiResult {
    let base = receiver.public_base_url.as_deref();
    let url = webhook::signed_url(&req, base);
    let body = webhook::raw_body(&req);
    signature::verify(&receiver.signing_key, &url, req.headers(), body)?;
    if api::query_param(&req, "after").is_some() {
        // `<Dial>` or `<Record>` ended: the call is done (answering the document again would loop).
        return cxml_response(signalwire::after_document());
    }
    let call_hint = call_hint(&req)?;
    let now = time::OffsetDateTime::now_utc();
    let parsed = signalwire::parse(Callback::Voice, body, call_hint, now).map_err(malformed)?;
    let event = parsed
        .event
        .as_ref()
        .expect("a voice request is a call event");
    receiver
        .events
        .receive(Incoming {
            vendor: Provider::Signalwire,
            event_id: parsed.event_id.clone(),
            event_type: Callback::Voice.as_str().to_owned(),
            occurred_at: None,
            body,
            content_type: "application/x-www-form-urlencoded",
            call_hint,
        })
        .await?;
    let handling: Option<Handling> = match (call_hint, event.direction) {
        (Some(call), _) => numbers::handling_of_call(&app.db, call).await?,
        (None, Direction::Inbound) => {
            numbers::handling_of_number(&app.db, Provider::Signalwire, &event.to).await?
        }
        (None, Direction::Outbound) => None,
    };
    let urls = CallbackUrls::new(&webhook::public_base(&req, base));
    cxml_response(signalwire::document(handling.as_ref(), call_hint, &urls))
}

/// `?call=<id>` on the URLs of calls Parley placed; part of the signed URL, so it cannot be forged.
pub fn call_hint(req: &Request) -> Result<Option<uuid::Uuid>, ApiError> {
    api::query_param(req, "call")
        .map(|raw| {
            uuid::Uuid::parse_str(&raw).map_err(|_| ApiError::BadRequest {
                detail: "the call parameter is not a call id".into(),
                field: None,
            })
        })
        .transpose()
}

fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        detail: e.to_string(),
        field: None,
    }
}

fn cxml_response(document: Result<String, cxml::CxmlError>) -> ApiResult {
    let document = document.map_err(|e| ApiError::Internal(e.to_string()))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, cxml::CONTENT_TYPE)
        .body(Body::Text(document))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
