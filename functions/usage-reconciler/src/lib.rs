//! Scheduled (EventBridge): settles usage reservations whose job ended without settling them, and
//! gives back stored bytes whose object is gone.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::domain::billing::Ledger;

pub const FUNCTION: &str = "usage-reconciler";
const BATCH: i64 = 500;

pub async fn handle(ledger: &Ledger, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let cold_start = shared::platform::telemetry::take_cold_start();
    let report = ledger.reconcile(BATCH).await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        committed = report.committed,
        released = report.released,
        storage_freed = report.storage_freed,
        "reconcile"
    );
    Ok(json!(report))
}
