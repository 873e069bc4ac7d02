//! The batch runner for SQS-triggered workers: bounded concurrency, partial batch failures that name
//! only real message ids, and a deadline guard that never starts work it cannot finish.
//!
//! Messages carry ids only; the business id inside is the idempotency key (SQS message ids change on
//! redrive, so they never are).

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::platform::db::{self, DbError, DbPool, Type};

/// One SQS delivery, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: Option<String>,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("could not enqueue the job: {0}")]
pub struct SendError(pub String);

/// Sends small JSON job messages to one SQS queue.
#[derive(Debug, Clone)]
pub struct JobQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// An SQS client from the standard AWS environment (`AWS_REGION`, the Lambda role's credentials,
/// `AWS_ENDPOINT_URL_SQS` locally), on the same ring-backed rustls as everything else.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&crate::platform::aws::sdk_config().await)
}

impl JobQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> JobQueue {
        JobQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn send<T: Serialize>(&self, job: &T) -> Result<(), SendError> {
        let body = serde_json::to_string(job).map_err(|e| SendError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| SendError(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    /// The outbox's second half: sends `job` for row `id`, then records it with `mark_sent` (an
    /// `UPDATE … SET message_sent_at = now() … WHERE id = $1`). False when the send failed; the
    /// reconciler sends it later. A failed mark only costs a harmless second message.
    pub async fn send_and_mark<T: Serialize>(
        &self,
        db: &DbPool,
        mark_sent: &'static str,
        id: Uuid,
        job: &T,
    ) -> bool {
        if let Err(e) = self.send(job).await {
            tracing::warn!(job_id = %id, error = %e, "job not enqueued; the reconciler will send it");
            return false;
        }
        let marked = async {
            let client = db::client(db).await?;
            db::query(&client, mark_sent, &[(&id, Type::UUID)])
                .await
                .map_err(DbError::from)
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(job_id = %id, error = %e, "could not record the sent message");
        }
        true
    }
}

/// How a worker runs its batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Records processed at once.
    pub concurrency: usize,
    /// A record is not started unless this much time is left before the Lambda deadline.
    pub per_record_budget: Duration,
}

/// Why one record did not succeed; it is reported for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Failed(String),
}

/// The whole batch failed: Lambda retries every record (Powertools raises in this case too).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("every record in the batch failed ({0} records)")]
    AllFailed(usize),
    #[error("a failed record has no message id, so it cannot be reported alone")]
    UnidentifiedFailure,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    Unparsable,
    NotStarted,
}

fn millis_left(deadline_ms: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    deadline_ms.saturating_sub(now)
}

