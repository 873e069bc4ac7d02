//! ElevenLabs text-to-speech as ElevenLabs documents it: `POST /v1/text-to-speech/{voice_id}
//! ?output_format=…` with `xi-api-key`, a JSON body, and binary audio back. Errors are
//! `{"detail": {"status", "message"}}`; a 429 says whether the plan's concurrency is full
//! (`too_many_concurrent_requests`: wait for a slot) or ElevenLabs is overloaded (`system_busy`: back off).
//!
//! A synthesis is paid, so an attempt only starts when its whole timeout fits before the deadline:
//! one cut short by the deadline may have been billed and cannot be repeated.

use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub mod config;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod wire;

use config::ElevenLabsSettings;

use crate::platform::http_client::{Replay, RetryPolicy, VendorClient, VendorError, VendorMessage};
use wire::{AUDIO_LIMIT, OutputFormat, VoiceSettings, valid_voice_id};

pub const VENDOR: &str = "ElevenLabs";
/// How long to wait for a concurrency slot before trying again.
const SLOT_WAIT: Duration = Duration::from_millis(750);
/// Kept free after an attempt's full timeout, so storing typical audio and recording the outcome
/// fit before the deadline (a very large upload may not; the next delivery finds it in R2 or not).
const AFTER_ATTEMPT: Duration = Duration::from_secs(10);
/// Per-attempt timeout of a history deletion (a synthesis' own timeout is far longer).
const DELETE_TIMEOUT: Duration = Duration::from_secs(8);
/// Backoff for refusals that are not a full plan (`system_busy`, 5xx, no connection).
const BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(8),
};

/// `{"detail": {"status": "...", "message": "..."}}`, or FastAPI's 422 list.
fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = &value["detail"];
    if let Some(message) = detail["message"].as_str() {
        return Some(VendorMessage {
            code: detail["status"].as_str().map(str::to_owned),
            message: message.to_owned(),
        });
    }
    if let Some(first) = detail.as_array().and_then(|a| a.first()) {
        return Some(VendorMessage {
            code: first["type"].as_str().map(str::to_owned),
            message: first["msg"]
                .as_str()
                .unwrap_or("validation error")
                .to_owned(),
        });
    }
    detail.as_str().map(|m| VendorMessage {
        code: None,
        message: m.to_owned(),
    })
}

/// The JSON body of a synthesis.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpeechRequest {
    pub text: String,
    pub model_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_settings: Option<VoiceSettings>,
}

/// Audio as ElevenLabs returned it.
#[derive(Debug, Clone)]
pub struct Speech {
    pub audio: Vec<u8>,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    /// The `history-item-id` response header: where ElevenLabs keeps a copy (undocumented in the
    /// OpenAPI but sent; see vendors.md), so the copy can be deleted with the job.
    pub history_item_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SynthesisError {
    /// No attempt was made: the deadline was too close for one to finish. Nothing was sent.
    #[error(
        "not started: {left_ms} ms were left before the deadline and a synthesis needs \
         {needed_ms} ms (ELEVENLABS_TIMEOUT_MS plus time to store the audio); nothing was sent to ElevenLabs"
    )]
    NotStarted { left_ms: u64, needed_ms: u64 },
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

impl SynthesisError {
    /// True when ElevenLabs certainly did not act, so nothing was billed.
    pub fn certainly_not_processed(&self) -> bool {
        match self {
            SynthesisError::NotStarted { .. } => true,
            SynthesisError::Vendor(e) => e.certainly_not_processed(),
        }
    }

