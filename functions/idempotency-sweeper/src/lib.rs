//! Scheduled (EventBridge): deletes idempotency records past their expiry, for every scope (upload,
//! transcription and speech keys, and the workers' leases), so the table stays small.

use std::time::Instant;

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::platform::idempotency::Idempotency;

pub const FUNCTION: &str = "idempotency-sweeper";

pub async fn handle(idempotency: &Idempotency, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let started = Instant::now();
    let cold_start = shared::platform::telemetry::take_cold_start();
    // The schedule's event carries nothing we need; the table says what has expired.
    let purged = idempotency.purge_expired().await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        purged,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "purge"
    );
    Ok(json!({ "purged": purged }))
}
