//! `Idempotency-Key` on POST routes, over the platform's idempotency store.

use lambda_http::RequestExt;
use serde_json::Value;

use crate::api::{ApiError, ApiResult, FieldError, json};
use crate::platform::idempotency::{Claim, Idempotency, IdempotencyError, valid_key};
use crate::platform::lambda::effective_deadline;

/// `POST` routes that honour `Idempotency-Key`: the first request runs, a repeat with the same body gets the
/// same answer, a repeat with another body is 422, and one while the first is still running is 409.
pub async fn once<F>(
    idempotency: &Idempotency,
    scope: &str,
    req: &lambda_http::Request,
    payload: &Value,
    run: F,
) -> ApiResult
where
    F: std::future::Future<Output = ApiResult>,
{
    once_refreshing(idempotency, scope, req, payload, run, |stored| async {
        Ok(stored)
    })
    .await
}

/// [`once`], for answers that age: a replay hands the stored body to `refresh`, which returns the body
/// to send (e.g. with an expired link renewed) or an error to answer with instead.
pub async fn once_refreshing<F, R, RF>(
    idempotency: &Idempotency,
    scope: &str,
    req: &lambda_http::Request,
    payload: &Value,
    run: F,
    refresh: R,
) -> ApiResult
where
    F: std::future::Future<Output = ApiResult>,
    R: FnOnce(Value) -> RF,
    RF: std::future::Future<Output = Result<Value, ApiError>>,
{
    let Some(raw) = req.headers().get("idempotency-key") else {
        return run.await;
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .ok_or_else(|| ApiError::BadRequest {
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            field: Some("Idempotency-Key".to_owned()),
        })?;
    let deadline_ms = effective_deadline(req.lambda_context_ref().map(|c| c.deadline).unwrap_or(0));
    let lease = match idempotency.claim(scope, key, payload, deadline_ms).await {
        Ok(Claim::Acquired(lease)) => lease,
        Ok(Claim::Completed(stored)) => {
            let status = stored["status"]
                .as_u64()
                .and_then(|s| http::StatusCode::from_u16(s as u16).ok());
            let body = refresh(stored["body"].clone()).await?;
            let mut response = json(status.unwrap_or(http::StatusCode::OK), &body)?;
            response.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
        Err(IdempotencyError::AlreadyInProgress) => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress".to_owned(),
            ));
        }
        Err(IdempotencyError::PayloadMismatch) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "was already used with a different request body",
            )]));
        }
        Err(IdempotencyError::InconsistentState) => {
            return Err(ApiError::Unavailable("idempotency record churn".into()));
        }
        Err(IdempotencyError::Store(e)) => return Err(e.into()),
    };
    match run.await {
        Ok(response) => {
            let body: Value =
                serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
            let stored = serde_json::json!({"status": response.status().as_u16(), "body": body});
            // A failure to record is an error: answering success without a record would allow a rerun.
            idempotency
                .complete(lease, &stored)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(response)
        }
        Err(e) => {
            if let Err(release) = idempotency.release(lease).await {
                tracing::error!(error = %release, "could not release an idempotency record");
            }
            Err(e)
        }
    }
}
