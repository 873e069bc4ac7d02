//! The webhook verifiers fed the way the receivers will feed them: real API Gateway v2 events
//! (text and `isBase64Encoded` bodies) parsed by lambda_http, the signed URL rebuilt from the
//! request context, and refusals turned into problem responses.

use ed25519_dalek::SigningKey;
use lambda_http::http::{self, HeaderMap, StatusCode};
use parley_tests::Event;
use secrecy::SecretString;
use shared::api::ApiError;
use shared::api::webhook::{raw_body, signed_url};
use shared::vendors::signalwire::signature as signalwire;
use shared::vendors::signature_error::SignatureError;
use shared::vendors::telnyx::signature as telnyx;

const DOMAIN: &str = "abc123.execute-api.us-east-1.amazonaws.com";
const NOW: i64 = 1_700_000_000;

fn telnyx_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

#[test]
fn signed_url_is_https_domain_name_raw_path_and_raw_query() {
    let request = Event::new("POST", "/webhooks/signalwire/status")
        .query("call=%27x%27&b=1+2&b=3")
        // A client-chosen Host header must not decide the URL; API Gateway's domain does.
        .header("host", "attacker.example")
        .request();
    assert_eq!(
        signed_url(&request, None),
        format!("https://{DOMAIN}/webhooks/signalwire/status?call=%27x%27&b=1+2&b=3")
    );
    let bare = Event::new("POST", "/webhooks/telnyx").request();
    assert_eq!(
        signed_url(&bare, None),
        format!("https://{DOMAIN}/webhooks/telnyx")
    );
}

#[test]
fn public_base_url_replaces_scheme_and_host_behind_a_proxy() {
    let request = Event::new("POST", "/webhooks/signalwire/voice")
        .query("n=1")
        .request();
    for base in [
        "https://hooks.example.com",
        "https://hooks.example.com/",
        " https://hooks.example.com ",
    ] {
        assert_eq!(
            signed_url(&request, Some(base)),
            "https://hooks.example.com/webhooks/signalwire/voice?n=1"
        );
    }
    // An empty setting is no setting.
    assert_eq!(
        signed_url(&request, Some("")),
        format!("https://{DOMAIN}/webhooks/signalwire/voice?n=1")
    );
}

