//! `POST /webhooks/assemblyai?transcription_id=…&sig=…`: AssemblyAI's "transcript ready" callback.
//!
//! Authenticated by the URL's MAC of the job id (checked before any query, so a forged callback
//! costs nothing) and by the job's secret header (compared in constant time); URLs made before the
//! MAC existed carry no `sig` and still pass on the header alone. Answered fast, and handed to the
//! worker through the queue. The body is only a hint. A transient failure answers 503, never 4xx:
//! AssemblyAI gives up on a callback forever after any 4xx.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiError, ApiResult};
use shared::domain::transcriptions::{self, CallbackError, CallbackSigner};
use shared::platform::queue::JobQueue;
use shared::vendors::assemblyai::{Callback, WEBHOOK_AUTH_HEADER};
use uuid::Uuid;

pub const FUNCTION: &str = "assemblyai-webhook";

pub async fn handle(
    app: &App,
    queue: &JobQueue,
    signer: &CallbackSigner,
    req: Request,
) -> ApiResult {
    let id = api::query_param(&req, "transcription_id")
        .and_then(|v| Uuid::parse_str(&v).ok())
        .ok_or(ApiError::BadCallbackCredentials)?;
    let sig = api::query_param(&req, "sig");
    let secret = req
        .headers()
        .get(WEBHOOK_AUTH_HEADER)
        .ok_or(ApiError::BadCallbackCredentials)?;
    let hint = serde_json::from_slice::<Callback>(req.body().as_ref())
        .ok()
        .and_then(|c| c.transcript_id);
    let accepted = transcriptions::accept_callback(
        &app.db,
        queue,
        signer,
        id,
        sig.as_deref(),
        secret.as_bytes(),
        hint,
    )
    .await;
    match accepted {
        Ok(outcome) => {
            tracing::info!(transcription_id = %id, ?outcome, signed = sig.is_some(), "callback accepted");
            api::json(StatusCode::OK, &json!({ "received": true }))
        }
        Err(CallbackError::Forged) => Err(ApiError::BadCallbackCredentials),
        Err(CallbackError::Db(e)) => Err(ApiError::Unavailable(e.to_string())),
        Err(CallbackError::Queue(e)) => Err(ApiError::Unavailable(e.to_string())),
    }
}
