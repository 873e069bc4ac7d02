//! `GET /api/calls/{id}`: one of the caller's calls, with its outcome and recordings.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::calls::Calls;

pub const FUNCTION: &str = "calls-get";

pub async fn handle(app: &App, calls: &Calls, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let call = calls.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "call": call }))
}
