//! `POST /api/translations`: translates up to 5,000 characters at once (200), DeepL first and
//! OpenAI when DeepL cannot; the answer names the provider that served it.

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::translations::{TextRequest, Translator};
use shared::platform::lambda::effective_deadline;

pub const FUNCTION: &str = "translations-create";

pub async fn handle(app: &App, translator: &Translator, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let request: TextRequest = api::parse_json(&req)?;
    let deadline_ms = effective_deadline(req.lambda_context_ref().map_or(0, |c| c.deadline));
    let translation = translator
        .translate_text(session.user.id, request, deadline_ms)
        .await?;
    api::json(StatusCode::OK, &json!({ "translation": translation }))
}
