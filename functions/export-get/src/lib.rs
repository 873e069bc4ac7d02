//! `GET /api/me/export/{id}`: an export, with a presigned link to its JSON document (valid one
//! hour) once it is built.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::lifecycle::export::Exports;

pub const FUNCTION: &str = "export-get";

pub async fn handle(app: &App, exports: &Exports, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let export = exports.get(session.user.id, id).await?;
    api::json(StatusCode::OK, &json!({ "export": export }))
}
