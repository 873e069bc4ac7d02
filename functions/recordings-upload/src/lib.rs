//! `POST /api/recordings/uploads`: creates a recording and the presigned PUT that uploads it to R2.
//! Honours `Idempotency-Key`, so a client that retries after a timeout gets the same recording.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::Value;
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiResult};
use shared::domain::recordings::{Recordings, UploadRequest};

pub const FUNCTION: &str = "recordings-upload";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let payload: Value = api::parse_json(&req)?;
    let scope = format!("{FUNCTION}:{owner}");
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let upload = api::parse_json::<UploadRequest>(&req)?.validate(recordings.max_bytes())?;
        let created = recordings.create_upload(owner, upload).await?;
        api::json(StatusCode::CREATED, &created)
    })
    .await
}
