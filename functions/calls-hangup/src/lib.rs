//! `POST /api/calls/{id}/hangup`: asks for the call to end (202); the call worker cancels a call not
//! yet dialled or hangs it up at the vendor. Asking twice is harmless.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::calls::Calls;

pub const FUNCTION: &str = "calls-hangup";

pub async fn handle(app: &App, calls: &Calls, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let call = calls.hang_up(session.user.id, id).await?;
    api::json(StatusCode::ACCEPTED, &json!({ "call": call }))
}
