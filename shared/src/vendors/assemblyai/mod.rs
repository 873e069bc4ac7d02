//! AssemblyAI's REST API as AssemblyAI documents it: `Authorization: <key>` (no Bearer),
//! `POST /v2/transcript`, `GET` and `DELETE /v2/transcript/{id}` and the v3 streaming token.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::platform::http_client::{Replay, VendorClient, VendorError, VendorMessage};
pub mod config;
#[cfg(feature = "local")]
pub mod sandbox;

use config::AssemblyAiSettings;

pub const VENDOR: &str = "AssemblyAI";
/// The header AssemblyAI echoes on its callback; its value is the job's secret.
pub const WEBHOOK_AUTH_HEADER: &str = "X-Parley-Webhook-Secret";
/// Ten hours of speech (~90k words, each in `words` and again in `utterances`) is ~20 MB of JSON;
/// five records at once in a 512 MB worker must fit with their parsed copies.
const TRANSCRIPT_LIMIT: usize = 32 * 1024 * 1024;
pub const MAX_TOKEN_SECONDS: u32 = 600;
/// The shortest and longest streaming session a token may allow (AssemblyAI's bounds).
pub const MIN_SESSION_SECONDS: u32 = 60;
pub const MAX_SESSION_SECONDS: u32 = 10_800;

/// AssemblyAI's error body: `{"error": "..."}`.
fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| !b.error.trim().is_empty())
        .map(|b| VendorMessage {
            code: None,
            message: b.error,
        })
}

/// The body of `POST /v2/transcript`, with the options Parley exposes.
#[derive(Clone, Serialize, PartialEq)]
pub struct CreateTranscript {
    pub audio_url: String,
    pub webhook_url: String,
    pub webhook_auth_header_name: String,
    pub webhook_auth_header_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker_labels: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speakers_expected: Option<i32>,
}

// The audio URL is a bearer credential and the header value a secret: neither is printed.
impl std::fmt::Debug for CreateTranscript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTranscript")
            .field("audio_url", &"[presigned]")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_auth_header_name", &self.webhook_auth_header_name)
            .field("webhook_auth_header_value", &"[redacted]")
            .field("language_code", &self.language_code)
            .field("speaker_labels", &self.speaker_labels)
            .field("speakers_expected", &self.speakers_expected)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptStatus {
    Queued,
    Processing,
    Completed,
    Error,
}

/// The fields of AssemblyAI's Transcript object that Parley stores; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Transcript {
    pub id: String,
    pub status: TranscriptStatus,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub words: Option<Vec<Word>>,
    #[serde(default)]
    pub utterances: Option<Vec<Utterance>>,
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub audio_duration: Option<f64>,
    #[serde(default)]
    pub language_code: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// Times are milliseconds, as AssemblyAI sends them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Word {
    pub text: String,
    pub start: i64,
    pub end: i64,
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Utterance {
    pub speaker: String,
    pub text: String,
    pub start: i64,
    pub end: i64,
    pub confidence: f64,
}

