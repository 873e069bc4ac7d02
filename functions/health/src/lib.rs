//! `GET /health`: is this function up, and does the database answer `select 1` within a second?

use std::time::Duration;

use lambda_http::{Request, http::StatusCode};
use serde_json::json;
use shared::App;
use shared::api::{self, ApiError, ApiResult};

pub const FUNCTION: &str = "health";
const DATABASE_DEADLINE: Duration = Duration::from_secs(1);

pub async fn handle(app: &App, _req: Request) -> ApiResult {
    shared::platform::db::ping(&app.db, DATABASE_DEADLINE)
        .await
        .map_err(|e| ApiError::Unavailable(format!("health check: {e}")))?;
    api::json(
        StatusCode::OK,
        &json!({"status": "ok", "checks": {"database": "ok"}, "version": env!("CARGO_PKG_VERSION")}),
    )
}
