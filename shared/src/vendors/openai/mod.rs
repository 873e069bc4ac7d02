//! OpenAI chat completions as OpenAI documents them (`POST {OPENAI_BASE_URL}/chat/completions`,
//! `Authorization: Bearer …`), used as the translation fallback. One text is one plain completion;
//! a list of segments is one completion with a structured output whose schema makes every segment
//! its own required key (an array schema would not enforce the count, so segments could be merged
//! or dropped). A `refusal`, `finish_reason: "length"` or `"content_filter"` on a list splits it in
//! halves and tries again; a single segment that still fails is reported by its index.
//!
//! Retries follow openai-python's `_base_client.py`: 408, 409, 429 and 5xx (or `x-should-retry:
//! true`; never when `false`), at most [`MAX_RETRIES`] times, waiting `retry-after-ms` or
//! `retry-after` when 0 < d ≤ 60 s, else `min(0.5 s · 2^n, 8 s)` × jitter 0.75–1. A 429 whose code is
//! `insufficient_quota` (billing) is never retried.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub mod config;
pub mod languages;
#[cfg(feature = "local")]
pub mod sandbox;

use config::OpenAiSettings;

use crate::platform::http_client::{VendorClient, VendorError, VendorMessage, parse_retry_after};
use crate::platform::lambda::now_ms;

pub const VENDOR: &str = "OpenAI";
pub const MAX_RETRIES: u32 = 2;
/// Output room per completion; a batch whose translation would not fit ends `length` and is split.
pub const MAX_COMPLETION_TOKENS: u32 = 4096;
/// OpenAI's error code for an account out of credit (a 429 that waiting does not fix).
pub const INSUFFICIENT_QUOTA: &str = "insufficient_quota";
const RESPONSE_LIMIT: usize = 2 * 1024 * 1024;
/// Kept back from the deadline for recording the outcome.
const DEADLINE_RESERVE: Duration = Duration::from_millis(1_000);

/// `{"error": {"message", "type", "param", "code"}}`.
fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = &value["error"];
    Some(VendorMessage {
        code: error["code"]
            .as_str()
            .or(error["type"].as_str())
            .map(str::to_owned),
        message: error["message"].as_str()?.to_owned(),
    })
}

/// True for OpenAI's "out of credit" answer, which retrying cannot fix.
pub fn is_out_of_quota(e: &VendorError) -> bool {
    e.code() == Some(INSUFFICIENT_QUOTA)
}

/// Reasoning models (o-series, gpt-5) refuse any `temperature` but the default.
pub fn accepts_temperature(model: &str) -> bool {
    !(model.starts_with('o') || model.starts_with("gpt-5"))
}

/// What a translation asks of the model, besides the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instructions {
    /// English name and code of the target, e.g. `German (DE)`.
    pub target: String,
    /// English name of the source, when known.
    pub source: Option<String>,
    /// `Some(true)` formal, `Some(false)` informal.
    pub formal: Option<bool>,
    /// Neighbouring text that informs the translation but is not translated.
    pub context: Option<String>,
}

impl Instructions {
    fn system_prompt(&self, segments: bool) -> String {
        let mut prompt = if segments {
            format!(
                "Translate every value of the user's JSON object into {}. Answer with a JSON \
                 object with exactly the same keys, each value the translation of that key's value.",
                self.target
            )
        } else {
            format!("Translate the user's text into {}.", self.target)
        };
        if let Some(source) = &self.source {
            prompt.push_str(&format!(" The text is in {source}."));
        }
        match self.formal {
            Some(true) => prompt.push_str(" Use a formal register."),
            Some(false) => prompt.push_str(" Use an informal register."),
            None => {}
        }
        if let Some(context) = &self.context {
            prompt.push_str(&format!(
                " For context only (do not translate it): the surrounding conversation is \"{context}\"."
            ));
        }
        prompt.push_str(" Output only the translation, with no notes, quotes or explanations.");
        prompt
    }
}

/// Why OpenAI did not translate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenAiError {
    #[error(transparent)]
    Vendor(#[from] VendorError),
    /// The model refused or its content filter stopped it, on this one segment.
    #[error("OpenAI would not translate segment {index}: {reason}")]
    SegmentRefused { index: usize, reason: String },
    /// The segment's translation does not fit one completion even alone.
    #[error("OpenAI's translation of segment {index} is longer than one completion allows")]
    SegmentTooLong { index: usize },
}

