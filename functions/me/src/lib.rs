//! `GET /api/me`: the signed-in user and when their session expires.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};

pub const FUNCTION: &str = "me";

pub async fn handle(app: &App, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let expires = session
        .expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut response = api::json(
        StatusCode::OK,
        &json!({"user": session.user, "session": {"expires": expires}}),
    )?;
    if let Some(cookie) = session.refreshed_cookie() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
