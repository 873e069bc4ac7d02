//! The batch runner for SQS-triggered workers: bounded concurrency, partial batch failures that name
//! only real message ids, and a deadline guard that never starts work it cannot finish.
//!
//! Messages carry ids only; the business id inside is the idempotency key (SQS message ids change on
//! redrive, so they never are).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

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
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let total = event.records.len();
    let handler = &handler;
    let outcomes: Vec<(Option<String>, Outcome)> = futures_util::stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.filter(|id| !id.is_empty());
            // Checked when the record is about to start, not when the batch arrived.
            if millis_left(deadline_ms) < options.per_record_budget.as_millis() as u64 {
                return (id, Outcome::NotStarted);
            }
            let body = record.body.unwrap_or_default();
            let job = match serde_json::from_str::<T>(&body) {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(message_id = ?id, error = %e, "unparsable message; left for the DLQ");
                    return (id, Outcome::Unparsable);
                }
            };
            match handler(job).await {
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
        let response =
            run_batch::<Job, _, _>(event(&[ok, ok, ok]), far(), OPTIONS, |_| async { Ok(()) })
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
        let response = run_batch::<Job, _, _>(event(&bodies), far(), OPTIONS, |job| async move {
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
        let response = run_batch::<Job, _, _>(event(&[ok, ok]), deadline, OPTIONS, |_| {
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
        let response = run_batch::<Job, _, _>(event(&[ok, ok, ok]), deadline, options, |job| {
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
        let response =
            run_batch::<Job, _, _>(event(&["{}", "[]"]), far(), OPTIONS, |_| async { Ok(()) })
                .await;
        assert!(matches!(response, Err(BatchError::AllFailed(2))));
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
        run_batch::<Job, _, _>(event(&[ok; 10]), far(), options, |_| {
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
