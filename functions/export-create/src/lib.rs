//! `POST /api/me/export`: queues an export of everything Parley holds about the user. 202 with
//! the export; `GET /api/me/export/{id}` links the document once it is built.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::lifecycle::export::Exports;

pub const FUNCTION: &str = "export-create";

pub async fn handle(app: &App, exports: &Exports, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let export = exports.create(session.user.id).await?;
    let mut response = api::json(StatusCode::ACCEPTED, &json!({ "export": export }))?;
    if let Ok(location) = format!("/api/me/export/{}", export.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}
