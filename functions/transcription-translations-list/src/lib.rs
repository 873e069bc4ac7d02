//! `GET /api/transcriptions/{id}/translations?limit=&cursor=`: a transcription's translations,
//! newest first (summaries; the text is at `GET /api/translations/{id}`).

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiError, ApiResult, FieldError};
use shared::domain::translations::jobs::{DEFAULT_PAGE, MAX_PAGE, TranslationJobs};

pub const FUNCTION: &str = "transcription-translations-list";

pub async fn handle(app: &App, jobs: &TranslationJobs, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let transcription_id = api::path_uuid(&req, "id")?;
    let limit = match api::query_param(&req, "limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_PAGE),
            _ => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "limit",
                    format!("must be an integer from 1 to {MAX_PAGE}"),
                )]));
            }
        },
    };
    let cursor = api::query_param(&req, "cursor");
    let page = jobs
        .list(session.user.id, transcription_id, limit, cursor.as_deref())
        .await?;
    api::json(StatusCode::OK, &page)
}
