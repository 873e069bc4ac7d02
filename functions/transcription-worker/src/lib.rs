//! SQS worker: advances each transcription job one step (submit to AssemblyAI, or collect the
//! finished transcript). Failed records are reported alone; untouched ones when the deadline nears.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::transcriptions::TranscriptionJob;
use shared::domain::transcriptions::TranscriptionWorker;
use shared::platform::queue::{self, BatchOptions};

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
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: TranscriptionJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