    /// Worth trying again in a later delivery.
    pub fn is_transient(&self) -> bool {
        match self {
            SynthesisError::NotStarted { .. } => true,
            SynthesisError::Vendor(e) => e.is_transient(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ElevenLabs {
    /// One attempt per `send`: every retry is decided here, where the deadline rule is kept.
    client: VendorClient,
    /// Deletions: short, safe to repeat, so the shared client's ordinary retries apply.
    deletions: VendorClient,
    timeout: Duration,
    base_url: String,
}

#[derive(Deserialize)]
struct Never {}

/// Whether an attempt may start after waiting `wait`; `None` (no deadline known) always may.
fn may_start(left: Option<Duration>, wait: Duration, needed: Duration) -> bool {
    left.is_none_or(|left| left >= wait + needed)
}

/// Full jitter: uniform in [0, min(max, base * 2^(n-1))].
fn backoff(refusals: u32) -> Duration {
    let cap = BACKOFF
        .base_delay
        .saturating_mul(1u32 << refusals.saturating_sub(1).min(16))
        .min(BACKOFF.max_delay);
    Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
}

impl ElevenLabs {
    pub fn new(settings: &ElevenLabsSettings, http: reqwest::Client) -> ElevenLabs {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        ElevenLabs {
            deletions: VendorClient::new(
                VENDOR,
                http.clone(),
                settings.timeout.min(DELETE_TIMEOUT),
                key.clone(),
                parse_error,
            ),
            client: VendorClient::new(VENDOR, http, settings.timeout, key, parse_error)
                .with_policy(RetryPolicy {
                    max_attempts: 1,
                    ..BACKOFF
                }),
            timeout: settings.timeout,
            base_url: settings.base_url.clone(),
        }
    }

    /// The time an attempt needs before the deadline: its full timeout, then storing the result.
    pub fn attempt_budget(&self) -> Duration {
        self.timeout + AFTER_ATTEMPT
    }

    /// Synthesizes `request` in `voice_id`. Paid, so never repeated after a timeout, and no attempt
    /// (the first, after a slot wait, or a retry) starts unless [`Self::attempt_budget`] is left
    /// before `deadline_ms`. A full plan (`too_many_concurrent_requests`) is waited out for as long
    /// as that holds; `system_busy`, 5xx and refused connections back off, at most
    /// `BACKOFF.max_attempts` times.
    pub async fn synthesize(
        &self,
        voice_id: &str,
        format: OutputFormat,
        request: &SpeechRequest,
        deadline_ms: u64,
    ) -> Result<Speech, SynthesisError> {
        if !valid_voice_id(voice_id) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a voice id with unexpected characters".to_owned(),
            }
            .into());
        }
        let url = format!(
            "{}/v1/text-to-speech/{voice_id}?output_format={}",
            self.base_url, format.name
        );
        let needed = self.attempt_budget();
        let left = || {
            (deadline_ms != 0).then(|| {
                Duration::from_millis(deadline_ms.saturating_sub(crate::platform::lambda::now_ms()))
            })
        };
        if !may_start(left(), Duration::ZERO, needed) {
            return Err(SynthesisError::NotStarted {
                left_ms: left().unwrap_or_default().as_millis() as u64,
                needed_ms: needed.as_millis() as u64,
            });
        }
        let mut refusals = 0u32;
        loop {
            let sent = self
                .client
                .send(
                    |http| {
                        http.post(&url)
                            .header("xi-api-key", self.client.key())
                            .header("accept", "audio/*")
                            .json(request)
                    },
                    Replay::OnlyIfRefused,
                    deadline_ms,
                )
                .await;
            let error = match sent {
                Ok(response) => return self.speech(response).await,
                Err(e) => e,
            };
            let wait = if error.code() == Some("too_many_concurrent_requests") {
                // Our other jobs hold the plan's slots; one frees when a synthesis ends.
                tracing::info!(vendor = VENDOR, "plan concurrency full; waiting for a slot");
                SLOT_WAIT + Duration::from_millis(rand::rng().random_range(0..=500))
            } else if error.is_transient() && error.certainly_not_processed() {
                refusals += 1;
                if refusals >= BACKOFF.max_attempts {
                    return Err(error.into());
                }
                let delay = backoff(refusals);
                tracing::info!(vendor = VENDOR, refusals, delay_ms = delay.as_millis() as u64, error = %error, "backing off");
                delay
            } else {
                return Err(error.into());
            };
            // The refusal proves nothing was sent, so the job can wait for a later delivery.
            if !may_start(left(), wait, needed) {
                tracing::warn!(vendor = VENDOR, error = %error, "no time left for another attempt");
                return Err(error.into());
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn speech(&self, response: reqwest::Response) -> Result<Speech, SynthesisError> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let request_id = header("request-id");
        // Read defensively: a malformed id is dropped rather than stored or put in a URL later.
        let history_item_id = header("history-item-id").filter(|id| valid_history_item_id(id));
        if content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            // A 200 with JSON is not audio; read it as an error to report it.
            let _ = self.client.json::<Never>(response, 64 * 1024).await;
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "answered JSON instead of audio".to_owned(),
            }
            .into());
        }
        let audio = self.client.body(response, AUDIO_LIMIT).await?;
        if audio.is_empty() {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "an empty audio body".to_owned(),
            }
            .into());
        }
        Ok(Speech {
            audio,
            content_type,
            request_id,
            history_item_id,
        })
    }

    /// Deletes a history item (`DELETE /v1/history/{history_item_id}`); a 404 means it is gone
    /// already. Both count as done, and a repeat is harmless, so it is retried like a read.
    pub async fn delete_history_item(&self, id: &str, deadline_ms: u64) -> Result<(), VendorError> {
        if !valid_history_item_id(id) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a history item id with unexpected characters".to_owned(),
            });
        }
        let url = format!("{}/v1/history/{id}", self.base_url);
        let sent = self
            .deletions
            .send(
                |http| http.delete(&url).header("xi-api-key", self.client.key()),
                Replay::Safe,
                deadline_ms,
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// History item ids are short tokens of letters and digits; anything else never reaches a path.
pub fn valid_history_item_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_elevenlabs_writes_them() {
        let m = parse_error(br#"{"detail":{"status":"voice_not_found","message":"A voice with the voice_id was not found."}}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("voice_not_found"));
        assert_eq!(m.message, "A voice with the voice_id was not found.");
        let v = parse_error(br#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"value_error.missing"}]}"#).unwrap();
        assert_eq!(v.message, "field required");
        assert!(parse_error(b"oops").is_none());
    }

    #[test]
    fn an_attempt_starts_only_with_its_whole_budget_left() {
        let needed = Duration::from_secs(70);
        assert!(may_start(
            Some(Duration::from_secs(70)),
            Duration::ZERO,
            needed
        ));
        assert!(!may_start(
            Some(Duration::from_secs(69)),
            Duration::ZERO,
            needed
        ));
        assert!(!may_start(
            Some(Duration::from_secs(70)),
            Duration::from_millis(1),
            needed
        ));
        assert!(may_start(None, Duration::from_secs(3600), needed));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for refusals in 1..10 {
            let cap = (500u64 << (refusals - 1)).min(8_000);
            assert!(
                backoff(refusals) <= Duration::from_millis(cap),
                "{refusals}"
            );
        }
    }

    #[test]
    fn not_starting_is_transient_and_proves_nothing_was_sent() {
        let e = SynthesisError::NotStarted {
            left_ms: 3_000,
            needed_ms: 70_000,
        };
        assert!(e.certainly_not_processed() && e.is_transient());
        assert!(e.to_string().contains("nothing was sent"), "{e}");
    }
}
