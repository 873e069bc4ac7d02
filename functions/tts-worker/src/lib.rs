//! SQS worker: speaks each job with ElevenLabs and stores the audio in R2. Batches of one, so the
//! queue's `MaximumConcurrency` is exactly the number of syntheses in flight (the plan's limit).

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::speech::jobs::TtsJob;
use shared::domain::speech::jobs::TtsWorker;
use shared::platform::queue::{self, BatchOptions};

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
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: TtsJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
