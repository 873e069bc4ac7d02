//! `GET /api/recordings?limit=&cursor=`: the caller's recordings, newest first, by keyset pages.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiError, ApiResult, FieldError};
use shared::domain::recordings::{DEFAULT_PAGE, MAX_PAGE, Recordings};

pub const FUNCTION: &str = "recordings-list";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let limit = match api::query_param(&req, "limit") {
        None => DEFAULT_PAGE,
        // Larger pages are capped rather than refused: the cursor tells the client there is more.
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
    let page = recordings
        .list(session.user.id, limit, cursor.as_deref())
        .await?;
    api::json(StatusCode::OK, &page)
}
