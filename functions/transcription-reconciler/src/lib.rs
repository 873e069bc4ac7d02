//! Scheduled (EventBridge): sends jobs whose first message never left, polls transcriptions whose
//! callback is overdue (AssemblyAI retries callbacks only for minutes), and fails submissions that
//! were interrupted and never confirmed.

use std::time::Instant;

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::domain::transcriptions::{ReconcileReport, TranscriptionWorker};

pub const FUNCTION: &str = "transcription-reconciler";
/// Rows handled per list per run; the schedule comes back for the rest.
const BATCH: i64 = 200;

pub async fn handle(
    worker: &TranscriptionWorker,
    event: LambdaEvent<Value>,
) -> Result<ReconcileReport, Error> {
    let started = Instant::now();
    let cold_start = shared::platform::telemetry::take_cold_start();
    // The schedule's event carries nothing we need; the database says what is due.
    let report = worker.reconcile(BATCH).await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        resent = report.resent,
        polled = report.polled,
        abandoned = report.abandoned,
        failures = report.failures,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "reconcile"
    );
    Ok(report)
}
