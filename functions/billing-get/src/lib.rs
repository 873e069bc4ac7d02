//! `GET /api/billing`: the caller's plan, subscription state and every meter's use this period.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::billing;

pub const FUNCTION: &str = "billing-get";

pub async fn handle(app: &App, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let summary = billing::summary(&app.ledger, session.user.id).await?;
    api::json(StatusCode::OK, &summary)
}
