//! `POST /api/billing/portal` → 201 `{"url":…}`: a Stripe Customer Portal session for the user's
//! Stripe customer (change plan, payment method, cancel; invoices), coming back to `APP_URL`. A
//! user who never checked out has no customer: 409. Takes no body (or `{}`).

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde::Deserialize;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult, idempotency};
use shared::domain::billing::stripe::StripeBilling;
use shared::platform::lambda::effective_deadline;

pub const FUNCTION: &str = "billing-portal";

/// Nothing to choose: the portal is the user's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalRequest {}

pub async fn handle(app: &App, billing: &StripeBilling, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let user = session.user.id;
    let body: &[u8] = req.body().as_ref();
    if !body.is_empty() {
        let _: PortalRequest = api::parse_json(&req)?;
    }
    let payload = json!({});
    let deadline_ms = effective_deadline(req.lambda_context_ref().map_or(0, |c| c.deadline));
    let scope = format!("{FUNCTION}:{user}");
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let url = billing.portal(user, deadline_ms).await?;
        api::json(StatusCode::CREATED, &json!({ "url": url }))
    })
    .await
}
