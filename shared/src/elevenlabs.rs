//! ElevenLabs text-to-speech as vendors.md §2 documents it: `POST /v1/text-to-speech/{voice_id}
//! ?output_format=…` with `xi-api-key`, a JSON body, and binary audio back. Errors are
//! `{"detail": {"status", "message"}}`; a 429 says whether the plan's concurrency is full
//! (`too_many_concurrent_requests`: wait for a slot) or ElevenLabs is overloaded (`system_busy`: back off).

use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::ElevenLabsSettings;
use crate::tts::{OutputFormat, VoiceSettings, valid_voice_id};
use crate::vendor::{self, Replay, RetryPolicy, VendorClient, VendorError, VendorMessage};

pub const VENDOR: &str = "ElevenLabs";
/// Two minutes of 192 kbit/s MP3 is ~3 MB; long texts in PCM 48 kHz can be far larger.
const AUDIO_LIMIT: usize = 200 * 1024 * 1024;
/// How long to wait for a concurrency slot before trying again.
const SLOT_WAIT: Duration = Duration::from_millis(750);

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
}

#[derive(Debug, Clone)]
pub struct ElevenLabs {
    client: VendorClient,
    base_url: String,
}

#[derive(Deserialize)]
struct Never {}

impl ElevenLabs {
    pub fn new(settings: &ElevenLabsSettings, http: reqwest::Client) -> ElevenLabs {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        ElevenLabs {
            client: VendorClient::new(VENDOR, http, settings.timeout, key, parse_error)
                .with_policy(RetryPolicy {
                    max_attempts: 5,
                    base_delay: Duration::from_millis(500),
                    max_delay: Duration::from_secs(8),
                }),
            base_url: settings.base_url.clone(),
        }
    }

    pub fn with_client(mut self, f: impl FnOnce(VendorClient) -> VendorClient) -> ElevenLabs {
        self.client = f(self.client);
        self
    }

    /// Synthesizes `request` in `voice_id`. Paid, so never repeated after a timeout. A full plan
    /// (`too_many_concurrent_requests`) is waited out until the deadline; `system_busy` and 5xx
    /// back off exponentially (inside [`VendorClient::send`]).
    pub async fn synthesize(
        &self,
        voice_id: &str,
        format: OutputFormat,
        request: &SpeechRequest,
        deadline_ms: u64,
    ) -> Result<Speech, VendorError> {
        if !valid_voice_id(voice_id) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a voice id with unexpected characters".to_owned(),
            });
        }
        let url = format!(
            "{}/v1/text-to-speech/{voice_id}?output_format={}",
            self.base_url, format.name
        );
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
            match sent {
                Ok(response) => {
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let content_type = header("content-type");
                    let request_id = header("request-id");
                    if content_type
                        .as_deref()
                        .is_some_and(|c| c.starts_with("application/json"))
                    {
                        // A 200 with JSON is not audio; read it as an error to report it.
                        let _ = self.client.json::<Never>(response, 64 * 1024).await;
                        return Err(VendorError::InvalidResponse {
                            vendor: VENDOR,
                            reason: "answered JSON instead of audio".to_owned(),
                        });
                    }
                    let audio = self.client.body(response, AUDIO_LIMIT).await?;
                    if audio.is_empty() {
                        return Err(VendorError::InvalidResponse {
                            vendor: VENDOR,
                            reason: "an empty audio body".to_owned(),
                        });
                    }
                    return Ok(Speech {
                        audio,
                        content_type,
                        request_id,
                    });
                }
                Err(e) if e.code() == Some("too_many_concurrent_requests") => {
                    // Our other jobs hold the plan's slots; one frees when a synthesis ends.
                    let wait = SLOT_WAIT + Duration::from_millis(rand::rng().random_range(0..=500));
                    let left = deadline_ms.saturating_sub(vendor::now_ms());
                    if deadline_ms != 0 && left < (wait + Duration::from_secs(5)).as_millis() as u64
                    {
                        return Err(e);
                    }
                    tracing::info!(vendor = VENDOR, "plan concurrency full; waiting for a slot");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
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
}
