//! `POST /api/tts`: validates a speech request and queues it (202). Honours `Idempotency-Key`, so a
//! retried request never pays ElevenLabs twice.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiResult};
use shared::domain::speech::TtsRequest;
use shared::domain::speech::jobs::TtsJobs;

pub const FUNCTION: &str = "tts-create";

pub async fn handle(app: &App, jobs: &TtsJobs, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let payload: Value = api::parse_json(&req)?;
    let request = api::parse_json::<TtsRequest>(&req)?.validate()?;
    let scope = format!("{FUNCTION}:{owner}");
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let created = jobs.create(owner, request).await?;
        api::json(StatusCode::ACCEPTED, &json!({ "tts": created }))
    })
    .await
}
