//! Scheduled (EventBridge): sends speech jobs whose message never left or was lost.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::domain::speech::jobs::TtsWorker;

pub const FUNCTION: &str = "tts-reconciler";
const BATCH: i64 = 200;

pub async fn handle(worker: &TtsWorker, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let cold_start = shared::platform::telemetry::take_cold_start();
    let resent = worker.reconcile(BATCH).await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        resent,
        "reconcile"
    );
    Ok(json!({ "resent": resent }))
}
