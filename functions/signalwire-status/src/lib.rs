//! `POST /webhooks/signalwire/status`: a call's status callback. Verify → store once → enqueue → 204;
//! the call worker moves the call.

use lambda_http::Request;
use shared::api::app::SignalWireReceiver;
use shared::api::{self, ApiError, ApiResult, webhook};
use shared::domain::calls::Provider;
use shared::domain::calls::signalwire::{self, Callback};
use shared::domain::calls::webhooks::Incoming;
use shared::vendors::signalwire::signature;

pub const FUNCTION: &str = "signalwire-status";

pub async fn handle(receiver: &SignalWireReceiver, req: Request) -> ApiResult {
    let url = webhook::signed_url(&req, receiver.public_base_url.as_deref());
    let body = webhook::raw_body(&req);
    signature::verify(&receiver.signing_key, &url, req.headers(), body)?;
    let call_hint = api::query_param(&req, "call")
        .map(|raw| uuid::Uuid::parse_str(&raw))
        .transpose()
        .map_err(|_| malformed("the call parameter is not a call id"))?;
    let now = time::OffsetDateTime::now_utc();
    let parsed = signalwire::parse(Callback::Status, body, call_hint, now).map_err(malformed)?;
    receiver
        .events
        .receive(Incoming {
            vendor: Provider::Signalwire,
            event_id: parsed.event_id,
            event_type: Callback::Status.as_str().to_owned(),
            occurred_at: parsed.event.map(|e| e.occurred_at),
            body,
            content_type: "application/x-www-form-urlencoded",
            call_hint,
        })
        .await?;
    Ok(api::no_content())
}

fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        detail: e.to_string(),
        field: None,
    }
}
