//! SQS worker: speaks each job with ElevenLabs and stores the audio in R2. Batches of one, so the
//! queue's `MaximumConcurrency` is exactly the number of syntheses in flight (the plan's limit).

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::queue::{self, BatchOptions, RecordError, TtsJob};
use shared::tts::jobs::TtsWorker;

pub const FUNCTION: &str = "tts-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 1,
    // A long text takes a while to speak; never start one that cannot finish.
    per_record_budget: Duration::from_secs(60),
};

pub async fn handle(
    worker: &TtsWorker,
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
        |job: TtsJob, delivery| async move {
            let outcome = worker
                .process(&job, &delivery, deadline_ms)
                .await
                .map_err(|e| RecordError::Failed(e.to_string()))?;
            tracing::info!(
                tts_id = %job.tts_id,
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
