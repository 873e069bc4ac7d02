//! Scheduled (EventBridge): removes uploads abandoned for 24 h and finishes deletions R2 refused.

use std::time::Instant;

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::domain::recordings::{ABANDONED_AFTER, Recordings, SweepReport};

pub const FUNCTION: &str = "recordings-sweeper";
/// Rows handled per run; the schedule comes back for the rest.
const BATCH: i64 = 500;

pub async fn handle(
    recordings: &Recordings,
    event: LambdaEvent<Value>,
) -> Result<SweepReport, Error> {
    let started = Instant::now();
    let cold_start = shared::platform::telemetry::take_cold_start();
    // The schedule's event carries nothing we need; the database says what is due.
    let report = recordings
        .sweep(ABANDONED_AFTER, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        abandoned_removed = report.abandoned_removed,
        failed_objects_removed = report.failed_objects_removed,
        deletions_completed = report.deletions_completed,
        failures = report.failures,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "sweep"
    );
    Ok(report)
}
