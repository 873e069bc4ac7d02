//! `POST /api/recordings/uploads`: creates a recording and the presigned PUT that uploads it to R2.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::App;
use shared::http::{self, ApiResult};
use shared::recordings::{Recordings, UploadRequest};

pub const FUNCTION: &str = "recordings-upload";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let upload = http::parse_json::<UploadRequest>(&req)?.validate(recordings.max_bytes())?;
    let created = recordings
        .create_upload(session.user.db_id(), upload)
        .await?;
    http::json(StatusCode::CREATED, &created)
}
