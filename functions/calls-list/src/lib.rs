//! `GET /api/calls?limit=&cursor=`: the caller's calls, newest first, by keyset pages.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::calls::{Calls, DEFAULT_PAGE, MAX_PAGE};

pub const FUNCTION: &str = "calls-list";

pub async fn handle(app: &App, calls: &Calls, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let limit = api::page_limit(&req, DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = api::query_param(&req, "cursor");
    let page = calls
        .list(session.user.id, limit, cursor.as_deref())
        .await?;
    api::json(StatusCode::OK, &page)
}
