//! SQS worker: translates each transcript job, DeepL first and OpenAI as the fallback.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::translations::jobs::{TranslationJob, TranslationWorker};
use shared::platform::queue::{self, BatchOptions};

pub const FUNCTION: &str = "translation-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 1,
    // A long transcript is a few dozen DeepL requests, or more completions after a fallback.
    per_record_budget: Duration::from_secs(60),
};

pub async fn handle(
    worker: &TranslationWorker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: TranslationJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
