//! DeepL's REST API as DeepL documents it: `POST /v2/translate` with `Authorization: DeepL-Auth-Key
//! …` and a JSON body whose `text` is an array (one translation back per text, same order), and
//! `GET /v2/languages?type=source|target`. 429 and 5xx are retried with backoff inside the
//! deadline; 456 (the account's character quota is used up) never is.
//!
//! Limits (<https://developers.deepl.com/docs/translate/translating-large-volumes>): at most 50
//! texts and 128 KiB of request body per call; [`batch_ranges`] keeps to both.

use std::ops::Range;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub mod config;
#[cfg(feature = "local")]
pub mod sandbox;

use config::DeepLSettings;

use crate::platform::http_client::{Replay, RetryPolicy, VendorClient, VendorError, VendorMessage};

pub const VENDOR: &str = "DeepL";
/// DeepL's per-request cap on `text` entries.
pub const MAX_TEXTS: usize = 50;
/// DeepL's per-request body cap is 128 KiB; kept a little under for the JSON around the texts.
pub const MAX_BODY_BYTES: usize = 120 * 1024;
/// HTTP status DeepL answers when the account's character quota is used up.
pub const QUOTA_EXCEEDED: u16 = 456;
const RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

/// `{"message": "...", "detail": "..."}`, DeepL's error body.
fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value["message"].as_str()?;
    let message = match value["detail"].as_str() {
        Some(detail) if !detail.is_empty() => format!("{message}: {detail}"),
        _ => message.to_owned(),
    };
    Some(VendorMessage {
        code: None,
        message,
    })
}

/// The JSON body of `POST /v2/translate`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TranslateRequest {
    pub text: Vec<String>,
    pub target_lang: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lang: Option<String>,
    /// Only the `prefer_*` values are sent: they never fail on a target without formality.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formality: Option<String>,
    /// Text that informs the translation but is neither translated nor billed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub show_billed_characters: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Translation {
    #[serde(default)]
    pub detected_source_language: Option<String>,
    pub text: String,
    #[serde(default)]
    pub billed_characters: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct TranslateResponse {
    translations: Vec<Translation>,
}

/// One entry of `GET /v2/languages`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Language {
    pub language: String,
    pub name: String,
    #[serde(default)]
    pub supports_formality: Option<bool>,
}

/// The codes DeepL translates from and to, as `/v2/languages` lists them (upper-cased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Languages {
    pub source: Vec<Language>,
    pub target: Vec<Language>,
}

/// DeepL rejects the bare `EN` and `PT` as targets. The rule: `EN` → `EN-US`, `PT` → `PT-BR` (the
/// larger speaker communities); a client wanting the other variant asks for it by name.
pub fn target_code(code: &str) -> String {
    let upper = code.to_ascii_uppercase();
    match upper.as_str() {
        "EN" => "EN-US".to_owned(),
        "PT" => "PT-BR".to_owned(),
        _ => upper,
    }
}

/// DeepL's source codes carry no region: `EN-GB` is sent as `EN`.
pub fn source_code(code: &str) -> String {
    let upper = code.to_ascii_uppercase();
    upper.split('-').next().unwrap_or(&upper).to_owned()
}

/// Consecutive ranges of `texts` that each fit one request (≤ [`MAX_TEXTS`] texts, ≤
/// [`MAX_BODY_BYTES`] of JSON with `context_bytes` of context). A text too large alone gets a
/// range of its own (DeepL will refuse it with 413, which the caller reports).
pub fn batch_ranges(texts: &[String], context_bytes: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = context_bytes + 256;
    for (i, text) in texts.iter().enumerate() {
        // JSON escaping can at most double a text's bytes (plus quotes and a comma).
        let size = text.len() * 2 + 3;
        let full = i - start >= MAX_TEXTS || bytes + size > MAX_BODY_BYTES;
        if i > start && full {
            ranges.push(start..i);
            start = i;
            bytes = context_bytes + 256;
        }
        bytes += size;
    }
    if start < texts.len() {
        ranges.push(start..texts.len());
    }
    ranges
}

#[derive(Debug, Clone)]
pub struct DeepL {
    client: VendorClient,
    base_url: String,
}

