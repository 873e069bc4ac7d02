//! `POST /webhooks/stripe`: Stripe's events. Verify (`Stripe-Signature` against every configured
//! endpoint secret) → store once by event id → enqueue for the billing worker → 200. A forged or
//! stale request is refused before any database query; a duplicate is acknowledged with 200; a
//! failure on our side is 5xx so Stripe retries.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::api::app::StripeReceiver;
use shared::api::{self, ApiError, ApiResult, webhook};
use shared::domain::calls::webhooks::Receipt;
use shared::vendors::stripe::{signature, wire};

pub const FUNCTION: &str = "stripe-webhook";

pub async fn handle(receiver: &StripeReceiver, req: Request) -> ApiResult {
    let body = webhook::raw_body(&req);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // A header that cannot be read as Stripe's is a wrong credential, not a malformed request:
    // 401 like a missing or mismatched signature (webhook verify still names the reason).
    signature::verify(
        &receiver.secrets,
        req.headers(),
        body,
        now,
        receiver.tolerance,
    )
    .map_err(|e| {
        if e.is_malformed() {
            ApiError::BadCallbackCredentials
        } else {
            e.into()
        }
    })?;
    // Thin (v2) notifications are refused as the SDKs' constructEvent refuses them.
    let event = wire::parse_event(body).map_err(webhook::malformed)?;
    let receipt = receiver.outbox.receive(&event, body).await?;
    api::json(
        StatusCode::OK,
        &json!({ "received": true, "duplicate": receipt == Receipt::Duplicate }),
    )
}
