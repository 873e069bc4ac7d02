//! The HTTP client every vendor call goes through: a timeout on every attempt, retries with
//! exponential backoff and full jitter on 429, 5xx and (for safe requests) timeouts, `Retry-After`
//! honoured, and never a retry that would outlive the Lambda deadline. Errors keep the vendor's
//! message and never the key.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::platform::lambda::now_ms;

/// Time kept back from the deadline for recording the outcome after the last attempt.
const DEADLINE_RESERVE: Duration = Duration::from_millis(1_500);
/// The longest vendor message kept in an error or a job's `error` column.
const MESSAGE_LIMIT: usize = 500;

/// How a request may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Reads and other requests with no side effect: retried after timeouts too.
    Safe,
    /// Requests that create something billable: retried only when the vendor answered that it did
    /// not act (429, 500, 503, other 5xx from the vendor itself) or the connection never opened. A
    /// timeout, a 502 or a 504 (a proxy gave up on a vendor that may have finished) may hide a
    /// success, so it is returned to the caller, who knows how to find out.
    OnlyIfRefused,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// What a vendor said when it refused, parsed by that vendor's own error format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorMessage {
    /// A machine code when the vendor has one (ElevenLabs' `detail.status`).
    pub code: Option<String>,
    pub message: String,
}

type ErrorParser = fn(&[u8]) -> Option<VendorMessage>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum VendorError {
    #[error("{vendor} answered {status}: {message}")]
    Status {
        vendor: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// No answer in time. `maybe_processed`: the request had been sent, so the vendor may have acted.
    #[error("{vendor} did not answer in time")]
    Timeout {
        vendor: &'static str,
        maybe_processed: bool,
    },
    #[error("{vendor} could not be reached: {reason}")]
    Unreachable {
        vendor: &'static str,
        reason: String,
    },
    #[error("{vendor} sent a response Parley cannot use: {reason}")]
    InvalidResponse {
        vendor: &'static str,
        reason: String,
    },
}

impl VendorError {
    /// Worth trying again later (in a later delivery of the job).
    pub fn is_transient(&self) -> bool {
        match self {
            VendorError::Status { status, .. } => is_retryable_status(*status),
            VendorError::Timeout { .. } | VendorError::Unreachable { .. } => true,
            VendorError::InvalidResponse { .. } => false,
        }
    }

    /// True when the vendor certainly did not act on the request.
    pub fn certainly_not_processed(&self) -> bool {
        match self {
            VendorError::Status { status, .. } => !may_hide_success(*status),
            VendorError::Unreachable { .. } => true,
            VendorError::Timeout {
                maybe_processed, ..
            } => !maybe_processed,
            VendorError::InvalidResponse { .. } => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            VendorError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            VendorError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// A gateway's error: the vendor behind it may have acted before the proxy gave up.
fn may_hide_success(status: u16) -> bool {
    matches!(status, 502 | 504)
}

/// A vendor's HTTP client: one per vendor, built once per cold start.
#[derive(Clone)]
pub struct VendorClient {
    vendor: &'static str,
    http: reqwest::Client,
    timeout: Duration,
    policy: RetryPolicy,
    key: SecretString,
    parse_error: ErrorParser,
}

impl std::fmt::Debug for VendorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorClient")
            .field("vendor", &self.vendor)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// One reqwest client for the process: rustls on ring with the Mozilla roots compiled in, so a
/// Lambda cold start reads no certificate store and builds no second crypto provider.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // HTTP/1.1 only: each vendor call is one request on a kept-alive connection, and leaving out
    // the h2 stack keeps every binary smaller.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
        // Vendor keys travel in headers (ElevenLabs' `xi-api-key` is custom, so no client strips it
        // on a cross-host hop): a redirect is answered as the vendor's refusal, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client configuration is static")
}

/// Time left before `deadline_ms` (ms since the epoch), less the reserve. 0 means "unknown": the
/// caller has no Lambda deadline, and a minute is assumed.
fn budget(deadline_ms: u64) -> Duration {
    if deadline_ms == 0 {
        return Duration::from_secs(60);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms())).saturating_sub(DEADLINE_RESERVE)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

impl VendorClient {
    pub fn new(
        vendor: &'static str,
        http: reqwest::Client,
        timeout: Duration,
        key: SecretString,
        parse_error: ErrorParser,
    ) -> VendorClient {
        VendorClient {
            vendor,
            http,
            timeout,
            policy: RetryPolicy::default(),
            key,
            parse_error,
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> VendorClient {
        self.policy = policy;
        self
    }

    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The key, for the vendor module to put in its auth header. Never logged.
    pub fn key(&self) -> &str {
        self.key.expose_secret()
    }

    /// Sends the request `build` makes (called again for every attempt) and returns the first 2xx.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        replay: Replay,
        deadline_ms: u64,
    ) -> Result<Response, VendorError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = budget(deadline_ms);
            if left.is_zero() {
                return Err(VendorError::Timeout {
                    vendor: self.vendor,
                    maybe_processed: false,
                });
            }
            let outcome = build(&self.http)
                .timeout(self.timeout.min(left))
                .send()
                .await;
            let (error, retry_after) = match outcome {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => self.refusal(response).await,
                Err(e) => (self.transport_error(&e), None),
            };
            let retryable = match &error {
                VendorError::Status { status, .. } => {
                    is_retryable_status(*status)
                        && (replay == Replay::Safe || !may_hide_success(*status))
                }
                VendorError::Unreachable { .. } => true,
                VendorError::Timeout { .. } => replay == Replay::Safe,
                VendorError::InvalidResponse { .. } => false,
            };
            if !retryable || attempt >= self.policy.max_attempts {
                return Err(error);
            }
            let delay = self.delay(attempt, retry_after);
            // Waiting past the deadline would only turn a clean failure into a killed Lambda.
            if delay + self.timeout.min(Duration::from_secs(2)) > budget(deadline_ms) {
                tracing::warn!(
                    vendor = self.vendor,
                    attempt,
                    "no time left to retry before the deadline"
                );
                return Err(error);
            }
            tracing::info!(
                vendor = self.vendor,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying vendor call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^n)], but never sooner than `Retry-After`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.policy.max_delay);
        let jitter = Duration::from_millis(rand::rng().random_range(0..=exp.as_millis() as u64));
        match retry_after {
            Some(after) => after.max(jitter),
            None => jitter,
        }
    }

    async fn refusal(&self, response: Response) -> (VendorError, Option<Duration>) {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Error bodies are small; a huge one is cut rather than buffered.
        let body = response.bytes().await.unwrap_or_default();
        let body = &body[..body.len().min(16 * 1024)];
        let parsed = (self.parse_error)(body);
        let message = parsed
            .as_ref()
            .map(|m| m.message.clone())
            .unwrap_or_else(|| canonical(status));
        (
            VendorError::Status {
                vendor: self.vendor,
                status: status.as_u16(),
                code: parsed.and_then(|m| m.code),
                message: self.scrub(&message),
            },
            retry_after,
        )
    }

    fn transport_error(&self, e: &reqwest::Error) -> VendorError {
        if e.is_timeout() {
            VendorError::Timeout {
                vendor: self.vendor,
                // reqwest cannot say whether bytes left; only a refused connection proves nothing did.
                maybe_processed: !e.is_connect(),
            }
        } else if e.is_connect() {
            VendorError::Unreachable {
                vendor: self.vendor,
                reason: "connection failed".to_owned(),
            }
        } else if e.is_builder() {
            // Never sent: the request could not even be built.
            VendorError::Unreachable {
                vendor: self.vendor,
                reason: "the request could not be built".to_owned(),
            }
        } else {
            VendorError::Timeout {
                vendor: self.vendor,
                maybe_processed: true,
            }
        }
    }

    /// Cuts a vendor message to size and removes the key if the vendor echoed it.
    pub fn scrub(&self, message: &str) -> String {
        let key = self.key.expose_secret();
        let mut text = if key.len() >= 8 {
            message.replace(key, "[redacted]")
        } else {
            message.to_owned()
        };
        text.retain(|c| !c.is_control());
        if text.len() > MESSAGE_LIMIT {
            let mut cut = MESSAGE_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    /// Reads a JSON body, bounded, into `T`; any mismatch is an `InvalidResponse` naming the field.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
        limit: usize,
    ) -> Result<T, VendorError> {
        let bytes = self.body(response, limit).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map_err(|e| VendorError::InvalidResponse {
            vendor: self.vendor,
            reason: format!("at {}: {}", e.path(), e.inner()),
        })
    }

    /// Reads a body up to `limit` bytes.
    pub async fn body(&self, mut response: Response, limit: usize) -> Result<Vec<u8>, VendorError> {
        if response
            .content_length()
            .is_some_and(|n| n as usize > limit)
        {
            return Err(self.too_large(limit));
        }
        let mut out = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if out.len() + chunk.len() > limit {
                        return Err(self.too_large(limit));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(self.transport_error(&e)),
            }
        }
    }

    fn too_large(&self, limit: usize) -> VendorError {
        VendorError::InvalidResponse {
            vendor: self.vendor,
            reason: format!("the body exceeds {limit} bytes"),
        }
    }
}

fn canonical(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("unexpected status")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> VendorClient {
        VendorClient::new(
            "acme",
            http_client(Duration::from_secs(1)),
            Duration::from_secs(1),
            SecretString::from("sk_live_abcdef123456"),
            |_| None,
        )
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let date = soon
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        let parsed = parse_retry_after(&date).unwrap();
        assert!(parsed > Duration::from_secs(25) && parsed <= Duration::from_secs(30));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn messages_lose_the_key_and_stay_short() {
        let c = client();
        assert_eq!(
            c.scrub("invalid key sk_live_abcdef123456\n"),
            "invalid key [redacted]"
        );
        let long = "é".repeat(400);
        let cut = c.scrub(&long);
        assert!(cut.len() <= MESSAGE_LIMIT + '…'.len_utf8());
        assert!(!format!("{c:?}").contains("abcdef"));
    }

    #[test]
    fn delays_grow_are_capped_and_respect_retry_after() {
        let c = client().with_policy(RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
        });
        for attempt in 1..10 {
            let d = c.delay(attempt, None);
            let cap = (100u64 << (attempt - 1)).min(800);
            assert!(d <= Duration::from_millis(cap), "{attempt}: {d:?}");
        }
        assert!(c.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn only_throttling_and_server_errors_are_transient() {
        let status = |s: u16| VendorError::Status {
            vendor: "acme",
            status: s,
            code: None,
            message: String::new(),
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(401).is_transient());
        assert!(status(400).certainly_not_processed());
        assert!(status(500).certainly_not_processed() && status(503).certainly_not_processed());
        // A gateway gave up on a vendor that may have finished.
        assert!(status(502).is_transient() && !status(502).certainly_not_processed());
        assert!(status(504).is_transient() && !status(504).certainly_not_processed());
        let timeout = VendorError::Timeout {
            vendor: "acme",
            maybe_processed: true,
        };
        assert!(timeout.is_transient() && !timeout.certainly_not_processed());
    }
}
