//! The local stand-in for Lambda's event sources (feature `local`; never in a Lambda binary).
//!
//! `cargo lambda watch` serves the Lambda invoke API but polls no queues, so the pump does what the
//! SQS event source mapping does in AWS: receive, invoke the worker with the event shape AWS sends,
//! and delete the messages not reported in `batchItemFailures`. A failed message is left alone and
//! comes back after its visibility timeout; after `maxReceiveCount` receives moto moves it to the DLQ.

pub mod sandbox;
pub mod telephony;

use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

pub const REGION: &str = "us-east-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// A vendor the sandbox can stand in for: its key variable and the base URLs it redirects.
#[derive(Debug)]
pub struct Vendor {
    pub name: &'static str,
    pub key: &'static str,
    pub base_urls: &'static [&'static str],
    /// Variables set to the sandbox's own values (credentials it checks, the key it signs with),
    /// and base URLs that take a path after the sandbox's address.
    pub fixed: &'static [(&'static str, SandboxValue)],
}

#[derive(Debug, Clone, Copy)]
pub enum SandboxValue {
    Literal(&'static str),
    /// The sandbox's URL followed by this path.
    UrlWithPath(&'static str),
}

pub const VENDORS: &[Vendor] = &[
    Vendor {
        name: "AssemblyAI",
        key: "ASSEMBLYAI_API_KEY",
        base_urls: &["ASSEMBLYAI_BASE_URL", "ASSEMBLYAI_STREAMING_BASE_URL"],
        fixed: &[],
    },
    Vendor {
        name: "ElevenLabs",
        key: "ELEVENLABS_API_KEY",
        base_urls: &["ELEVENLABS_BASE_URL"],
        fixed: &[],
    },
    Vendor {
        name: "Telnyx",
        key: "TELNYX_API_KEY",
        base_urls: &[],
        fixed: &[
            ("TELNYX_BASE_URL", SandboxValue::UrlWithPath("/v2")),
            // The sandbox signs webhooks with its own Ed25519 key; the functions get its public half.
            (
                "TELNYX_PUBLIC_KEY",
                SandboxValue::Literal(crate::vendors::telnyx::config::SANDBOX_PUBLIC_KEY_B64),
            ),
        ],
    },
    Vendor {
        name: "SignalWire",
        key: "SIGNALWIRE_API_TOKEN",
        base_urls: &["SIGNALWIRE_SPACE_URL"],
        fixed: &[
            (
                "SIGNALWIRE_PROJECT_ID",
                SandboxValue::Literal(crate::vendors::signalwire::config::SANDBOX_PROJECT_ID),
            ),
            (
                "SIGNALWIRE_SIGNING_KEY",
                SandboxValue::Literal(crate::vendors::signalwire::config::SANDBOX_SIGNING_KEY),
            ),
        ],
    },
    Vendor {
        name: "DeepL",
        key: "DEEPL_API_KEY",
        base_urls: &["DEEPL_BASE_URL"],
        fixed: &[],
    },
    Vendor {
        name: "OpenAI",
        key: "OPENAI_API_KEY",
        base_urls: &["OPENAI_BASE_URL"],
        fixed: &[],
    },
    Vendor {
        name: "Stripe",
        key: "STRIPE_SECRET_KEY",
        base_urls: &["STRIPE_BASE_URL"],
        fixed: &[
            // The sandbox signs its events with a fixed endpoint secret; the receiver gets it.
            (
                "STRIPE_WEBHOOK_SECRET",
                SandboxValue::Literal(crate::vendors::stripe::config::SANDBOX_WEBHOOK_SECRET),
            ),
        ],
    },
];

/// The key value the sandbox accepts for `vendor`.
fn sandbox_key(vendor: &Vendor) -> &'static str {
    match vendor.key {
        "TELNYX_API_KEY" => crate::vendors::telnyx::config::SANDBOX_API_KEY,
        "SIGNALWIRE_API_TOKEN" => crate::vendors::signalwire::config::SANDBOX_API_TOKEN,
        "STRIPE_SECRET_KEY" => crate::vendors::stripe::config::SANDBOX_SECRET_KEY,
        _ => "sandbox",
    }
}

/// For every vendor whose key `lookup` does not find (or finds empty): the variables that point
/// it at the sandbox at `sandbox_url`, with a placeholder key. Returns them and the vendors' names.
pub fn sandbox_env(
    sandbox_url: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let mut env = Vec::new();
    let mut names = Vec::new();
    for vendor in VENDORS {
        if lookup(vendor.key).is_some_and(|k| !k.trim().is_empty()) {
            continue;
        }
        names.push(vendor.name);
        env.push((vendor.key, sandbox_key(vendor).to_owned()));
        for url in vendor.base_urls {
            env.push((*url, sandbox_url.to_owned()));
        }
        for (name, value) in vendor.fixed {
            let value = match value {
                SandboxValue::Literal(v) => (*v).to_owned(),
                SandboxValue::UrlWithPath(path) => format!("{sandbox_url}{path}"),
            };
            env.push((*name, value));
        }
    }
    (env, names)
}

/// A queue the pump drains into a function.
#[derive(Debug, Clone)]
pub struct Route {
    pub queue_url: String,
    pub queue_arn: String,
    pub function: String,
    pub batch_size: i32,
}

/// What one pass over a queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PumpPass {
    pub received: usize,
    pub deleted: usize,
    /// Left for redelivery (reported failed, or the whole invocation failed).
    pub kept: usize,
}

