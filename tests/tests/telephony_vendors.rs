//! The telephony vendor layer against HTTP fakes that assert the exact documented requests
//! (wiremock for Telnyx and SignalWire), against the bundled sandboxes, and the SSRF-safe
//! downloader against local HTTP servers and moto's S3 (single PUT and multipart).

use std::time::Duration;

use parley_tests::{Moto, borrow, settings_with};
use serde_json::json;
use shared::platform::download::{
    DownloadError, DownloadPolicy, Downloader, HostRule, MAX_REDIRECTS, PART_BYTES,
};
use shared::platform::http_client::{RetryPolicy, VendorClient, http_client};
use shared::platform::storage::Storage;
use shared::vendors::signalwire::client::{
    self as sw, CallEvent, CreateCall, HangupStatus, SignalWire,
};
use shared::vendors::signalwire::sandbox::SignalWireSandbox;
use shared::vendors::telnyx::client::{self as tx, CommandOptions, DialRequest, Ended, Telnyx};
use shared::vendors::telnyx::sandbox::TelnyxSandbox;
use shared::vendors::telnyx::wire::ClientState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TELNYX_KEY: &str = "KEY0123456789ABCDEF_test";
const PROJECT: &str = "b3877c40-da60-4998-90ad-b792e98472af";
const TOKEN: &str = "PTtest-token-0123456789";
const CCID: &str = "v3:e-31OnvjEM7Y4wvxr3TKNk8M3QyLcGZPiUIzCGtwQtOtEjY-B0urkw";

fn quick(
    vendor: &'static str,
    key: &str,
    parse: fn(&[u8]) -> Option<shared::platform::http_client::VendorMessage>,
) -> VendorClient {
    VendorClient::new(
        vendor,
        http_client(Duration::from_secs(5)),
        Duration::from_secs(5),
        secrecy::SecretString::from(key.to_owned()),
        parse,
    )
    .with_policy(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    })
}

fn telnyx(base: &str) -> Telnyx {
    Telnyx::with_client(quick(tx::VENDOR, TELNYX_KEY, tx::parse_error), base)
}

fn signalwire(space: &str) -> SignalWire {
    SignalWire::with_client(quick(sw::VENDOR, TOKEN, sw::parse_error), PROJECT, space)
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": {"result": "ok"}}))
}

fn options(action: &str) -> CommandOptions {
    CommandOptions {
        command_id: Some(format!("call-1:{action}")),
        client_state: Some(ClientState::encode(b"call-1")),
    }
}

