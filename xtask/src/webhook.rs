//! `cargo xtask webhook verify`: "why was my webhook refused?". Reads captured requests as JSON
//! Lines on standard input and judges each with the same verifier code the receivers run
//! (`shared::vendors::*::signature`). See docs/webhooks.md.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use shared::vendors::signalwire::signature as signalwire;
use shared::vendors::signature_error::{SignatureError, SignatureErrorKind};
use shared::vendors::stripe::signature as stripe;
use shared::vendors::telnyx::signature as telnyx;

use xtask::Result;

const VENDORS: &str = "telnyx, signalwire, twilio or stripe";

pub fn webhook(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("verify") if args.len() == 1 => verify_stdin(),
        _ => Err(
            "usage: cargo xtask webhook verify < captured-requests.jsonl | webhook replay EVENT-ID"
                .into(),
        ),
    }
}

/// One line per captured request in, one verdict per line out; an error if any line could not be
/// judged (so scripts notice), after every line has been answered.
fn verify_stdin() -> Result {
    let defaults = Defaults {
        clock_now: unix_now(),
        tolerance: configured_tolerance()?,
    };
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut unjudged = 0usize;
    for line in stdin.split(b'\n') {
        let line = line.map_err(|e| format!("reading standard input: {e}"))?;
        let Some(verdict) = verdict_for_line(&line, &defaults) else {
            continue;
        };
        if matches!(verdict, Verdict::Error(_)) {
            unjudged += 1;
        }
        writeln!(stdout, "{verdict}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("writing standard output: {e}"))?;
    }
    match unjudged {
        0 => Ok(()),
        n => Err(format!("{n} line(s) could not be judged")),
    }
}

/// What a line leaves out: the clock, and the tolerance the receivers are configured with.
pub struct Defaults {
    pub clock_now: i64,
    pub tolerance: Duration,
}

/// `TELNYX_WEBHOOK_TOLERANCE_SECONDS` as the receivers read it (1–3600), else Telnyx's 300 s.
fn configured_tolerance() -> Result<Duration> {
    const NAME: &str = "TELNYX_WEBHOOK_TOLERANCE_SECONDS";
    match std::env::var(NAME).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(telnyx::DEFAULT_TOLERANCE),
        Some(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3_600).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{NAME} must be whole seconds from 1 to 3600")),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(SignatureError),
    Error(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid => f.write_str("valid"),
            Verdict::Invalid(reason) => write!(f, "invalid: {reason}"),
            Verdict::Error(reason) => write!(f, "error: {reason}"),
        }
    }
}

/// A request as captured: `{"vendor", "url", "headers", "body", "secret", "public_key_b64",
/// "now", "tolerance"}`; a header may hold a list when it was sent more than once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Captured {
    vendor: String,
    url: Option<String>,
    headers: BTreeMap<String, HeaderValues>,
    body: String,
    secret: Option<String>,
    public_key_b64: Option<String>,
    now: Option<i64>,
    tolerance: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

/// The verdict for one input line; `None` for a blank line.
pub fn verdict_for_line(line: &[u8], defaults: &Defaults) -> Option<Verdict> {
    if line.trim_ascii().is_empty() {
        return None;
    }
    let verdict = serde_json::from_slice::<Captured>(line)
        .map_err(|e| format!("not a captured request: {e}"))
        .and_then(|captured| judge(&captured, defaults));
    Some(match verdict {
        Ok(Ok(())) => Verdict::Valid,
        // An empty key is a line that cannot be judged, not a refused request.
        Ok(Err(e)) if e.kind() == SignatureErrorKind::Misconfigured => {
            Verdict::Error(e.to_string())
        }
        Ok(Err(e)) => Verdict::Invalid(e),
        Err(reason) => Verdict::Error(reason),
    })
}

type Judgement = std::result::Result<(), SignatureError>;

/// One arm per vendor; Stripe and Svix join as one arm and one function each.
fn judge(captured: &Captured, defaults: &Defaults) -> Result<Judgement> {
    let headers = header_map(&captured.headers)?;
    let body = captured.body.as_bytes();
    match captured.vendor.as_str() {
        "telnyx" => judge_telnyx(captured, &headers, body, defaults),
        "signalwire" => {
            let (url, secret) = url_and_secret(captured)?;
            Ok(signalwire::verify(&secret, url, &headers, body))
        }
        "twilio" => {
            let (url, secret) = url_and_secret(captured)?;
            Ok(signalwire::verify_twilio(&secret, url, &headers, body))
        }
        "stripe" => judge_stripe(captured, &headers, body, defaults),
        other => Err(format!("unknown vendor {other:?}; expected {VENDORS}")),
    }
}

