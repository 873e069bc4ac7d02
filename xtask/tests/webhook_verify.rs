//! `xtask webhook verify` run as the real binary: JSON Lines piped in, one verdict per line out,
//! judged on the vendors' published vectors.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// RFC 8032 TEST 1's public key; the signature was made over `1700000000|<TELNYX_BODY>` with an
/// independent Ed25519 implementation (see shared's telnyx::signature tests).
const TELNYX_PUBLIC_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const TELNYX_BODY: &str = r#"{"data":{"event_type":"call.initiated","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2018-02-02T22:25:27.521992Z","payload":{"call_control_id":"v3:abc","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d"},"record_type":"event"},"meta":{"attempt":1,"delivered_to":"https://example.com/webhooks"}}"#;
const TELNYX_SIGNATURE: &str =
    "5YOJxhujfrLk/GmMrV+xy87YdaFXr6tnUsnN7H40G0wfwhNHsbOXkVJRkZhVlqIgdpUN37wxGo3YPr3X5Js3Aw==";

fn telnyx_line(body: &str, extra: Value) -> Value {
    let mut line = json!({
        "vendor": "telnyx",
        "headers": {
            "telnyx-timestamp": "1700000000",
            "telnyx-signature-ed25519": TELNYX_SIGNATURE,
            "content-type": "application/json"
        },
        "body": body,
        "public_key_b64": TELNYX_PUBLIC_KEY,
    });
    for (k, v) in extra.as_object().expect("an object") {
        line[k] = v.clone();
    }
    line
}

/// Twilio's documented example (twilio.com/docs/usage/webhooks/webhooks-security).
fn twilio_line(signature_header: Option<&str>) -> Value {
    let mut headers = json!({"content-type": "application/x-www-form-urlencoded"});
    if let Some(signature) = signature_header {
        headers["x-twilio-signature"] = json!(signature);
    }
    json!({
        "vendor": "twilio",
        "url": "https://mycompany.com/myapp.php?foo=1&bar=2",
        "headers": headers,
        "body": "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212",
        "secret": "12345",
    })
}

fn signalwire_form_line() -> Value {
    // Vector B of SignalWire's validator tests: Scheme B over the sorted form parameters.
    json!({
        "vendor": "signalwire",
        "url": "https://mycompany.com/myapp.php?foo=1&bar=2",
        "headers": {
            "x-signalwire-signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            "content-type": "application/x-www-form-urlencoded"
        },
        "body": "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309",
        "secret": "12345",
    })
}

fn signalwire_body_hash_line(body: &str) -> Value {
    // Vector C: the signature covers a URL whose bodySHA256 is the hash of {"event":"call.state"}.
    json!({
        "vendor": "signalwire",
        "url": "https://example.ngrok.io/webhook?bodySHA256=69f3cbfc18e386ef8236cb7008cd5a54b7fed637a8cb3373b5a1591d7f0fd5f4",
        "headers": {"x-signalwire-signature": "dfO9ek8mxyFtn2nMz24plPmPfIY=", "content-type": "application/json"},
        "body": body,
        "secret": "PSKtest1234567890abcdef",
    })
}

fn run(input: &str) -> (Option<i32>, Vec<String>, String) {
    run_with_tolerance(input, None)
}

