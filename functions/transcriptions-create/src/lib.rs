//! `POST /api/recordings/{id}/transcriptions`: queues a transcription of a ready recording (202).
//! Honours `Idempotency-Key`, so a retried request never queues a second paid job.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiResult};
use shared::domain::transcriptions::{TranscriptionRequest, Transcriptions};

pub const FUNCTION: &str = "transcriptions-create";

pub async fn handle(app: &App, transcriptions: &Transcriptions, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let recording_id = api::path_uuid(&req, "id")?;
    // Every field is optional, so an empty body means "defaults".
    let (payload, request): (Value, TranscriptionRequest) = if req.body().as_ref().is_empty() {
        (json!({}), TranscriptionRequest::default())
    } else {
        (api::parse_json(&req)?, api::parse_json(&req)?)
    };
    let new = request.validate()?;
    // The recording is part of the request, not the key's scope: one key on two recordings is a 422.
    let scope = format!("{FUNCTION}:{owner}");
    let payload = json!({ "recording_id": recording_id, "body": payload });
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let created = transcriptions.create(owner, recording_id, new).await?;
        api::json(StatusCode::ACCEPTED, &json!({ "transcription": created }))
    })
    .await
}