fn judge_telnyx(
    captured: &Captured,
    headers: &HeaderMap,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Judgement> {
    let key = captured
        .public_key_b64
        .as_deref()
        .ok_or("telnyx needs \"public_key_b64\" (TELNYX_PUBLIC_KEY)")?;
    let key = telnyx::parse_public_key(key).map_err(|e| e.to_string())?;
    let tolerance = captured
        .tolerance
        .map_or(defaults.tolerance, Duration::from_secs);
    let now = captured.now.unwrap_or(defaults.clock_now);
    Ok(telnyx::verify(&key, headers, body, now, tolerance))
}

/// Stripe: `secret` is the endpoint's signing secret (`whsec_…`; several comma-separated, as in
/// `STRIPE_WEBHOOK_SECRET`); the tolerance is Stripe's 300 s unless the line gives one.
fn judge_stripe(
    captured: &Captured,
    headers: &HeaderMap,
    body: &[u8],
    defaults: &Defaults,
) -> Result<Judgement> {
    let secret = captured
        .secret
        .as_deref()
        .ok_or("stripe needs \"secret\": the endpoint's signing secret (whsec_…)")?;
    let secrets: Vec<SecretString> = secret
        .split(',')
        .map(|s| SecretString::from(s.trim()))
        .collect();
    let tolerance = captured
        .tolerance
        .map_or(stripe::DEFAULT_TOLERANCE, Duration::from_secs);
    let now = captured.now.unwrap_or(defaults.clock_now);
    Ok(stripe::verify(&secrets, headers, body, now, tolerance).map(drop))
}

fn url_and_secret(captured: &Captured) -> Result<(&str, SecretString)> {
    let vendor = &captured.vendor;
    let url = captured
        .url
        .as_deref()
        .ok_or_else(|| format!("{vendor} needs \"url\": the public URL the vendor called"))?;
    let secret = captured
        .secret
        .as_deref()
        .ok_or_else(|| format!("{vendor} needs \"secret\": the signing key or auth token"))?;
    Ok((url, SecretString::from(secret)))
}

fn header_map(headers: &BTreeMap<String, HeaderValues>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, values) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not an HTTP header name"))?;
        let values = match values {
            HeaderValues::One(value) => std::slice::from_ref(value),
            HeaderValues::Many(values) => values.as_slice(),
        };
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header {name} holds characters HTTP does not allow"))?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(line: &str) -> String {
        let defaults = Defaults {
            clock_now: 1_700_000_100,
            tolerance: telnyx::DEFAULT_TOLERANCE,
        };
        verdict_for_line(line.as_bytes(), &defaults)
            .expect("a verdict")
            .to_string()
    }

    #[test]
    fn blank_lines_are_skipped() {
        let defaults = Defaults {
            clock_now: 0,
            tolerance: telnyx::DEFAULT_TOLERANCE,
        };
        assert_eq!(verdict_for_line(b"  \r", &defaults), None);
    }

    #[test]
    fn lines_that_are_not_requests_are_errors_with_a_reason() {
        assert!(verdict("{").starts_with("error: not a captured request:"));
        assert!(verdict(r#"{"vendor":"telnyx","headers":{}}"#).contains("missing field `body`"));
        assert!(
            verdict(r#"{"vendor":"telnyx","headers":{},"body":"","public_key":"x"}"#)
                .contains("unknown field `public_key`")
        );
        assert_eq!(
            verdict(r#"{"vendor":"svix","headers":{},"body":""}"#),
            "error: unknown vendor \"svix\"; expected telnyx, signalwire, twilio or stripe"
        );
        assert_eq!(
            verdict(r#"{"vendor":"stripe","headers":{},"body":""}"#),
            "error: stripe needs \"secret\": the endpoint's signing secret (whsec_…)"
        );
        assert_eq!(
            verdict(
                r#"{"vendor":"stripe","headers":{"stripe-signature":"t=1,v1=00"},"body":"","secret":""}"#
            ),
            "error: the signing key is empty; set STRIPE_WEBHOOK_SECRET"
        );
        assert_eq!(
            verdict(r#"{"vendor":"telnyx","headers":{},"body":""}"#),
            "error: telnyx needs \"public_key_b64\" (TELNYX_PUBLIC_KEY)"
        );
        assert_eq!(
            verdict(r#"{"vendor":"signalwire","headers":{},"body":"","secret":"k"}"#),
            "error: signalwire needs \"url\": the public URL the vendor called"
        );
        assert_eq!(
            verdict(r#"{"vendor":"twilio","headers":{},"body":"","url":"https://h/"}"#),
            "error: twilio needs \"secret\": the signing key or auth token"
        );
        assert_eq!(
            verdict(
                r#"{"vendor":"signalwire","headers":{"x-signalwire-signature":"a"},"body":"","url":"https://h/","secret":""}"#
            ),
            "error: the signing key is empty; set SIGNALWIRE_SIGNING_KEY"
        );
        assert_eq!(
            verdict(
                r#"{"vendor":"twilio","headers":{"bad name":"v"},"body":"","url":"https://h/","secret":"k"}"#
            ),
            "error: \"bad name\" is not an HTTP header name"
        );
        assert_eq!(
            verdict(r#"{"vendor":"telnyx","headers":{},"body":"","public_key_b64":"AAAA"}"#),
            "error: TELNYX_PUBLIC_KEY decodes to 3 bytes; expected the raw 32-byte Ed25519 key from Mission Control (Keys & Credentials → Public Key)"
        );
    }

    #[test]
    fn repeated_headers_are_all_read() {
        // SignalWire's vector A, once among a wrong signature.
        let line = r#"{"vendor":"signalwire","url":"https://example.ngrok.io/webhook","headers":{"x-signalwire-signature":["0000","c3c08c1fefaf9ee198a100d5906765a6f394bf0f"]},"body":"{\"event\":\"call.state\",\"params\":{\"call_id\":\"abc-123\",\"state\":\"answered\"}}","secret":"PSKtest1234567890abcdef"}"#;
        assert_eq!(verdict(line), "valid");
    }
}
