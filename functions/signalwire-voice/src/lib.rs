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
use shared::domain::calls::{Direction, Provider, minutes};
use shared::vendors::signalwire::{cxml, signature};

pub const FUNCTION: &str = "signalwire-voice";

pub async fn handle(app: &App, receiver: &SignalWireReceiver, req: Request) -> ApiResult {
    if api::query_param(&req, "after").is_some() {
        // `<Dial>` or `<Record>` ended: the call is done (answering the document again would
        // loop). Verified like any callback, but nothing to store.
        let url = webhook::signed_url(&req, receiver.public_base_url.as_deref());
        signature::verify(
            &receiver.signing_key,
            &url,
            req.headers(),
            webhook::raw_body(&req),
        )?;
        return cxml_response(signalwire::after_document());
    }
    let parsed = receiver.receive(&req, Callback::Voice).await?;
    let event = parsed
        .event
        .as_ref()
        .expect("a voice request is a call event");
    let handling: Option<Handling> = match (event.call_id, event.direction) {
        (Some(call), _) => numbers::handling_of_call(&app.db, call).await?,
        (None, Direction::Inbound) => {
            numbers::handling_of_number(&app.db, Provider::Signalwire, &event.to).await?
        }
        (None, Direction::Outbound) => None,
    };
    // An inbound call holds its minutes before it is answered; with none left it is rejected.
    let handling = match (event.call_id, event.call_sid.as_deref()) {
        (None, Some(sid)) => minutes::admit_inbound_signalwire(&app.ledger, handling, sid).await?,
        _ => handling,
    };
    let base = webhook::public_base(&req, receiver.public_base_url.as_deref());
    cxml_response(signalwire::document(
        handling.as_ref(),
        event.call_id,
        &CallbackUrls::new(&base),
    ))
}

fn cxml_response(document: Result<String, cxml::CxmlError>) -> ApiResult {
    let document = document.map_err(|e| ApiError::Internal(e.to_string()))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, cxml::CONTENT_TYPE)
        .body(Body::Text(document))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
