//! `POST /api/billing/checkout` `{"plan":"pro"}` → 201 `{"url":…}`: a Stripe Checkout Session in
//! subscription mode for the plan's price, paid by the user's one Stripe customer. The client
//! sends the user to `url`; the subscription arrives by webhook. Honours `Idempotency-Key`.

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::App;
use shared::api::{self, ApiResult, idempotency};
use shared::domain::billing::stripe::StripeBilling;
use shared::platform::lambda::effective_deadline;

pub const FUNCTION: &str = "billing-checkout";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    plan: String,
}

pub async fn handle(app: &App, billing: &StripeBilling, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let user = session.user.id;
    let payload: Value = api::parse_json(&req)?;
    let request: CheckoutRequest = api::parse_json(&req)?;
    let deadline_ms = effective_deadline(req.lambda_context_ref().map_or(0, |c| c.deadline));
    let scope = format!("{FUNCTION}:{user}");
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let url = billing
            .checkout(
                user,
                session.user.email.as_deref(),
                &request.plan,
                deadline_ms,
            )
            .await?;
        api::json(StatusCode::CREATED, &json!({ "url": url }))
    })
    .await
}