/// How one completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Text(String),
    Length,
    Filtered,
    Refused(String),
}

#[derive(Debug, Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone)]
pub struct OpenAi {
    /// Its key, error scrubbing and bounded JSON reads; the retry loop is OpenAI's own (below).
    client: VendorClient,
    timeout: Duration,
    base_url: String,
    model: String,
}

fn transport_error(e: &reqwest::Error) -> VendorError {
    if e.is_connect() || e.is_builder() {
        VendorError::Unreachable {
            vendor: VENDOR,
            reason: "connection failed".to_owned(),
        }
    } else {
        VendorError::Timeout {
            vendor: VENDOR,
            maybe_processed: true,
        }
    }
}

fn header_delay(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delay = get("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).max(0.0)))
        .or_else(|| {
            let raw = get("retry-after")?;
            raw.trim()
                .parse::<f64>()
                .ok()
                .map(|s| Duration::from_secs_f64(s.max(0.0)))
                .or_else(|| parse_retry_after(raw))
        })?;
    (delay > Duration::ZERO && delay <= Duration::from_secs(60)).then_some(delay)
}

fn backoff(retry: u32) -> Duration {
    let base = (0.5 * 2f64.powi(retry as i32)).min(8.0);
    Duration::from_secs_f64(base * rand::rng().random_range(0.75..=1.0))
}

fn left(deadline_ms: u64) -> Duration {
    if deadline_ms == 0 {
        return Duration::from_secs(60);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms())).saturating_sub(DEADLINE_RESERVE)
}

/// Segments per structured completion: a short schema keeps strict mode fast to compile.
pub const MAX_SEGMENTS: usize = 40;
/// Characters per completion, so a translation (about as many tokens as characters / 2 to / 4)
/// fits [`MAX_COMPLETION_TOKENS`] for most scripts; one that does not ends `length` and is split.
pub const MAX_BATCH_CHARS: usize = 6_000;

/// Consecutive ranges of `texts` within [`MAX_SEGMENTS`] and [`MAX_BATCH_CHARS`].
pub fn chunk_ranges(texts: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut chars) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        let n = text.chars().count();
        if i > start && (i - start >= MAX_SEGMENTS || chars + n > MAX_BATCH_CHARS) {
            ranges.push(start..i);
            (start, chars) = (i, 0);
        }
        chars += n;
    }
    if start < texts.len() {
        ranges.push(start..texts.len());
    }
    ranges
}

/// Splits `text` near its middle at whitespace (or at a character boundary if it has none).
fn halves(text: &str) -> (String, String) {
    let middle = text.len() / 2;
    let cut = text[..middle]
        .rfind(char::is_whitespace)
        .or_else(|| text[middle..].find(char::is_whitespace).map(|i| middle + i))
        .unwrap_or_else(|| {
            let mut m = middle;
            while !text.is_char_boundary(m) {
                m += 1;
            }
            m
        });
    (
        text[..cut].trim_end().to_owned(),
        text[cut..].trim_start().to_owned(),
    )
}

