//! SQS worker: streams a call's recording from its vendor into R2 and records it (then queues its
//! transcription when the number asks). Batches of one: a recording can be large and slow.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::calls::ingest::RecordingIngest;
use shared::domain::calls::worker::IngestJob;
use shared::platform::queue::{self, BatchOptions};

pub const FUNCTION: &str = "recording-ingest";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 1,
    // Never start a download that cannot finish before the deadline.
    per_record_budget: Duration::from_secs(120),
};

pub async fn handle(
    ingest: &RecordingIngest,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: IngestJob, delivery, deadline_ms| async move {
            ingest.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