fn run_with_tolerance(input: &str, tolerance: Option<&str>) -> (Option<i32>, Vec<String>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.env_remove("TELNYX_WEBHOOK_TOLERANCE_SECONDS");
    if let Some(seconds) = tolerance {
        command.env("TELNYX_WEBHOOK_TOLERANCE_SECONDS", seconds);
    }
    let mut child = command
        .args(["webhook", "verify"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let output = child.wait_with_output().expect("xtask finishes");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    (
        output.status.code(),
        stdout.lines().map(str::to_owned).collect(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn every_line_judged_exits_zero_with_one_verdict_per_line() {
    let tampered = TELNYX_BODY.replace("call.initiated", "call.hangup");
    let mut input = jsonl(&[
        telnyx_line(TELNYX_BODY, json!({"now": 1_700_000_100})),
        telnyx_line(TELNYX_BODY, json!({})),
        telnyx_line(&tampered, json!({"now": 1_700_000_000})),
        telnyx_line(TELNYX_BODY, json!({"now": 1_700_000_100, "tolerance": 60})),
        telnyx_line(TELNYX_BODY, json!({"now": 1_699_999_000})),
        signalwire_form_line(),
        signalwire_body_hash_line(r#"{"event":"call.state"}"#),
        signalwire_body_hash_line(r#"{"event":"DIFFERENT"}"#),
        twilio_line(Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")),
        twilio_line(None),
    ]);
    input.push('\n'); // A blank line is skipped, not judged.
    let (code, lines, stderr) = run(&input);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(lines.len(), 10, "{lines:#?}");
    assert_eq!(lines[0], "valid");
    // Without "now" the clock is used: a 2023 timestamp is long past the default 300 s.
    assert!(
        lines[1].starts_with("invalid: timestamp ")
            && lines[1].ends_with(" s older than the 300 s tolerance"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "invalid: signature does not match");
    assert_eq!(
        lines[3],
        "invalid: timestamp 100 s older than the 60 s tolerance"
    );
    assert_eq!(
        lines[4],
        "invalid: timestamp 1000 s in the future, beyond the 300 s tolerance"
    );
    assert_eq!(lines[5], "valid");
    assert_eq!(lines[6], "valid");
    assert_eq!(
        lines[7],
        "invalid: signature matches the URL but its bodySHA256 is not the SHA-256 of the body"
    );
    assert_eq!(lines[8], "valid");
    assert_eq!(lines[9], "invalid: missing header x-twilio-signature");
}

#[test]
fn a_line_that_is_not_a_request_is_an_error_and_the_rest_are_still_judged() {
    let input = format!(
        "{}\nnot json\n{}\n",
        twilio_line(Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")),
        json!({"vendor": "svix", "headers": {}, "body": ""}),
    ) + &jsonl(&[twilio_line(Some("GvWf1cFY/Q7PnoempGyD5oXAezc="))]);
    let (code, lines, stderr) = run(&input);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("2 line(s) could not be judged"), "{stderr}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], "valid");
    assert!(
        lines[1].starts_with("error: not a captured request:"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "error: unknown vendor \"svix\"; expected telnyx, signalwire, twilio or stripe"
    );
    assert_eq!(lines[3], "valid");
}

#[test]
fn no_secret_is_echoed() {
    let mut line = twilio_line(Some("wrong"));
    line["secret"] = json!("s3cr3t-auth-token");
    let (code, lines, stderr) = run(&jsonl(&[line]));
    assert_eq!(code, Some(0));
    assert_eq!(lines, vec!["invalid: signature does not match".to_owned()]);
    assert!(!stderr.contains("s3cr3t") && !lines[0].contains("s3cr3t"));
}

#[test]
fn the_configured_tolerance_is_the_default() {
    let input = jsonl(&[telnyx_line(TELNYX_BODY, json!({"now": 1_700_001_000}))]);
    let (code, lines, _) = run(&input);
    assert_eq!(code, Some(0));
    assert_eq!(
        lines,
        vec!["invalid: timestamp 1000 s older than the 300 s tolerance".to_owned()]
    );
    let (code, lines, stderr) = run_with_tolerance(&input, Some("1800"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines, vec!["valid".to_owned()]);
    let (code, lines, stderr) = run_with_tolerance(&input, Some("a week"));
    assert_eq!(code, Some(1));
    assert!(lines.is_empty());
    assert!(
        stderr.contains("TELNYX_WEBHOOK_TOLERANCE_SECONDS must be whole seconds from 1 to 3600"),
        "{stderr}"
    );
}

/// A current-API-version event; its two signatures were computed once with an independent
/// implementation (Python's `hmac`/`hashlib`) over `1700000000.<STRIPE_BODY>` (see shared's
/// stripe::signature tests).
const STRIPE_BODY: &str = r#"{"id":"evt_1PwpIkLkdIwHu7ixsZcvB1Eb","object":"event","api_version":"2026-07-29.dahlia","created":1700000000,"data":{"object":{"id":"sub_1PwpIjLkdIwHu7ixMBP5n4bO","object":"subscription","status":"active"}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"customer.subscription.updated"}"#;
const STRIPE_V1: &str = "1642e20899a2e5ef3522687ef49160d8fa9d955a31ab9dc86dcd77242d49a3c7";
const STRIPE_ROTATED_V1: &str = "538487d58577aecec48b0ef5e26b45b0f3540823a410cc5696a8c39a7eb015d2";

fn stripe_line(body: &str, header: &str, secret: &str, extra: Value) -> Value {
    let mut line = json!({
        "vendor": "stripe",
        "headers": {"stripe-signature": header, "content-type": "application/json; charset=utf-8"},
        "body": body,
        "secret": secret,
    });
    for (k, v) in extra.as_object().expect("an object") {
        line[k] = v.clone();
    }
    line
}

#[test]
fn stripe_lines_are_judged_with_the_receivers_verifier() {
    let header = format!("t=1700000000,v1={STRIPE_V1}");
    let rotating = format!("t=1700000000,v1={STRIPE_ROTATED_V1},v1={STRIPE_V1},v0=00");
    let tampered = STRIPE_BODY.replace("active", "canceled");
    let input = jsonl(&[
        stripe_line(
            STRIPE_BODY,
            &header,
            "whsec_test_secret",
            json!({"now": 1_700_000_100}),
        ),
        // While a secret is rolled: Stripe signs with both, the line may name both.
        stripe_line(
            STRIPE_BODY,
            &rotating,
            "whsec_rotated_0123456789abcdef",
            json!({"now": 1_700_000_100}),
        ),
        stripe_line(
            STRIPE_BODY,
            &header,
            "whsec_other, whsec_test_secret",
            json!({"now": 1_700_000_100}),
        ),
        stripe_line(
            &tampered,
            &header,
            "whsec_test_secret",
            json!({"now": 1_700_000_100}),
        ),
        stripe_line(
            STRIPE_BODY,
            &header,
            "whsec_test_secret",
            json!({"now": 1_700_000_400}),
        ),
        stripe_line(
            STRIPE_BODY,
            &header,
            "whsec_test_secret",
            json!({"now": 1_700_000_400, "tolerance": 600}),
        ),
        // The key is the whole whsec_ string: its tail alone does not verify.
        stripe_line(
            STRIPE_BODY,
            &header,
            "test_secret",
            json!({"now": 1_700_000_100}),
        ),
        stripe_line(
            STRIPE_BODY,
            "t=1700000000,v0=abc",
            "whsec_test_secret",
            json!({"now": 1_700_000_100}),
        ),
    ]);
    let (code, lines, stderr) = run(&input);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(
        lines,
        vec![
            "valid",
            "valid",
            "valid",
            "invalid: signature does not match",
            "invalid: timestamp 400 s older than the 300 s tolerance",
            "valid",
            "invalid: signature does not match",
            "invalid: malformed header stripe-signature: no signatures found with expected scheme v1",
        ]
    );
    assert!(!stderr.contains("whsec_"));
}