/// The callback body. It is a hint only: Parley fetches the transcript with its own key.
#[derive(Debug, Clone, Deserialize)]
pub struct Callback {
    #[serde(default)]
    pub transcript_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamingToken {
    pub token: String,
    pub expires_in_seconds: u32,
}

/// AssemblyAI transcript ids are short tokens of letters, digits and hyphens; anything else is
/// refused before it can reach a URL path.
pub fn valid_transcript_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Transcript {
    /// Checks what Parley relies on, so a surprising answer fails loudly instead of storing junk.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_transcript_id(&self.id) {
            return Err("id is not a transcript id".to_owned());
        }
        if self.status == TranscriptStatus::Completed && self.text.is_none() {
            return Err("a completed transcript has no text".to_owned());
        }
        let times_ok = |start: i64, end: i64| start >= 0 && end >= start;
        if let Some(words) = &self.words
            && words.iter().any(|w| !times_ok(w.start, w.end))
        {
            return Err("a word ends before it starts".to_owned());
        }
        if let Some(utterances) = &self.utterances
            && utterances.iter().any(|u| !times_ok(u.start, u.end))
        {
            return Err("an utterance ends before it starts".to_owned());
        }
        if self
            .audio_duration
            .is_some_and(|d| !d.is_finite() || d < 0.0)
        {
            return Err("audio_duration is negative".to_owned());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct AssemblyAi {
    client: VendorClient,
    base_url: String,
    streaming_base_url: String,
}

impl AssemblyAi {
    /// `settings.api_key` must be set (see `Settings::require_assemblyai`).
    pub fn new(
        settings: &AssemblyAiSettings,
        timeout: std::time::Duration,
        http: reqwest::Client,
    ) -> AssemblyAi {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        AssemblyAi {
            client: VendorClient::new(VENDOR, http, timeout, key, parse_error),
            base_url: settings.base_url.clone(),
            streaming_base_url: settings.streaming_base_url.clone(),
        }
    }

    /// An authorized GET (safe to repeat) whose JSON answer is at most `limit` bytes.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        limit: usize,
        deadline_ms: u64,
    ) -> Result<T, VendorError> {
        let response = self
            .client
            .send(
                |http| http.get(url).header("authorization", self.client.key()),
                Replay::Safe,
                deadline_ms,
            )
            .await?;
        self.client.json(response, limit).await
    }

    pub fn with_client(mut self, f: impl FnOnce(VendorClient) -> VendorClient) -> AssemblyAi {
        self.client = f(self.client);
        self
    }

    /// Submits a transcription job. Not retried after a timeout: the job may exist.
    pub async fn create_transcript(
        &self,
        request: &CreateTranscript,
        deadline_ms: u64,
    ) -> Result<Transcript, VendorError> {
        let url = format!("{}/v2/transcript", self.base_url);
        let response = self
            .client
            .send(
                |http| {
                    http.post(&url)
                        .header("authorization", self.client.key())
                        .json(request)
                },
                Replay::OnlyIfRefused,
                deadline_ms,
            )
            .await?;
        let transcript: Transcript = self.client.json(response, TRANSCRIPT_LIMIT).await?;
        self.checked(transcript)
    }

    pub async fn get_transcript(
        &self,
        id: &str,
        deadline_ms: u64,
    ) -> Result<Transcript, VendorError> {
        if !valid_transcript_id(id) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a transcript id with unexpected characters".to_owned(),
            });
        }
        let url = format!("{}/v2/transcript/{id}", self.base_url);
        let transcript: Transcript = self.get_json(&url, TRANSCRIPT_LIMIT, deadline_ms).await?;
        if transcript.id != id {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "the transcript returned is not the one asked for".to_owned(),
            });
        }
        self.checked(transcript)
    }

    /// Deletes a transcript's data at AssemblyAI (`DELETE /v2/transcript/{id}`). AssemblyAI answers
    /// 200 with the transcript redacted and `status` still `completed`; a 404 means it is already
    /// gone. Both count as done. Deleting twice is harmless, so it is retried like a read.
    pub async fn delete_transcript(&self, id: &str, deadline_ms: u64) -> Result<(), VendorError> {
        if !valid_transcript_id(id) {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "a transcript id with unexpected characters".to_owned(),
            });
        }
        let url = format!("{}/v2/transcript/{id}", self.base_url);
        let sent = self
            .client
            .send(
                |http| http.delete(&url).header("authorization", self.client.key()),
                Replay::Safe,
                deadline_ms,
            )
            .await;
        match sent {
            Ok(response) => {
                // The redacted transcript: only its id is checked, so both documented redactions
                // ("Deleted by user." or an empty text) are accepted.
                #[derive(Deserialize)]
                struct Deleted {
                    id: String,
                }
                let deleted: Deleted = self.client.json(response, TRANSCRIPT_LIMIT).await?;
                if deleted.id != id {
                    return Err(VendorError::InvalidResponse {
                        vendor: VENDOR,
                        reason: "the transcript deleted is not the one asked for".to_owned(),
                    });
                }
                Ok(())
            }
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A one-time token a browser uses to open a streaming session; the key never leaves Parley.
    /// The session it opens ends after `max_session_duration_seconds` (60 to 10,800).
    pub async fn streaming_token(
        &self,
        expires_in_seconds: u32,
        max_session_duration_seconds: u32,
        deadline_ms: u64,
    ) -> Result<StreamingToken, VendorError> {
        let url = format!(
            "{}/v3/token?expires_in_seconds={expires_in_seconds}&max_session_duration_seconds={max_session_duration_seconds}",
            self.streaming_base_url
        );
        #[derive(Deserialize)]
        struct TokenBody {
            token: String,
            #[serde(default)]
            expires_in_seconds: Option<u32>,
        }
        let body: TokenBody = self.get_json(&url, 64 * 1024, deadline_ms).await?;
        if body.token.is_empty() || body.token.len() > 4096 {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: "the token is empty or oversized".to_owned(),
            });
        }
        Ok(StreamingToken {
            token: body.token,
            expires_in_seconds: body.expires_in_seconds.unwrap_or(expires_in_seconds),
        })
    }

    fn checked(&self, transcript: Transcript) -> Result<Transcript, VendorError> {
        transcript
            .validate()
            .map_err(|reason| VendorError::InvalidResponse {
                vendor: VENDOR,
                reason,
            })?;
        Ok(Transcript {
            error: transcript.error.as_deref().map(|e| self.client.scrub(e)),
            ..transcript
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_assemblyai_writes_them() {
        assert_eq!(
            parse_error(br#"{"error":"Invalid API key"}"#)
                .unwrap()
                .message,
            "Invalid API key"
        );
        assert!(parse_error(b"<html>").is_none());
    }

    #[test]
    fn the_create_body_omits_unset_options() {
        let body = CreateTranscript {
            audio_url: "https://r2/a.wav".into(),
            webhook_url: "https://api/webhooks/assemblyai?transcription_id=x".into(),
            webhook_auth_header_name: WEBHOOK_AUTH_HEADER.into(),
            webhook_auth_header_value: "s".into(),
            language_code: None,
            speaker_labels: Some(true),
            speakers_expected: None,
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "audio_url": "https://r2/a.wav",
                "webhook_url": "https://api/webhooks/assemblyai?transcription_id=x",
                "webhook_auth_header_name": "X-Parley-Webhook-Secret",
                "webhook_auth_header_value": "s",
                "speaker_labels": true
            })
        );
    }

    #[test]
    fn transcript_ids_cannot_change_a_path() {
        assert!(valid_transcript_id("5552493-16d8-42d8-8feb-c2a16b56f6e8"));
        assert!(!valid_transcript_id("../v2/upload"));
        assert!(!valid_transcript_id("a?b"));
        assert!(!valid_transcript_id(""));
    }
}
