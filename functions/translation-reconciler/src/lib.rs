//! Scheduled (EventBridge): sends translation jobs whose message never left or was lost.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::domain::translations::jobs::TranslationJobs;

pub const FUNCTION: &str = "translation-reconciler";
const BATCH: i64 = 200;

pub async fn handle(jobs: &TranslationJobs, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let cold_start = shared::platform::telemetry::take_cold_start();
    let resent = jobs.reconcile(BATCH).await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        resent,
        "reconcile"
    );
    Ok(json!({ "resent": resent }))
}
