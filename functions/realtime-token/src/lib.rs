//! `POST /api/transcription/realtime-token`: a one-time AssemblyAI streaming token for the signed-in
//! user's browser. The API key never leaves Parley.

use lambda_http::http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde::Deserialize;
use shared::App;
use shared::api::{self, ApiError, ApiResult, FieldError};
use shared::domain::transcriptions::realtime::{self, DEFAULT_SESSION_SECONDS};
use shared::vendors::assemblyai::{
    AssemblyAi, MAX_SESSION_SECONDS, MAX_TOKEN_SECONDS, MIN_SESSION_SECONDS,
};

pub const FUNCTION: &str = "realtime-token";
const DEFAULT_SECONDS: u32 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    #[serde(default)]
    pub max_session_duration_seconds: Option<i64>,
}

pub async fn handle(app: &App, assemblyai: &AssemblyAi, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let request: TokenRequest = if req.body().as_ref().is_empty() {
        TokenRequest::default()
    } else {
        api::parse_json(&req)?
    };
    let seconds = match request.expires_in_seconds {
        None => DEFAULT_SECONDS,
        Some(n) if (1..=i64::from(MAX_TOKEN_SECONDS)).contains(&n) => n as u32,
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "expires_in_seconds",
                format!("must be an integer from 1 to {MAX_TOKEN_SECONDS}"),
            )]));
        }
    };
    let session_seconds = match request.max_session_duration_seconds {
        None => DEFAULT_SESSION_SECONDS,
        Some(n)
            if (i64::from(MIN_SESSION_SECONDS)..=i64::from(MAX_SESSION_SECONDS)).contains(&n) =>
        {
            n as u32
        }
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "max_session_duration_seconds",
                format!("must be an integer from {MIN_SESSION_SECONDS} to {MAX_SESSION_SECONDS}"),
            )]));
        }
    };
    let deadline_ms = shared::platform::lambda::effective_deadline(
        req.lambda_context_ref().map(|c| c.deadline).unwrap_or(0),
    );
    let token = realtime::mint(
        &app.ledger,
        assemblyai,
        session.user.id,
        seconds,
        session_seconds,
        deadline_ms,
    )
    .await?;
    api::json(StatusCode::OK, &token)
}
