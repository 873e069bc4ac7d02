//! `GET /api/tts/{id}`: a speech job, with a presigned download link (`speech-<id>.<ext>`) once completed.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::speech::jobs::TtsJobs;

pub const FUNCTION: &str = "tts-get";

pub async fn handle(app: &App, jobs: &TtsJobs, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let tts = jobs.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "tts": tts }))
}
