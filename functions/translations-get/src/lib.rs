//! `GET /api/translations/{id}`: one transcript translation with its text and utterances.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::translations::jobs::TranslationJobs;

pub const FUNCTION: &str = "translations-get";

pub async fn handle(app: &App, jobs: &TranslationJobs, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let translation = jobs.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "translation": translation }))
}
