//! `POST /api/recordings/uploads`: creates a recording and the presigned PUT that uploads it to R2.
//! Honours `Idempotency-Key`, so a client that retries after a timeout gets the same recording; a
//! replay after the stored upload URL expired gets a fresh URL for that recording (or a 409 saying
//! why there is none), never a dead link.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::Value;
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiError, ApiResult};
use shared::domain::UserId;
use shared::domain::recordings::{Recordings, UploadRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const FUNCTION: &str = "recordings-upload";

/// A stored URL this close to expiry is renewed rather than handed out: an upload takes time to start.
const RENEW_WITHIN: time::Duration = time::Duration::minutes(2);

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let payload: Value = api::parse_json(&req)?;
    let scope = format!("{FUNCTION}:{owner}");
    idempotency::once_refreshing(
        &app.idempotency,
        &scope,
        &req,
        &payload,
        async {
            let upload =
                api::parse_json::<UploadRequest>(&req)?.validate(recordings.max_bytes())?;
            let created = recordings.create_upload(owner, upload).await?;
            api::json(StatusCode::CREATED, &created)
        },
        |stored| renew_if_stale(recordings, owner, stored),
    )
    .await
}

/// The stored answer, with its `upload` re-signed when the stored URL has (nearly) expired.
async fn renew_if_stale(
    recordings: &Recordings,
    owner: UserId,
    mut stored: Value,
) -> Result<Value, ApiError> {
    let expires_at = stored["upload"]["expires_at"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let fresh = expires_at.is_some_and(|t| t - RENEW_WITHIN > OffsetDateTime::now_utc());
    if fresh {
        return Ok(stored);
    }
    let id = stored["recording"]["id"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| ApiError::Internal("a stored upload answer has no recording id".into()))?;
    let upload = recordings.refresh_upload(owner, id).await?;
    stored["upload"] =
        serde_json::to_value(&upload).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(stored)
}
