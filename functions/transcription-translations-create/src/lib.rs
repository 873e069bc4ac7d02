//! `POST /api/transcriptions/{id}/translations`: queues a translation of a completed transcript
//! (202). Honours `Idempotency-Key`, so a retried request never queues a second paid job.

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde_json::{Value, json};
use shared::App;
use shared::api::idempotency;
use shared::api::{self, ApiResult};
use shared::domain::translations::jobs::{NewTranslation, TranslationJobs};
use shared::domain::translations::{TranscriptRequest, Translator, check_formality};
use shared::platform::lambda::effective_deadline;

pub const FUNCTION: &str = "transcription-translations-create";

pub async fn handle(
    app: &App,
    jobs: &TranslationJobs,
    translator: &Translator,
    req: Request,
) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let owner = session.user.id;
    let transcription_id = api::path_uuid(&req, "id")?;
    let payload: Value = api::parse_json(&req)?;
    let request: TranscriptRequest = api::parse_json(&req)?;
    let formality = check_formality(request.formality.as_deref())?;
    let deadline_ms = effective_deadline(req.lambda_context_ref().map_or(0, |c| c.deadline));
    let pair = translator
        .validate(
            &request.target_lang,
            request.source_lang.as_deref(),
            deadline_ms,
        )
        .await?;
    // The transcription is part of the request, not the key's scope: one key on two is a 422.
    let scope = format!("{FUNCTION}:{owner}");
    let payload = json!({ "transcription_id": transcription_id, "body": payload });
    idempotency::once(&app.idempotency, &scope, &req, &payload, async {
        let created = jobs
            .create(owner, transcription_id, NewTranslation { pair, formality })
            .await?;
        api::json(StatusCode::ACCEPTED, &json!({ "translation": created }))
    })
    .await
}
