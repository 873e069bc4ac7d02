//! `POST /api/calls`: queues an outbound call from one of the caller's numbers (202); the call
//! worker dials it. Honours `Idempotency-Key`, so a retried request never rings anyone twice.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiResult};
use shared::domain::calls::{Calls, OutboundRequest};

pub const FUNCTION: &str = "calls-create";

pub async fn handle(app: &App, calls: &Calls, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let payload: Value = api::parse_json(&req)?;
    let request: OutboundRequest = api::parse_json(&req)?;
    let scope = format!("{FUNCTION}:{owner}");
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let call = calls.place(owner, request).await?;
        api::json(StatusCode::ACCEPTED, &json!({ "call": call }))
    })
    .await
}
