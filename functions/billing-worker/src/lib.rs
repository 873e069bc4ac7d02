//! SQS worker for the billing queue: applies stored Stripe events (vendors.md §5). Each one is
//! idempotent — a subscription is re-fetched from Stripe and written only if that read is newer
//! than the stored one — so redeliveries, duplicates and out-of-order events are harmless. A
//! failure is retried by SQS; on the last delivery it is recorded on the event and the message
//! goes to the dead-letter queue, whose alarm tells the operator.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::domain::billing::stripe::{BillingJob, BillingWorker};
use shared::platform::queue::{self, BatchOptions};

pub const FUNCTION: &str = "billing-worker";

pub const OPTIONS: BatchOptions = BatchOptions {
    concurrency: 4,
    // One subscription read from Stripe (retried within its deadline) and a few statements.
    per_record_budget: Duration::from_secs(10),
};

pub async fn handle(
    worker: &BillingWorker,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let response = queue::run_worker(
        FUNCTION,
        event,
        OPTIONS,
        |job: BillingJob, delivery, deadline_ms| async move {
            worker.process(&job, &delivery, deadline_ms).await
        },
    )
    .await?;
    Ok(response)
}