impl OpenAi {
    pub fn new(settings: &OpenAiSettings, timeout: Duration, http: reqwest::Client) -> OpenAi {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        OpenAi {
            client: VendorClient::new(VENDOR, http, timeout, key, parse_error),
            timeout,
            base_url: settings.base_url.clone(),
            model: settings.model.clone(),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The body of one completion.
    pub fn request_body(&self, system: &str, user: &str, schema: Option<Value>) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_completion_tokens": MAX_COMPLETION_TOKENS,
        });
        if accepts_temperature(&self.model) {
            body["temperature"] = json!(0);
        }
        if let Some(schema) = schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "translations", "strict": true, "schema": schema},
            });
        }
        body
    }

    /// Sends one completion with OpenAI's retry rules.
    async fn complete(&self, body: &Value, deadline_ms: u64) -> Result<Reply, VendorError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut retries = 0u32;
        loop {
            let budget = left(deadline_ms);
            if budget.is_zero() {
                return Err(VendorError::Timeout {
                    vendor: VENDOR,
                    maybe_processed: false,
                });
            }
            let sent = self
                .client
                .http()
                .post(&url)
                .bearer_auth(self.client.key())
                .json(body)
                .timeout(self.timeout.min(budget))
                .send()
                .await;
            let (error, should_retry, wait) = match sent {
                Ok(response) if response.status().is_success() => {
                    return self.reply(response).await;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let bytes = response.bytes().await.unwrap_or_default();
                    let parsed = parse_error(&bytes[..bytes.len().min(16 * 1024)]);
                    let error = VendorError::Status {
                        vendor: VENDOR,
                        status,
                        code: parsed.as_ref().and_then(|m| m.code.clone()),
                        message: self.client.scrub(
                            &parsed
                                .map(|m| m.message)
                                .unwrap_or_else(|| format!("HTTP {status}")),
                        ),
                    };
                    let by_status = matches!(status, 408 | 409 | 429) || status >= 500;
                    let should = match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
                        Some("true") => true,
                        Some("false") => false,
                        _ => by_status,
                    } && !is_out_of_quota(&error);
                    (error, should, header_delay(&headers))
                }
                Err(e) => (transport_error(&e), true, None),
            };
            if !should_retry || retries >= MAX_RETRIES {
                return Err(error);
            }
            let delay = wait.unwrap_or_else(|| backoff(retries));
            if delay + self.timeout.min(Duration::from_secs(2)) > left(deadline_ms) {
                tracing::warn!(vendor = VENDOR, error = %error, "no time left to retry before the deadline");
                return Err(error);
            }
            retries += 1;
            tracing::info!(vendor = VENDOR, retries, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn reply(&self, response: reqwest::Response) -> Result<Reply, VendorError> {
        let completion: Completion = self.client.json(response, RESPONSE_LIMIT).await?;
        let choice = completion
            .choices
            .into_iter()
            .next()
            .ok_or(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "no choices".to_owned(),
            })?;
        if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
            return Ok(Reply::Refused(self.client.scrub(&refusal)));
        }
        match choice.finish_reason.as_deref() {
            Some("length") => return Ok(Reply::Length),
            Some("content_filter") => return Ok(Reply::Filtered),
            _ => {}
        }
        match choice.message.content {
            Some(content) => Ok(Reply::Text(content)),
            None => Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a completion without content".to_owned(),
            }),
        }
    }

    /// Translates `texts` (one or many), one translation per text in order, in completions of at
    /// most [`MAX_SEGMENTS`] segments and [`MAX_BATCH_CHARS`] characters.
    pub async fn translate(
        &self,
        texts: &[String],
        instructions: &Instructions,
        deadline_ms: u64,
    ) -> Result<Vec<String>, OpenAiError> {
        let mut out = Vec::with_capacity(texts.len());
        for range in chunk_ranges(texts) {
            let start = range.start;
            out.extend(
                self.translate_from(&texts[range], start, instructions, deadline_ms)
                    .await?,
            );
        }
        Ok(out)
    }

    fn translate_from<'a>(
        &'a self,
        texts: &'a [String],
        first: usize,
        instructions: &'a Instructions,
        deadline_ms: u64,
    ) -> Boxed<'a, Result<Vec<String>, OpenAiError>> {
        Box::pin(async move {
            if texts.len() == 1 {
                return Ok(vec![
                    self.translate_one(&texts[0], first, instructions, deadline_ms)
                        .await?,
                ]);
            }
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = (0..texts.len()).map(|i| format!("s{i}")).collect();
            let user: Map<String, Value> = keys
                .iter()
                .zip(texts)
                .map(|(k, t)| (k.clone(), Value::String(t.clone())))
                .collect();
            let properties: Map<String, Value> = keys
                .iter()
                .map(|k| (k.clone(), json!({"type": "string"})))
                .collect();
            let schema = json!({
                "type": "object",
                "properties": properties,
                "required": keys,
                "additionalProperties": false,
            });
            let body = self.request_body(
                &instructions.system_prompt(true),
                &Value::Object(user).to_string(),
                Some(schema),
            );
            match self.complete(&body, deadline_ms).await? {
                Reply::Text(content) => {
                    let object: Map<String, Value> =
                        serde_json::from_str(&content).map_err(|e| {
                            VendorError::InvalidResponse {
                                vendor: VENDOR,
                                reason: format!("the structured output is not a JSON object: {e}"),
                            }
                        })?;
                    keys.iter()
                        .map(|k| {
                            object
                                .get(k)
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .ok_or_else(|| {
                                    OpenAiError::Vendor(VendorError::InvalidResponse {
                                        vendor: VENDOR,
                                        reason: format!("the structured output lacks {k}"),
                                    })
                                })
                        })
                        .collect()
                }
                // Smaller batches: the failing segment ends up alone and is named.
                reply => {
                    tracing::info!(
                        vendor = VENDOR,
                        segments = texts.len(),
                        ?reply,
                        "splitting a batch"
                    );
                    let (left_half, right_half) = texts.split_at(texts.len() / 2);
                    let mut out = self
                        .translate_from(left_half, first, instructions, deadline_ms)
                        .await?;
                    out.extend(
                        self.translate_from(
                            right_half,
                            first + left_half.len(),
                            instructions,
                            deadline_ms,
                        )
                        .await?,
                    );
                    Ok(out)
                }
            }
        })
    }

    fn translate_one<'a>(
        &'a self,
        text: &'a str,
        index: usize,
        instructions: &'a Instructions,
        deadline_ms: u64,
    ) -> Boxed<'a, Result<String, OpenAiError>> {
        Box::pin(async move {
            let body = self.request_body(&instructions.system_prompt(false), text, None);
            match self.complete(&body, deadline_ms).await? {
                Reply::Text(t) => Ok(t.trim().to_owned()),
                Reply::Refused(reason) => Err(OpenAiError::SegmentRefused { index, reason }),
                Reply::Filtered => Err(OpenAiError::SegmentRefused {
                    index,
                    reason: "stopped by OpenAI's content filter".to_owned(),
                }),
                // A long text is translated in two halves, split at whitespace.
                Reply::Length if text.chars().count() >= 64 => {
                    let (a, b) = halves(text);
                    let a = self
                        .translate_one(&a, index, instructions, deadline_ms)
                        .await?;
                    let b = self
                        .translate_one(&b, index, instructions, deadline_ms)
                        .await?;
                    Ok(format!("{a} {b}"))
                }
                Reply::Length => Err(OpenAiError::SegmentTooLong { index }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_as_openai_writes_them() {
        let m = parse_error(br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("insufficient_quota"));
        let m = parse_error(br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(parse_error(b"nope").is_none());
    }

    #[test]
    fn retry_headers_are_honoured_within_a_minute() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after-ms", "1500".parse().unwrap());
        h.insert("retry-after", "9".parse().unwrap());
        assert_eq!(header_delay(&h), Some(Duration::from_millis(1500)));
        h.remove("retry-after-ms");
        assert_eq!(header_delay(&h), Some(Duration::from_secs(9)));
        h.insert("retry-after", "0.25".parse().unwrap());
        assert_eq!(header_delay(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after", "600".parse().unwrap());
        assert_eq!(header_delay(&h), None);
        for n in 0..6 {
            let d = backoff(n);
            assert!(
                d <= Duration::from_secs(8) && d >= Duration::from_millis(375),
                "{d:?}"
            );
        }
    }

    #[test]
    fn completions_hold_a_bounded_number_of_segments_and_characters() {
        let many: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
        assert_eq!(chunk_ranges(&many), vec![0..40, 40..80, 80..100]);
        let long: Vec<String> = (0..4).map(|_| "x".repeat(2_500)).collect();
        assert_eq!(chunk_ranges(&long), vec![0..2, 2..4]);
    }

    #[test]
    fn reasoning_models_get_no_temperature() {
        assert!(accepts_temperature("gpt-4.1-mini"));
        assert!(!accepts_temperature("o4-mini") && !accepts_temperature("gpt-5-mini"));
    }

    #[test]
    fn long_texts_split_at_whitespace() {
        let (a, b) = halves("one two three four five six");
        assert_eq!(format!("{a} {b}"), "one two three four five six");
        assert!(!a.is_empty() && !b.is_empty());
        let (a, b) = halves("éééééééé");
        assert_eq!(format!("{a}{b}"), "éééééééé");
    }

    #[test]
    fn the_prompt_asks_for_the_translation_only() {
        let i = Instructions {
            target: "German (DE)".into(),
            source: Some("English".into()),
            formal: Some(true),
            context: None,
        };
        let p = i.system_prompt(false);
        assert!(
            p.starts_with("Translate the user's text into German (DE)."),
            "{p}"
        );
        assert!(p.contains("formal register") && p.contains("Output only the translation"));
    }
}