async fn expect_command(server: &MockServer, action: &str, body: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/{action}")))
        .and(header(
            "authorization",
            format!("Bearer {TELNYX_KEY}").as_str(),
        ))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(ok())
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn telnyx_commands_are_sent_exactly_as_documented() {
    let server = MockServer::start().await;
    let t = telnyx(&format!("{}/v2", server.uri()));
    let state = ClientState::encode(b"call-1").as_str().to_owned();
    expect_command(
        &server,
        "answer",
        json!({"command_id": "call-1:answer", "client_state": state}),
    )
    .await;
    expect_command(&server, "speak", json!({"payload": "Hi <there> & welcome", "payload_type": "text", "voice": "AWS.Polly.Joanna-Neural", "language": "en-US", "command_id": "call-1:speak", "client_state": state})).await;
    expect_command(&server, "record_start", json!({"format": "wav", "channels": "dual", "max_length": 600, "command_id": "call-1:record_start", "client_state": state})).await;
    expect_command(&server, "transfer", json!({"to": "+15557654321", "from": "+15551234567", "command_id": "call-1:transfer", "client_state": state})).await;
    expect_command(
        &server,
        "hangup",
        json!({"command_id": "call-1:hangup", "client_state": state}),
    )
    .await;

    t.answer(CCID, &options("answer"), 0).await.unwrap();
    t.speak(
        CCID,
        "Hi <there> & welcome",
        "AWS.Polly.Joanna-Neural",
        Some("en-US"),
        &options("speak"),
        0,
    )
    .await
    .unwrap();
    t.record_start(CCID, Some(600), &options("record_start"), 0)
        .await
        .unwrap();
    t.transfer(
        CCID,
        "+15557654321",
        Some("+15551234567"),
        &options("transfer"),
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        t.hangup(CCID, &options("hangup"), 0).await.unwrap(),
        Ended::Done
    );
    // Refused before sending: nothing reaches the server (the mocks' counts stay exact).
    let too_long = t
        .speak(
            CCID,
            &"a".repeat(3001),
            "female",
            None,
            &CommandOptions::default(),
            0,
        )
        .await;
    assert!(matches!(too_long, Err(tx::TelnyxError::Invalid(_))));
    assert!(matches!(
        t.answer("../../x", &CommandOptions::default(), 0).await,
        Err(tx::TelnyxError::Invalid(_))
    ));
}

#[tokio::test]
async fn telnyx_errors_are_classified() {
    let server = MockServer::start().await;
    let t = telnyx(&format!("{}/v2", server.uri()));
    let ended = json!({"errors": [{"code": "90018", "title": "Call has already ended", "detail": "This call is no longer active and can't receive commands."}]});
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/hangup")))
        .respond_with(ResponseTemplate::new(422).set_body_json(ended.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/speak")))
        .respond_with(ResponseTemplate::new(422).set_body_json(ended))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        t.hangup(CCID, &options("hangup"), 0).await.unwrap(),
        Ended::AlreadyEnded
    );
    let e = t
        .speak(CCID, "hello", "female", None, &options("speak"), 0)
        .await
        .unwrap_err();
    assert!(e.call_has_ended() && !e.is_transient(), "{e}");

    // A 500 is retried (the command_id makes a repeat harmless) and the second answer wins.
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/answer")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/answer")))
        .respond_with(ok())
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    t.answer(CCID, &options("answer"), 0).await.unwrap();

    // Bad credentials: permanent, and the key never appears in the error.
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/record_start")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [{"code": "10009", "title": "Authentication failed", "detail": format!("bad key {TELNYX_KEY}")}]})))
        .expect(1)
        .mount(&server)
        .await;
    let e = t
        .record_start(CCID, None, &options("record_start"), 0)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!e.is_transient() && !e.call_has_ended());
    assert!(!e.to_string().contains(TELNYX_KEY), "{e}");

    // Throttled until the attempts run out: transient.
    Mock::given(method("POST"))
        .and(path(format!("/v2/calls/{CCID}/actions/transfer")))
        .respond_with(ResponseTemplate::new(429))
        .expect(3)
        .mount(&server)
        .await;
    let e = t
        .transfer(CCID, "+15557654321", None, &options("transfer"), 0)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn telnyx_dial_and_recordings_api() {
    let server = MockServer::start().await;
    let t = telnyx(&format!("{}/v2", server.uri()));
    let state = ClientState::encode(b"018f-call");
    Mock::given(method("POST"))
        .and(path("/v2/calls"))
        .and(header(
            "authorization",
            format!("Bearer {TELNYX_KEY}").as_str(),
        ))
        .and(body_json(json!({
            "connection_id": "1684641123236054244", "to": "+15557654321", "from": "+15551234567",
            "webhook_url": "https://api.example.com/webhooks/telnyx", "webhook_url_method": "POST",
            "timeout_secs": 30, "command_id": "018f-call:dial", "client_state": state.as_str(),
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "call_control_id": CCID, "call_leg_id": "2dc6fc34-f9e0-11ea-b68e-02420a0f7768",
            "call_session_id": "2dc1b3c8-f9e0-11ea-bc5a-02420a0f7768", "is_alive": false,
            "record_type": "call", "client_state": state.as_str()}})))
        .expect(1)
        .mount(&server)
        .await;
    let dialed = t
        .dial(
            &DialRequest {
                connection_id: "1684641123236054244".into(),
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                client_state: Some(state.clone()),
                command_id: Some("018f-call:dial".into()),
                webhook_url: Some("https://api.example.com/webhooks/telnyx".into()),
                timeout_secs: Some(30),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(dialed.call_control_id, CCID);
    assert_eq!(
        dialed.call_session_id,
        "2dc1b3c8-f9e0-11ea-bc5a-02420a0f7768"
    );

    let rec = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    Mock::given(method("GET"))
        .and(path(format!("/v2/recordings/{rec}")))
        .and(header("authorization", format!("Bearer {TELNYX_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "call_control_id": CCID, "call_leg_id": "l", "call_session_id": "s", "channels": "dual",
            "created_at": "2018-02-02T22:25:27.521Z",
            "download_urls": {"wav": "https://s3.amazonaws.com/telephony-recorder-prod/r.wav?X-Amz-Expires=600"},
            "duration_millis": 60000, "id": rec, "record_type": "recording", "source": "call", "status": "completed"}})))
        .expect(1)
        .mount(&server)
        .await;
    let r = t.recording(rec, 0).await.unwrap();
    assert_eq!(r.duration_millis, Some(60_000));
    assert!(
        r.download_urls
            .wav
            .unwrap()
            .starts_with("https://s3.amazonaws.com/")
    );

    Mock::given(method("DELETE"))
        .and(path(format!("/v2/recordings/{rec}")))
        .and(header(
            "authorization",
            format!("Bearer {TELNYX_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"id": rec}})))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/recordings/{rec}")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                json!({"errors": [{"code": "10005", "title": "Resource not found"}]}),
            ),
        )
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    assert_eq!(t.delete_recording(rec, 0).await.unwrap(), tx::Deleted::Done);
    assert_eq!(
        t.delete_recording(rec, 0).await.unwrap(),
        tx::Deleted::AlreadyGone
    );

    // A dial answer without its ids is refused, not half-used.
    let other = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/calls"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"call_control_id": CCID}})),
        )
        .mount(&other)
        .await;
    let bad = telnyx(&format!("{}/v2", other.uri()))
        .dial(
            &DialRequest {
                connection_id: "c".into(),
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                ..Default::default()
            },
            0,
        )
        .await;
    assert!(bad.is_err());
}

