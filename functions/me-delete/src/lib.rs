//! `DELETE /api/me`: deletes the account. Every session ends at once (the next request is 401);
//! the account worker then removes everything else. 202 `{"deletion":{"status":"queued"}}`.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult, auth};
use shared::domain::lifecycle::account::AccountDeletions;

pub const FUNCTION: &str = "me-delete";

pub async fn handle(app: &App, deletions: &AccountDeletions, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    deletions.request(session.user.id).await?;
    let mut response = api::json(
        StatusCode::ACCEPTED,
        &json!({"deletion": {"status": "queued"}}),
    )?;
    if let auth::TokenSource::Cookie(name) = session.source {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, auth::clearing_cookie(name));
    }
    Ok(response)
}
