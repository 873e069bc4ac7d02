//! `GET /api/recordings/{id}`: one recording and a short-lived download link.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::recordings::Recordings;

pub const FUNCTION: &str = "recordings-get";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let recording = recordings.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "recording": recording }))
}
