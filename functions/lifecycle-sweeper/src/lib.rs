//! Scheduled (EventBridge): retries vendor deletions that are due until the vendor confirms,
//! expires speech audio past SPEECH_RETENTION_DAYS and exports past EXPORT_RETENTION_HOURS, and
//! re-sends account deletions whose run never finished.

use std::time::Instant;

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::domain::lifecycle::{LifecycleSweeper, SweepReport};

pub const FUNCTION: &str = "lifecycle-sweeper";
/// Items per kind of work per run; the schedule comes back for the rest.
const BATCH: i64 = 200;

pub async fn handle(
    sweeper: &LifecycleSweeper,
    event: LambdaEvent<Value>,
) -> Result<SweepReport, Error> {
    let started = Instant::now();
    let cold_start = shared::platform::telemetry::take_cold_start();
    let deadline_ms = shared::platform::lambda::effective_deadline(event.context.deadline);
    let report = sweeper
        .sweep(BATCH, deadline_ms)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        vendor_deleted = report.vendor_deletions.deleted,
        vendor_deferred = report.vendor_deletions.deferred,
        speech_expired = report.speech_expired,
        exports_expired = report.exports_expired,
        account_deletions_resent = report.account_deletions_resent,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "sweep"
    );
    Ok(report)
}