#[test]
fn a_base64_encoded_body_reaches_the_verifier_as_the_bytes_telnyx_signed() {
    // Non-ASCII UTF-8 and a raw 0xff: API Gateway base64-encodes bodies it will not pass as text.
    let body: &[u8] = b"{\"data\":{\"event_type\":\"call.hangup\",\"payload\":{\"from\":\"Ren\xc3\xa9e\"}},\"x\":\"\xff\"}";
    let signature = telnyx::sign(&telnyx_key(), NOW, body);
    let request = Event::new("POST", "/webhooks/telnyx")
        .header("content-type", "application/json")
        .header("telnyx-timestamp", &NOW.to_string())
        .header("telnyx-signature-ed25519", &signature)
        .base64_body(body)
        .request();
    assert_eq!(raw_body(&request), body);
    assert_eq!(
        telnyx::verify(
            &telnyx_key().verifying_key(),
            request.headers(),
            raw_body(&request),
            NOW + 5,
            telnyx::DEFAULT_TOLERANCE,
        ),
        Ok(())
    );
    // Verifying the base64 text instead of the decoded bytes would fail: the decoding matters.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    assert_eq!(
        telnyx::verify(
            &telnyx_key().verifying_key(),
            request.headers(),
            encoded.as_bytes(),
            NOW,
            telnyx::DEFAULT_TOLERANCE,
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn a_text_body_is_passed_untouched() {
    let body = "{\"data\":{\"id\":\"e1\"}}\n";
    let signature = telnyx::sign(&telnyx_key(), NOW, body.as_bytes());
    let request = Event::new("POST", "/webhooks/telnyx")
        .header("telnyx-timestamp", &NOW.to_string())
        .header("telnyx-signature-ed25519", &signature)
        .body(body)
        .request();
    assert_eq!(raw_body(&request), body.as_bytes());
    assert_eq!(
        telnyx::verify(
            &telnyx_key().verifying_key(),
            request.headers(),
            raw_body(&request),
            NOW,
            telnyx::DEFAULT_TOLERANCE,
        ),
        Ok(())
    );
}

#[test]
fn a_signalwire_form_callback_verifies_against_the_rebuilt_url_even_base64_encoded() {
    let key = SecretString::from("PSKexample");
    let params = [
        ("CallSid", "CA1234"),
        ("CallStatus", "completed"),
        ("From", "+15551230000"),
        ("To", "+15559870000"),
        ("Called", "+15559870000"),
    ];
    let public = format!("https://{DOMAIN}/webhooks/signalwire/status?call=c1");
    let signature = signalwire::sign_form(&key, &public, &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    for base64 in [false, true] {
        let event = Event::new("POST", "/webhooks/signalwire/status")
            .query("call=c1")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-signalwire-signature", &signature);
        let request = if base64 {
            event.base64_body(body.as_bytes()).request()
        } else {
            event.body(&body).request()
        };
        let url = signed_url(&request, None);
        assert_eq!(url, public);
        assert_eq!(
            signalwire::verify(&key, &url, request.headers(), raw_body(&request)),
            Ok(()),
            "base64 {base64}"
        );
    }
    // SignalWire may have signed the URL with the default port; behind a proxy too.
    let with_port = signalwire::sign_form(
        &key,
        "https://hooks.example.com:443/webhooks/signalwire/status?call=c1",
        &params,
    );
    let request = Event::new("POST", "/webhooks/signalwire/status")
        .query("call=c1")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &with_port)
        .body(&body)
        .request();
    let url = signed_url(&request, Some("https://hooks.example.com"));
    assert_eq!(
        signalwire::verify(&key, &url, request.headers(), raw_body(&request)),
        Ok(())
    );
    // A different query than the one signed is refused.
    let request = Event::new("POST", "/webhooks/signalwire/status")
        .query("call=c2")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-signalwire-signature", &signature)
        .body(&body)
        .request();
    assert_eq!(
        signalwire::verify(
            &key,
            &signed_url(&request, None),
            request.headers(),
            raw_body(&request)
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn refusals_become_400_401_or_500_problems() {
    let cases = [
        (
            SignatureError::MalformedHeader {
                header: telnyx::TIMESTAMP_HEADER,
                reason: "not Unix seconds (digits only)".into(),
            },
            StatusCode::BAD_REQUEST,
        ),
        (
            SignatureError::MissingHeader(telnyx::SIGNATURE_HEADER),
            StatusCode::UNAUTHORIZED,
        ),
        (SignatureError::Mismatch, StatusCode::UNAUTHORIZED),
        (
            SignatureError::TooOld {
                age_seconds: 900,
                tolerance_seconds: 300,
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            SignatureError::EmptyKey("SIGNALWIRE_SIGNING_KEY"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (error, status) in cases {
        assert_eq!(error.status(), status, "{error}");
        let api = ApiError::from(error.clone());
        assert_eq!(api.status(), status, "{error}");
        let response = api.to_response("req-1");
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            shared::api::PROBLEM_JSON
        );
    }
    // The malformed reason is the caller's to read; a 401 says nothing about why.
    let malformed = ApiError::from(SignatureError::MalformedHeader {
        header: telnyx::TIMESTAMP_HEADER,
        reason: "sent more than once".into(),
    });
    assert_eq!(
        malformed.to_string(),
        "malformed header telnyx-timestamp: sent more than once"
    );
    assert_eq!(
        ApiError::from(SignatureError::TooOld {
            age_seconds: 900,
            tolerance_seconds: 300
        })
        .slug(),
        "invalid-callback-credentials"
    );
}

#[test]
fn a_request_without_signature_headers_is_refused_by_every_verifier() {
    let request = Event::new("POST", "/webhooks/telnyx").body("{}").request();
    let empty = HeaderMap::new();
    assert_eq!(request.headers().get(telnyx::SIGNATURE_HEADER), None);
    assert_eq!(
        telnyx::verify(
            &telnyx_key().verifying_key(),
            request.headers(),
            b"{}",
            NOW,
            telnyx::DEFAULT_TOLERANCE
        ),
        Err(SignatureError::MissingHeader(telnyx::TIMESTAMP_HEADER))
    );
    let key = SecretString::from("k");
    assert_eq!(
        signalwire::verify(&key, "https://h/x", &empty, b"{}"),
        Err(SignatureError::MissingHeader(signalwire::SIGNATURE_HEADER))
    );
    assert_eq!(
        signalwire::verify_twilio(&key, "https://h/x", &empty, b"{}"),
        Err(SignatureError::MissingHeader(
            signalwire::TWILIO_SIGNATURE_HEADER
        ))
    );
}
