//! `GET /api/recordings/{id}/transcriptions?limit=&cursor=`: a recording's transcriptions, newest
//! first (summaries; the text is at `GET /api/transcriptions/{id}`).

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiError, ApiResult, FieldError};
use shared::domain::transcriptions::{DEFAULT_PAGE, MAX_PAGE, Transcriptions};

pub const FUNCTION: &str = "transcriptions-list";

pub async fn handle(app: &App, transcriptions: &Transcriptions, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let recording_id = api::path_uuid(&req, "id")?;
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
    let page = transcriptions
        .list(session.user.id, recording_id, limit, cursor.as_deref())
        .await?;
    api::json(StatusCode::OK, &page)
}
