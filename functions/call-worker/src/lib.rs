//! SQS worker: applies stored webhook events to calls (sending Telnyx the commands they call for),
//! places outbound calls and ends them. Small batches, several at once: each job is a few
//! milliseconds of database work and at most a few vendor calls.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::calls::CallJob;
use shared::domain::calls::worker::CallWorker;
use shared::platform::queue::{self, BatchOptions};

pub const FUNCTION: &str = "call-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 4,
    per_record_budget: Duration::from_secs(10),
};

pub async fn handle(
    worker: &CallWorker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: CallJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