impl DeepL {
    /// `settings.max_attempts` bounds the tries of one request (429 and 5xx retried; 456 never).
    pub fn new(settings: &DeepLSettings, timeout: Duration, http: reqwest::Client) -> DeepL {
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        DeepL {
            // Exponential backoff with full jitter; shorter than the SDK's (1 s × 1.6, up to 120 s)
            // because a synchronous translation has a Lambda deadline of seconds.
            client: VendorClient::new(VENDOR, http, timeout, key, parse_error).with_policy(
                RetryPolicy {
                    max_attempts: settings.max_attempts,
                    base_delay: Duration::from_millis(500),
                    max_delay: Duration::from_secs(8),
                },
            ),
            base_url: settings.base_url(),
        }
    }

    /// Translates `request.text`; one translation per text, in order, or an error.
    pub async fn translate(
        &self,
        request: &TranslateRequest,
        deadline_ms: u64,
    ) -> Result<Vec<Translation>, VendorError> {
        let url = format!("{}/v2/translate", self.base_url);
        let response = self
            .client
            .send(
                |http| {
                    http.post(&url)
                        .header(
                            "authorization",
                            format!("DeepL-Auth-Key {}", self.client.key()),
                        )
                        .json(request)
                },
                // A 429 or 5xx means DeepL did not translate; a timeout is handed to the fallback.
                Replay::OnlyIfRefused,
                deadline_ms,
            )
            .await?;
        let body: TranslateResponse = self.client.json(response, RESPONSE_LIMIT).await?;
        if body.translations.len() != request.text.len() {
            return Err(VendorError::InvalidResponse {
                vendor: VENDOR,
                reason: format!(
                    "{} translations for {} texts",
                    body.translations.len(),
                    request.text.len()
                ),
            });
        }
        Ok(body.translations)
    }

    /// `GET /v2/languages?type=source` and `?type=target`.
    pub async fn languages(&self, deadline_ms: u64) -> Result<Languages, VendorError> {
        let list = |kind: &'static str| async move {
            let url = format!("{}/v2/languages?type={kind}", self.base_url);
            let response = self
                .client
                .send(
                    |http| {
                        http.get(&url).header(
                            "authorization",
                            format!("DeepL-Auth-Key {}", self.client.key()),
                        )
                    },
                    Replay::Safe,
                    deadline_ms,
                )
                .await?;
            let mut languages: Vec<Language> = self.client.json(response, RESPONSE_LIMIT).await?;
            for l in &mut languages {
                l.language = l.language.to_ascii_uppercase();
            }
            Ok::<_, VendorError>(languages)
        };
        let (source, target) = tokio::try_join!(list("source"), list("target"))?;
        Ok(Languages { source, target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_english_and_portuguese_targets_get_a_region() {
        assert_eq!(target_code("en"), "EN-US");
        assert_eq!(target_code("PT"), "PT-BR");
        assert_eq!(target_code("en-gb"), "EN-GB");
        assert_eq!(target_code("de"), "DE");
        assert_eq!(source_code("en-gb"), "EN");
        assert_eq!(source_code("ja"), "JA");
    }

    #[test]
    fn batches_keep_to_fifty_texts_and_the_body_limit() {
        let texts: Vec<String> = (0..120).map(|i| format!("line {i}")).collect();
        let ranges = batch_ranges(&texts, 0);
        assert_eq!(ranges, vec![0..50, 50..100, 100..120]);
        let big: Vec<String> = (0..5).map(|_| "x".repeat(30_000)).collect();
        let ranges = batch_ranges(&big, 0);
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
        assert!(batch_ranges(&[], 0).is_empty());
        let huge = vec!["y".repeat(200_000), "z".to_owned()];
        assert_eq!(batch_ranges(&huge, 0), vec![0..1, 1..2]);
    }

    #[test]
    fn error_bodies_are_read_as_deepl_writes_them() {
        let m = parse_error(br#"{"message":"Quota Exceeded"}"#).unwrap();
        assert_eq!(m.message, "Quota Exceeded");
        let m = parse_error(
            br#"{"message":"Bad request","detail":"Value for 'target_lang' not supported."}"#,
        )
        .unwrap();
        assert!(m.message.ends_with("not supported."));
        assert!(parse_error(b"<html>").is_none());
    }

    #[test]
    fn the_body_is_deepls_json() {
        let body = serde_json::to_value(TranslateRequest {
            text: vec!["Hello".into()],
            target_lang: "DE".into(),
            source_lang: None,
            formality: Some("prefer_more".into()),
            context: None,
            show_billed_characters: true,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text":["Hello"],"target_lang":"DE","formality":"prefer_more","show_billed_characters":true})
        );
    }
}
