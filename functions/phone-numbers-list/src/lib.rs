//! `GET /api/phone-numbers?limit=&cursor=`: the numbers an operator assigned to the caller.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::calls::numbers::PhoneNumbers;
use shared::domain::calls::{DEFAULT_PAGE, MAX_PAGE};

pub const FUNCTION: &str = "phone-numbers-list";

pub async fn handle(app: &App, numbers: &PhoneNumbers, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let limit = api::page_limit(&req, DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = api::query_param(&req, "cursor");
    let page = numbers
        .list(session.user.id, limit, cursor.as_deref())
        .await?;
    api::json(StatusCode::OK, &page)
}