fn basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROJECT}:{TOKEN}"))
    )
}

#[tokio::test]
async fn signalwire_rest_requests_are_exact() {
    let server = MockServer::start().await;
    let s = signalwire(&server.uri());
    let calls = format!("/api/laml/2010-04-01/Accounts/{PROJECT}/Calls.json");
    Mock::given(method("POST"))
        .and(path(calls.as_str()))
        .and(header("authorization", basic().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "To=%2B15557654321&From=%2B15551234567&Url=https%3A%2F%2Fapi.example.com%2Fwebhooks%2Fsignalwire%2Fvoice\
             &Method=POST&StatusCallback=https%3A%2F%2Fapi.example.com%2Fwebhooks%2Fsignalwire%2Fstatus\
             &StatusCallbackMethod=POST&StatusCallbackEvent=initiated&StatusCallbackEvent=ringing\
             &StatusCallbackEvent=answered&StatusCallbackEvent=completed&Record=true&RecordingChannels=dual\
             &RecordingStatusCallback=https%3A%2F%2Fapi.example.com%2Fwebhooks%2Fsignalwire%2Frecording\
             &RecordingStatusCallbackMethod=POST&RecordingStatusCallbackEvent=completed&Timeout=30",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "b3877c40-da60-4998-90ad-b792e98472pa", "account_sid": PROJECT, "status": "queued",
            "direction": "outbound-api", "from": "+15551234567", "to": "+15557654321",
            "uri": "/api/laml/2010-04-01/Accounts/x/Calls/y.json"})))
        .expect(1)
        .mount(&server)
        .await;
    let call = s
        .create_call(
            &CreateCall {
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                url: "https://api.example.com/webhooks/signalwire/voice".into(),
                status_callback: Some("https://api.example.com/webhooks/signalwire/status".into()),
                status_callback_events: CallEvent::ALL.to_vec(),
                record: Some(sw::Recording {
                    status_callback: "https://api.example.com/webhooks/signalwire/recording".into(),
                }),
                timeout: Some(30),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(call.sid, "b3877c40-da60-4998-90ad-b792e98472pa");
    assert_eq!(
        call.call_status(),
        Some(shared::vendors::signalwire::wire::CallStatus::Queued)
    );

    let sid = "b3877c40-da60-4998-90ad-b792e98472pa";
    Mock::given(method("POST"))
        .and(path(format!(
            "/api/laml/2010-04-01/Accounts/{PROJECT}/Calls/{sid}.json"
        )))
        .and(header("authorization", basic().as_str()))
        .and(body_string("Status=completed"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"sid": sid, "status": "completed"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        s.hangup(sid, HangupStatus::Completed, 0)
            .await
            .unwrap()
            .status,
        "completed"
    );

    let rec = "RE0123456789abcdef";
    Mock::given(method("DELETE"))
        .and(path(format!(
            "/api/laml/2010-04-01/Accounts/{PROJECT}/Recordings/{rec}.json"
        )))
        .and(header("authorization", basic().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/api/laml/2010-04-01/Accounts/{PROJECT}/Recordings/{rec}.json")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404})))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    assert_eq!(s.delete_recording(rec, 0).await.unwrap(), sw::Deleted::Done);
    assert_eq!(
        s.delete_recording(rec, 0).await.unwrap(),
        sw::Deleted::AlreadyGone
    );

    // A create call refused with the 400 shape: permanent, message kept.
    let other = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(calls.as_str()))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"errors": [{"code": "invalid_parameter", "message": "From is not a number you own", "more_info": "https://x"}]})))
        .expect(1)
        .mount(&other)
        .await;
    let e = signalwire(&other.uri())
        .create_call(
            &CreateCall {
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                url: "https://x.example/v".into(),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap_err();
    assert!(
        !e.is_transient() && e.to_string().contains("From is not a number you own"),
        "{e}"
    );
}

async fn storage(moto: &Moto) -> Storage {
    let env = moto.bucket_env().await;
    let settings = settings_with("postgres://unused@127.0.0.1/x", &borrow(&env));
    Storage::new(settings.storage.as_ref().unwrap())
}

fn local_policy(max_bytes: u64) -> DownloadPolicy {
    DownloadPolicy {
        allowed_hosts: vec![HostRule::Exact("s3.amazonaws.com".into())],
        allow_loopback_http: true,
        max_bytes,
        max_redirects: MAX_REDIRECTS,
    }
}

#[tokio::test]
async fn the_sandboxes_accept_exact_requests_and_serve_expiring_recordings() {
    let moto = Moto::start().await;
    let storage = storage(&moto).await;
    // The sandboxes need their own URL before they are served: bind, then build.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let telnyx_sandbox = TelnyxSandbox::new(&base).with_api_key(TELNYX_KEY);
    let sw_sandbox = SignalWireSandbox::new(&base).with_credentials(PROJECT, TOKEN);
    let router = telnyx_sandbox.routes().merge(sw_sandbox.routes());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Telnyx: commands to a registered call, recorded with their bodies.
    let t = telnyx(&format!("{base}/v2"));
    let call = telnyx_sandbox.register_call("+15550001111", "+15551234567", "conn-1");
    t.answer(&call.call_control_id, &options("answer"), 0)
        .await
        .unwrap();
    t.speak(
        &call.call_control_id,
        "Welcome",
        "AWS.Polly.Joanna-Neural",
        None,
        &options("speak"),
        0,
    )
    .await
    .unwrap();
    t.record_start(&call.call_control_id, Some(60), &options("record_start"), 0)
        .await
        .unwrap();
    let got = telnyx_sandbox.commands();
    assert_eq!(
        got.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(),
        ["answer", "speak", "record_start"]
    );
    assert_eq!(got[2].body["channels"], "dual");
    assert_eq!(got[0].body["command_id"], "call-1:answer");
    assert!(telnyx_sandbox.call(&call.call_control_id).unwrap().answered);

    // Wrong key: 401 like Telnyx; a speak without voice: 422.
    let wrong = Telnyx::with_client(
        quick(tx::VENDOR, "another-key", tx::parse_error),
        &format!("{base}/v2"),
    );
    assert_eq!(
        wrong
            .answer(&call.call_control_id, &CommandOptions::default(), 0)
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    let raw = reqwest::Client::new()
        .post(format!(
            "{base}/v2/calls/{}/actions/speak",
            call.call_control_id
        ))
        .bearer_auth(TELNYX_KEY)
        .json(&json!({"payload": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);
    let raw = reqwest::Client::new()
        .post(format!(
            "{base}/v2/calls/{}/actions/answer",
            call.call_control_id
        ))
        .bearer_auth(TELNYX_KEY)
        .json(&json!({"client_state": "not base64!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);

    // A recording: fetched fresh through the Recordings API, downloaded into R2, expired → 403.
    let (rec_id, urls) = telnyx_sandbox
        .add_recording(&call.call_control_id, 2.0)
        .unwrap();
    assert_eq!(
        t.hangup(&call.call_control_id, &options("hangup"), 0)
            .await
            .unwrap(),
        Ended::Done
    );
    assert_eq!(
        t.hangup(&call.call_control_id, &options("hangup2"), 0)
            .await
            .unwrap(),
        Ended::AlreadyEnded
    );
    let downloader = Downloader::new(local_policy(10 * 1024 * 1024));
    telnyx_sandbox.expire_urls();
    let expired = downloader
        .to_storage(
            urls.wav.as_deref().unwrap(),
            &storage,
            "rec/telnyx.wav",
            "audio/wav",
        )
        .await;
    assert!(
        matches!(expired, Err(DownloadError::Expired { status: 403 })),
        "{expired:?}"
    );
    let fresh = t.recording(&rec_id, 0).await.unwrap();
    let stored = downloader
        .to_storage(
            fresh.download_urls.wav.as_deref().unwrap(),
            &storage,
            "rec/telnyx.wav",
            "audio/wav",
        )
        .await
        .unwrap();
    assert_eq!(stored.bytes, 44 + 2 * 8_000 * 2);
    assert!(stored.created);
    assert_eq!(
        shared::platform::audio::duration_seconds("wav", &stored.head, stored.bytes),
        Some(2.0)
    );
    assert_eq!(
        storage.head("rec/telnyx.wav").await.unwrap().unwrap().size,
        stored.bytes
    );
    assert_eq!(fresh.duration_millis, Some(2_000));
    assert_eq!(
        t.delete_recording(&rec_id, 0).await.unwrap(),
        tx::Deleted::Done
    );
    assert_eq!(telnyx_sandbox.recording_deleted(&rec_id), Some(true));

    // Dial: the sandbox keeps the body and answers with the ids.
    let dialed = t
        .dial(
            &DialRequest {
                connection_id: "conn-1".into(),
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                client_state: Some(ClientState::encode(b"c2")),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        telnyx_sandbox
            .call(&dialed.call_control_id)
            .unwrap()
            .direction,
        "outgoing"
    );
    assert_eq!(
        telnyx_sandbox.dials()[0]["client_state"],
        ClientState::encode(b"c2").as_str()
    );

    // SignalWire: create, hang up, recording media without credentials, delete.
    let s = signalwire(&base);
    let created = s
        .create_call(
            &CreateCall {
                to: "+15557654321".into(),
                from: "+15551234567".into(),
                url: "http://127.0.0.1:1/voice".into(),
                status_callback: Some("http://127.0.0.1:1/status".into()),
                status_callback_events: vec![CallEvent::Completed],
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(created.status, "queued");
    assert_eq!(
        s.hangup(&created.sid, HangupStatus::Canceled, 0)
            .await
            .unwrap()
            .status,
        "canceled"
    );
    let reqs = sw_sandbox.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0]
            .form
            .contains(&("StatusCallbackEvent".into(), "completed".into()))
    );
    let (rec_sid, rec_url) = sw_sandbox.add_recording(&created.sid, 1.5);
    let media = shared::vendors::signalwire::wire::media_url(&rec_url, "wav");
    let stored = downloader
        .to_storage(&media, &storage, "rec/sw.wav", "audio/wav")
        .await
        .unwrap();
    assert_eq!(
        shared::platform::audio::duration_seconds("wav", &stored.head, stored.bytes),
        Some(1.5)
    );
    assert_eq!(
        s.delete_recording(&rec_sid, 0).await.unwrap(),
        sw::Deleted::Done
    );
    assert_eq!(
        s.delete_recording(&rec_sid, 0).await.unwrap(),
        sw::Deleted::AlreadyGone
    );
    let bad = SignalWire::with_client(
        quick(sw::VENDOR, "PTwrong", sw::parse_error),
        PROJECT,
        &base,
    );
    assert_eq!(
        bad.hangup(&created.sid, HangupStatus::Completed, 0)
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
}

/// A raw HTTP/1.1 server answering every connection with `head` and then `body_len` bytes, no
/// Content-Length: the only way to learn the size is to count.
async fn unsized_server(body_len: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let chunk = vec![7u8; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_downloader_streams_large_files_as_multipart_and_enforces_its_policy() {
    let moto = Moto::start().await;
    let storage = storage(&moto).await;
    let server = MockServer::start().await;
    let big: Vec<u8> = (0..PART_BYTES + 300_000).map(|i| (i % 251) as u8).collect();
    Mock::given(method("GET"))
        .and(path("/big.wav"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big.clone(), "audio/wav"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/moved"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/big.wav"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/elsewhere"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "https://s3.amazonaws.com/b/k.wav"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/loop"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/loop"))
        .mount(&server)
        .await;
    for (p, status) in [
        ("/gone", 410),
        ("/denied", 403),
        ("/busy", 503),
        ("/bad", 400),
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
    }
    let d = Downloader::new(local_policy(64 * 1024 * 1024));

    // Larger than a part: multipart, byte for byte, through one same-origin redirect.
    let stored = d
        .to_storage(
            &format!("{}/moved", server.uri()),
            &storage,
            "big.wav",
            "audio/wav",
        )
        .await
        .unwrap();
    assert_eq!(stored.bytes, big.len() as u64);
    assert_eq!(stored.head, big[..64 * 1024]);
    assert_eq!(
        storage.head("big.wav").await.unwrap().unwrap().size,
        big.len() as u64
    );
    assert_eq!(storage.first_bytes("big.wav", 16).await.unwrap(), big[..16]);

    let err = |r: Result<_, DownloadError>| r.unwrap_err();
    let at = |p: &str| format!("{}{p}", server.uri());
    assert!(matches!(
        err(d
            .to_storage(&at("/elsewhere"), &storage, "x", "audio/wav")
            .await),
        DownloadError::Refused(_)
    ));
    assert!(matches!(
        err(d.to_storage(&at("/loop"), &storage, "x", "audio/wav").await),
        DownloadError::Refused(_)
    ));
    assert!(matches!(
        err(d.to_storage(&at("/gone"), &storage, "x", "audio/wav").await),
        DownloadError::Expired { status: 410 }
    ));
    assert!(matches!(
        err(d
            .to_storage(&at("/denied"), &storage, "x", "audio/wav")
            .await),
        DownloadError::Expired { status: 403 }
    ));
    let busy = err(d.to_storage(&at("/busy"), &storage, "x", "audio/wav").await);
    assert!(busy.is_transient(), "{busy}");
    assert!(matches!(
        err(d.to_storage(&at("/bad"), &storage, "x", "audio/wav").await),
        DownloadError::Failed(_)
    ));
    assert!(storage.head("x").await.unwrap().is_none());

    // Content-Length over the cap: refused before reading.
    let small_cap = Downloader::new(local_policy(1024 * 1024));
    assert!(matches!(
        err(small_cap
            .to_storage(&at("/big.wav"), &storage, "capped.wav", "audio/wav")
            .await),
        DownloadError::TooLarge { .. }
    ));
    // No Content-Length: counted, and a multipart upload already begun is aborted, nothing stored.
    let no_length = unsized_server(PART_BYTES * 2).await;
    let cap = Downloader::new(local_policy(PART_BYTES as u64 + 1024));
    assert!(matches!(
        err(cap
            .to_storage(
                &format!("{no_length}/r.wav"),
                &storage,
                "counted.wav",
                "audio/wav"
            )
            .await),
        DownloadError::TooLarge { .. }
    ));
    assert!(storage.head("counted.wav").await.unwrap().is_none());
    // Under the cap without Content-Length: stored with one PUT, and never overwritten.
    let short = unsized_server(100_000).await;
    let first = d
        .to_storage(
            &format!("{short}/r.wav"),
            &storage,
            "short.wav",
            "audio/wav",
        )
        .await
        .unwrap();
    assert!(first.created && first.bytes == 100_000);
    let again = d
        .to_storage(
            &format!("{short}/r.wav"),
            &storage,
            "short.wav",
            "audio/wav",
        )
        .await
        .unwrap();
    assert!(!again.created);

    // Outside the local stage: plain http refused, and a name resolving to loopback is refused by
    // the resolver even when the name is on the allow-list.
    let strict = Downloader::new(DownloadPolicy {
        allowed_hosts: vec![HostRule::Exact("localhost".into())],
        allow_loopback_http: false,
        max_bytes: 1024,
        max_redirects: MAX_REDIRECTS,
    });
    assert!(matches!(
        err(strict
            .to_storage(&at("/big.wav"), &storage, "x", "audio/wav")
            .await),
        DownloadError::Refused(_)
    ));
    let port = server.address().port();
    let resolved = err(strict
        .to_storage(
            &format!("https://localhost:{port}/big.wav"),
            &storage,
            "x",
            "audio/wav",
        )
        .await);
    match resolved {
        DownloadError::Refused(why) => {
            assert!(why.contains("outside the public internet"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn local_settings_reach_the_sandbox_defaults() {
    let s = settings_with("postgres://unused@127.0.0.1/x", &[]);
    let telnyx = s.require_telnyx().unwrap();
    assert!(telnyx.sandbox);
    let signalwire = s.require_signalwire().unwrap();
    assert!(signalwire.sandbox);
    // The sandbox's signatures verify with the key the local stage trusts.
    let sandbox = TelnyxSandbox::new("http://127.0.0.1:9010");
    assert_eq!(
        sandbox.public_key_b64(),
        shared::vendors::telnyx::config::SANDBOX_PUBLIC_KEY_B64
    );
    let body = br#"{"data":{}}"#;
    let sig = sandbox.sign(1_700_000_000, body);
    use base64::Engine;
    let sig = ed25519_dalek::Signature::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap(),
    )
    .unwrap();
    let mut msg = b"1700000000|".to_vec();
    msg.extend_from_slice(body);
    telnyx
        .public_key
        .unwrap()
        .verify_strict(&msg, &sig)
        .unwrap();
}
