//! SQS worker: advances each transcription job one step (submit to AssemblyAI, or collect the
//! finished transcript). Failed records are reported alone; untouched ones when the deadline nears.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::queue::{self, BatchOptions, RecordError, TranscriptionJob};
use shared::transcriptions::TranscriptionWorker;

pub const FUNCTION: &str = "transcription-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 5,
    // One submission or fetch with its retries fits comfortably; a record is never cut off midway.
    per_record_budget: Duration::from_secs(20),
};

pub async fn handle(
    worker: &TranscriptionWorker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let deadline_ms = shared::vendor::effective_deadline(event.context.deadline);
    let request_id = event.context.request_id.clone();
    let cold_start = shared::telemetry::take_cold_start();
    let records = event.payload.records.len();
    let response = queue::run_batch(
        event.payload,
        deadline_ms,
        OPTIONS,
        |job: TranscriptionJob, delivery| async move {
            let outcome = worker
                .process(&job, &delivery, deadline_ms)
                .await
                .map_err(|e| RecordError::Failed(e.to_string()))?;
            tracing::info!(
                transcription_id = %job.transcription_id,
                receive_count = delivery.receive_count,
                ?outcome,
                "job advanced"
            );
            Ok(())
        },
    )
    .await?;
    tracing::info!(
        request_id,
        function = FUNCTION,
        cold_start,
        records,
        failures = response.batch_item_failures.len(),
        "batch"
    );
    Ok(response)
}
