//! SQS worker for the account queue: account deletions (everything of a user: rows, R2 objects,
//! vendor copies) and exports (one JSON document in R2). Both are idempotent, so a redelivery
//! finishes whatever an interrupted run left.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::lifecycle::{AccountJob, AccountWorker};
use shared::platform::queue::{self, BatchOptions};

pub const FUNCTION: &str = "account-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 1,
    // A large account lists and deletes many objects; never start one that cannot get far.
    per_record_budget: Duration::from_secs(60),
};

pub async fn handle(
    worker: &AccountWorker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: AccountJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
