//! `GET /api/transcriptions/{id}`: one transcription with its text, utterances and words.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::transcriptions::Transcriptions;

pub const FUNCTION: &str = "transcriptions-get";

pub async fn handle(app: &App, transcriptions: &Transcriptions, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let transcription = transcriptions.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "transcription": transcription }))
}
