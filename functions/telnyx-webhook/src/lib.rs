//! `POST /webhooks/telnyx`: Call Control events (and TeXML callbacks, which are only verified).
//! Verify → store once → enqueue → 200; the call worker does the rest. A bad signature is 401 and
//! changes nothing; a failure on our side is 5xx so Telnyx retries.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::api::app::TelnyxReceiver;
use shared::api::{self, ApiError, ApiResult, webhook};
use shared::domain::calls::Provider;
use shared::domain::calls::telnyx;
use shared::domain::calls::webhooks::{Incoming, Receipt};
use shared::vendors::telnyx::signature;

pub const FUNCTION: &str = "telnyx-webhook";

pub async fn handle(receiver: &TelnyxReceiver, req: Request) -> ApiResult {
    let body = webhook::raw_body(&req);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(&receiver.key, req.headers(), body, now, receiver.tolerance)?;
    if webhook::is_form(&req) {
        // TeXML callbacks: verified, acknowledged, not acted on (calls run on Call Control).
        return Ok(api::no_content());
    }
    let (envelope, _) = telnyx::read(body).map_err(|e| ApiError::BadRequest {
        detail: e.to_string(),
        field: None,
    })?;
    let receipt = receiver
        .events
        .receive(Incoming {
            vendor: Provider::Telnyx,
            event_id: envelope.id,
            event_type: envelope.event_type,
            occurred_at: Some(envelope.occurred_at),
            body,
            content_type: "application/json",
            call_hint: None,
        })
        .await?;
    let duplicate = receipt == Receipt::Duplicate;
    api::json(
        StatusCode::OK,
        &json!({ "received": true, "duplicate": duplicate }),
    )
}