/// Runs `handler` over every record whose body parses as `T`. `deadline_ms` is the Lambda deadline
/// (`Context::deadline`, ms since the epoch).
pub async fn run_batch<T, F, Fut>(
    event: SqsEvent,
    deadline_ms: u64,
    options: BatchOptions,
    handler: F,
) -> Result<SqsBatchResponse, BatchError>
where
    T: DeserializeOwned,
    F: Fn(T, Delivery) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let total = event.records.len();
    let handler = &handler;
    let outcomes: Vec<(Option<String>, Outcome)> = futures_util::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.filter(|id| !id.is_empty());
            // Checked when the record is about to start, not when the batch arrived.
            let left_ms = millis_left(deadline_ms);
            if left_ms < options.per_record_budget.as_millis() as u64 {
                tracing::warn!(message_id = ?id, left_ms, deadline_ms, "too close to the deadline to start; left for redelivery");
                return (id, Outcome::NotStarted);
            }
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let delivery = Delivery {
                message_id: id.clone(),
                receive_count,
            };
            let body = record.body.unwrap_or_default();
            let job = match serde_json::from_str::<T>(&body) {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(message_id = ?id, error = %e, "unparsable message; left for the DLQ");
                    return (id, Outcome::Unparsable);
                }
            };
            match handler(job, delivery).await {
                Ok(()) => (id, Outcome::Done),
                Err(e) => {
                    tracing::warn!(message_id = ?id, error = %e, "record failed; it will be redelivered");
                    (id, Outcome::Failed)
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;

    let mut response = SqsBatchResponse::default();
    let mut failed = 0;
    for (id, outcome) in outcomes {
        if outcome == Outcome::Done {
            continue;
        }
        failed += 1;
        let Some(id) = id else {
            return Err(BatchError::UnidentifiedFailure);
        };
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    if total > 0 && failed == total {
        return Err(BatchError::AllFailed(total));
    }
    Ok(response)
}

/// A worker function's whole Lambda handler: the deadline as Lambda (or `cargo lambda watch`) gives
/// it, the batch through [`run_batch`], and a log line per record and per batch.
pub async fn run_worker<T, F, Fut, O, E>(
    function: &'static str,
    event: lambda_http::LambdaEvent<SqsEvent>,
    options: BatchOptions,
    process: F,
) -> Result<SqsBatchResponse, BatchError>
where
    T: DeserializeOwned + Debug,
    F: Fn(T, Delivery, u64) -> Fut,
    Fut: Future<Output = Result<O, E>>,
    O: Debug,
    E: Display,
{
    let deadline_ms = crate::platform::lambda::effective_deadline(event.context.deadline);
    let request_id = event.context.request_id.clone();
    let cold_start = crate::platform::telemetry::take_cold_start();
    let records = event.payload.records.len();
    let process = &process;
    let response = run_batch(
        event.payload,
        deadline_ms,
        options,
        |job: T, delivery: Delivery| async move {
            let job_label = format!("{job:?}");
            let receive_count = delivery.receive_count;
            let outcome = process(job, delivery, deadline_ms)
                .await
                .map_err(|e| RecordError::Failed(e.to_string()))?;
            tracing::info!(function, job = %job_label, receive_count, ?outcome, "job advanced");
            Ok(())
        },
    )
    .await?;
    tracing::info!(
        request_id,
        function,
        cold_start,
        records,
        failures = response.batch_item_failures.len(),
        "batch"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Job {
        transcription_id: String,
    }

    /// An SQS event exactly as Lambda delivers it.
    fn event(bodies: &[&str]) -> SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::json!({
                    "messageId": format!("059f36b4-87a3-44ab-83d2-66197{i:07}"),
                    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "1795316400000",
                        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                        "ApproximateFirstReceiveTimestamp": "1795316400001"
                    },
                    "messageAttributes": {},
                    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:parley-transcriptions",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn far() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000
    }

    const OPTIONS: BatchOptions = BatchOptions {
        concurrency: 4,
        per_record_budget: Duration::from_secs(5),
    };

    fn ids(response: &SqsBatchResponse) -> Vec<String> {
        let mut ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_clean_batch_reports_no_failures() {
        let ok = r#"{"transcription_id":"t1"}"#;
        let response = run_batch::<Job, _, _>(event(&[ok, ok, ok]), far(), OPTIONS, |_, _| async {
            Ok(())
        })
        .await
        .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let wire = serde_json::to_value(&response).unwrap();
        assert_eq!(wire, serde_json::json!({"batchItemFailures": []}));
    }

    #[tokio::test]
    async fn only_the_failed_and_unparsable_records_are_named() {
        let bodies = [
            r#"{"transcription_id":"ok"}"#,
            r#"{"transcription_id":"boom"}"#,
            "not json",
            r#"{"x":1}"#,
        ];
        let response =
            run_batch::<Job, _, _>(event(&bodies), far(), OPTIONS, |job, _| async move {
                if job.transcription_id == "boom" {
                    Err(RecordError::Failed("vendor 500".into()))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert_eq!(
            ids(&response),
            vec![
                "059f36b4-87a3-44ab-83d2-661970000001",
                "059f36b4-87a3-44ab-83d2-661970000002",
                "059f36b4-87a3-44ab-83d2-661970000003"
            ]
        );
        let wire = serde_json::to_string(&response).unwrap();
        assert!(
            wire.starts_with(r#"{"batchItemFailures":[{"itemIdentifier":"#),
            "{wire}"
        );
    }

    #[tokio::test]
    async fn records_are_not_started_when_the_deadline_is_near() {
        let started = AtomicUsize::new(0);
        let ok = r#"{"transcription_id":"t"}"#;
        let deadline = far() - 60_000 + 200; // 200 ms left, budget 5 s
        let response = run_batch::<Job, _, _>(event(&[ok, ok]), deadline, OPTIONS, |_, _| {
            started.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert!(matches!(response, Err(BatchError::AllFailed(2))));
        assert_eq!(started.load(Ordering::SeqCst), 0, "nothing was started");

        // With time for one record, the rest are reported untouched.
        let seen = Mutex::new(Vec::new());
        let deadline = far() - 60_000 + 5_300;
        let options = BatchOptions {
            concurrency: 1,
            per_record_budget: Duration::from_secs(5),
        };
        let response = run_batch::<Job, _, _>(event(&[ok, ok, ok]), deadline, options, |job, _| {
            seen.lock().unwrap().push(job.transcription_id);
            async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(response.batch_item_failures.len(), 2);
    }

    #[tokio::test]
    async fn a_batch_that_fails_entirely_is_an_error() {
        let response = run_batch::<Job, _, _>(event(&["{}", "[]"]), far(), OPTIONS, |_, _| async {
            Ok(())
        })
        .await;
        assert!(matches!(response, Err(BatchError::AllFailed(2))));
    }

    #[tokio::test]
    async fn the_receive_count_reaches_the_handler() {
        let mut e = event(&[r#"{"transcription_id":"t"}"#]);
        e.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), "5".into());
        let seen = Mutex::new(None);
        run_batch::<Job, _, _>(e, far(), OPTIONS, |_, delivery| {
            *seen.lock().unwrap() = Some(delivery);
            async { Ok(()) }
        })
        .await
        .unwrap();
        let delivery = seen.lock().unwrap().clone().unwrap();
        assert_eq!(delivery.receive_count, 5);
        assert_eq!(
            delivery.message_id.as_deref(),
            Some("059f36b4-87a3-44ab-83d2-661970000000")
        );
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let ok = r#"{"transcription_id":"t"}"#;
        let options = BatchOptions {
            concurrency: 3,
            per_record_budget: Duration::from_millis(1),
        };
        run_batch::<Job, _, _>(event(&[ok; 10]), far(), options, |_, _| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let running = &running;
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