/// An SQS client for moto (or any endpoint) with static test credentials.
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .http_client(crate::platform::aws::https_client())
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "parley-local",
            "parley-local-secret",
            None,
            None,
            "parley-local",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn sqs_error<E>(e: aws_sdk_sqs::error::SdkError<E>) -> String
where
    E: std::error::Error + std::fmt::Debug + 'static,
{
    aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()
}

/// Creates `name` and its `name-dlq` as the template does (redrive after `max_receive_count`),
/// with a short visibility timeout so local retries come back quickly. Returns the route.
pub async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    function: &str,
    visibility_seconds: u32,
    max_receive_count: u32,
) -> Result<Route, String> {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(sqs_error)?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(sqs_error)?;
    let queue_url = queue.queue_url().unwrap_or_default().to_owned();
    let queue_arn = queue_arn(sqs, &queue_url).await?;
    Ok(Route {
        queue_url,
        queue_arn,
        function: function.to_owned(),
        batch_size: 5,
    })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sqs_error)?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("no ARN for {url}"))
}

/// The SQS event Lambda's event source mapping delivers, record by record.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attr = |name: MessageSystemAttributeName| {
                m.attributes()
                    .and_then(|a| a.get(&name))
                    .cloned()
                    .unwrap_or_default()
            };
            json!({
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": {
                    "ApproximateReceiveCount": attr(MessageSystemAttributeName::ApproximateReceiveCount),
                    "SentTimestamp": attr(MessageSystemAttributeName::SentTimestamp),
                    "SenderId": attr(MessageSystemAttributeName::SenderId),
                    "ApproximateFirstReceiveTimestamp": attr(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp),
                },
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// An EventBridge scheduled event, as a `Schedule` source delivers it.
pub fn scheduled_event() -> Value {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/parley-local-schedule")],
        "detail": {}
    })
}

/// Invokes `function` through the Lambda invoke API that `cargo lambda watch` serves. `Ok(None)`
/// means the function itself failed (`X-Amz-Function-Error`).
pub async fn invoke(
    http: &reqwest::Client,
    invoke_base: &str,
    function: &str,
    payload: &Value,
) -> Result<Option<Value>, String> {
    let response = http
        .post(format!(
            "{invoke_base}/2015-03-31/functions/{function}/invocations"
        ))
        .json(payload)
        // The first invocation compiles the function.
        .timeout(Duration::from_secs(900))
        .send()
        .await
        .map_err(|e| format!("invoking {function}: {e}"))?;
    let failed =
        response.headers().contains_key("x-amz-function-error") || !response.status().is_success();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("invoking {function}: {e}"))?;
    if failed {
        tracing::warn!(function, body = %String::from_utf8_lossy(&body), "function error");
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Receives one batch from `route` (long-polling up to `wait_seconds`), invokes its function and
/// deletes what succeeded.
pub async fn pump_once(
    sqs: &aws_sdk_sqs::Client,
    http: &reqwest::Client,
    invoke_base: &str,
    route: &Route,
    wait_seconds: i32,
) -> Result<PumpPass, String> {
    let received = sqs
        .receive_message()
        .queue_url(&route.queue_url)
        .max_number_of_messages(route.batch_size)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(sqs_error)?;
    let messages = received.messages();
    if messages.is_empty() {
        return Ok(PumpPass::default());
    }
    let event = sqs_event(messages, &route.queue_arn);
    let answer = invoke(http, invoke_base, &route.function, &event).await?;
    // As the event source mapping does: a malformed response fails the whole batch.
    let failed: Option<Vec<String>> = answer.as_ref().and_then(|a| {
        if a.is_null() {
            return Some(Vec::new());
        }
        a.get("batchItemFailures")?
            .as_array()?
            .iter()
            .map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
            .collect()
    });
    let mut pass = PumpPass {
        received: messages.len(),
        ..PumpPass::default()
    };
    let Some(failed) = failed else {
        pass.kept = messages.len();
        return Ok(pass);
    };
    for m in messages {
        if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
            pass.kept += 1;
            continue;
        }
        sqs.delete_message()
            .queue_url(&route.queue_url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .map_err(sqs_error)?;
        pass.deleted += 1;
    }
    Ok(pass)
}

/// Drains `routes` forever, and invokes each of `scheduled` every `schedule_every`.
pub async fn run(
    sqs: aws_sdk_sqs::Client,
    invoke_base: String,
    routes: Vec<Route>,
    scheduled: Vec<String>,
    schedule_every: Duration,
) {
    let http = crate::platform::http_client::http_client(Duration::from_secs(900));
    let mut next_schedule = tokio::time::Instant::now() + schedule_every;
    loop {
        for route in &routes {
            match pump_once(&sqs, &http, &invoke_base, route, 1).await {
                Ok(pass) if pass.received > 0 => println!(
                    "pump: {} ← {}: {} received, {} done, {} left for retry",
                    route.function,
                    route.queue_url.rsplit('/').next().unwrap_or_default(),
                    pass.received,
                    pass.deleted,
                    pass.kept
                ),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("pump: {}: {e}", route.function);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        if tokio::time::Instant::now() >= next_schedule {
            next_schedule = tokio::time::Instant::now() + schedule_every;
            for function in &scheduled {
                if let Err(e) = invoke(&http, &invoke_base, function, &scheduled_event()).await {
                    eprintln!("pump: scheduled {function}: {e}");
                }
            }
        }
    }
}
