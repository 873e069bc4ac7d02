//! Issue 14's deployed-stage strictness and the hostile client's findings, each pinned by a test
//! against real PostgreSQL, real API Gateway v2 events and wiremock (recordings and transcription
//! items live in recordings.rs and transcriptions.rs).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_tests::{Answer, Event, TestDb, bearer, workspace_root};
use secrecy::SecretString;
use serde_json::Value;
use shared::App;
use shared::api::pipeline::READ_ONLY_FUNCTIONS;
use shared::platform::http_client::{Replay, VendorClient, VendorError, http_client};
use shared::platform::storage::{Storage, StorageSettings};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn serve(app: &App, event: Event, function: &str) -> Answer {
    let req = event.request();
    let response = match function {
        "me" => app.http.serve(req, |req| me::handle(app, req)).await,
        "sign-out" => app.http.serve(req, |req| sign_out::handle(app, req)).await,
        other => panic!("no function {other}"),
    };
    Answer::from_response(response.unwrap())
}

// ------------------------------------------------------------------ outbound redirects

#[tokio::test]
async fn a_vendor_redirect_is_answered_as_a_refusal_and_never_followed() {
    let vendor = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/text-to-speech/voice"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&vendor)
        .await;
    // The other host must never see the request, nor the key riding in its custom header.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let client = VendorClient::new(
        "elevenlabs",
        http_client(Duration::from_secs(2)),
        Duration::from_secs(2),
        SecretString::from("sk_el_redirect_test_key"),
        |_| None,
    );
    let url = format!("{}/v1/text-to-speech/voice", vendor.uri());
    let outcome = client
        .send(
            |http| {
                http.post(&url)
                    .header("xi-api-key", "sk_el_redirect_test_key")
                    .body("{}")
            },
            Replay::OnlyIfRefused,
            0,
        )
        .await;
    match outcome {
        Err(VendorError::Status { status: 307, .. }) => {}
        other => panic!("expected the 307 itself, got {other:?}"),
    }
    vendor.verify().await;
    elsewhere.verify().await;
}

// ------------------------------------------------------------------ presigned upload headers

const INNER_PRESIGN: &str = "presign_inside_a_lambda_environment";

/// Run by the test below in a child process with Lambda's variables set, because the SDK reads
/// them from the process environment (which a test must not change under other threads).
#[tokio::test]
#[ignore = "run by presigned_upload_headers_are_exactly_the_signed_ones_inside_a_lambda"]
async fn presign_inside_a_lambda_environment() {
    assert!(
        std::env::var("_X_AMZN_TRACE_ID").is_ok(),
        "run with Lambda's variables set"
    );
    let storage = Storage::new(&StorageSettings {
        endpoint: "https://0123abcd.r2.cloudflarestorage.com".to_owned(),
        bucket: "calls".to_owned(),
        access_key_id: "AKID".to_owned(),
        secret_access_key: SecretString::from("r2-secret"),
    });
    let presigned = storage
        .presign_put(
            "users/1/recordings/x.wav",
            "audio/wav",
            44,
            Duration::from_secs(900),
        )
        .await
        .unwrap();
    let signed = presigned
        .url
        .split_once("X-Amz-SignedHeaders=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap()
        .replace("%3B", ";");
    let mut expected: Vec<&str> = signed.split(';').filter(|h| *h != "host").collect();
    expected.sort();
    let names: Vec<&str> = presigned.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, expected, "exactly the signed headers");
    assert_eq!(names, ["content-length", "content-type", "if-none-match"]);
    println!("INNER-PRESIGN-CHECKED");
}

#[test]
fn presigned_upload_headers_are_exactly_the_signed_ones_inside_a_lambda() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", INNER_PRESIGN, "--ignored", "--nocapture"])
        .env("AWS_LAMBDA_FUNCTION_NAME", "recordings-upload")
        .env(
            "_X_AMZN_TRACE_ID",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("INNER-PRESIGN-CHECKED"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ------------------------------------------------------------------ CSRF and sign-out

#[test]
fn the_read_only_functions_are_exactly_the_get_only_ones_in_the_template() {
    let template = xtask::template::Template::load(
        &workspace_root().join("template.yaml"),
        &std::collections::BTreeMap::from([(
            "CorsOrigins".to_owned(),
            "http://localhost:3000".to_owned(),
        )]),
    )
    .unwrap();
    let mut functions: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for route in &template.routes {
        functions
            .entry(route.function.as_str())
            .or_default()
            .push(route.method.as_str());
    }
    let get_only: Vec<&str> = functions
        .iter()
        .filter(|(_, methods)| methods.iter().all(|m| m.eq_ignore_ascii_case("GET")))
        .map(|(f, _)| *f)
        .collect();
    let mut listed = READ_ONLY_FUNCTIONS.to_vec();
    listed.sort();
    assert_eq!(listed, get_only);
}

#[tokio::test]
async fn sign_out_refuses_every_method_but_post_and_its_csrf_guard_ignores_the_method() {
    let db = TestDb::create().await;
    let app = App::from_settings(sign_out::FUNCTION, db.settings(&[]));
    let (_, token) = db.session("signout@example.com", 3600).await;
    let cookie = format!("authjs.session-token={token}");
    // A cross-site GET (a link, an <img>): the cookie rides along, no Origin. Refused before the handler.
    for verb in ["GET", "HEAD", "PUT", "DELETE"] {
        serve(
            &app,
            Event::new(verb, "/api/auth/sign-out").cookie(&cookie),
            "sign-out",
        )
        .await
        .assert_problem(403, "forbidden");
    }
    // With an allowed Origin (or a bearer token) the guard passes, and the handler refuses the method.
    for verb in ["GET", "PUT", "DELETE"] {
        let answer = serve(
            &app,
            Event::new(verb, "/api/auth/sign-out")
                .cookie(&cookie)
                .header("origin", "http://localhost:3000"),
            "sign-out",
        )
        .await;
        answer.assert_problem(405, "method-not-allowed");
        assert_eq!(answer.header("allow"), Some("POST"));
    }
    serve(
        &app,
        Event::new("GET", "/api/auth/sign-out").header("authorization", &bearer(&token)),
        "sign-out",
    )
    .await
    .assert_problem(405, "method-not-allowed");
    assert_eq!(db.session_count(&token).await, 1, "the session survived");
    // POST still signs out.
    let done = serve(
        &app,
        Event::new("POST", "/api/auth/sign-out")
            .cookie(&cookie)
            .header("origin", "http://localhost:3000"),
        "sign-out",
    )
    .await;
    assert_eq!(done.status, 204);
    assert_eq!(db.session_count(&token).await, 0);
    db.drop_db().await;
}

// ------------------------------------------------------------------ deployed-stage sessions

#[tokio::test]
async fn a_deployed_stage_accepts_only_secure_cookie_names_and_bearer_and_always_sets_secure() {
    let db = TestDb::create().await;
    // A deployed stage's session rules over the local database (which has no TLS to insist on).
    let mut settings = db.settings(&[]);
    settings.session.secure_cookies_only = true;
    let app = App::from_settings(me::FUNCTION, settings);
    let (_, token) = db.session("deployed@example.com", 3600).await;
    for name in ["authjs.session-token", "next-auth.session-token"] {
        serve(
            &app,
            Event::new("GET", "/api/me").cookie(&format!("{name}={token}")),
            "me",
        )
        .await
        .assert_problem(401, "unauthenticated");
    }
    for name in [
        "__Secure-authjs.session-token",
        "__Secure-next-auth.session-token",
    ] {
        let ok = serve(
            &app,
            Event::new("GET", "/api/me").cookie(&format!("{name}={token}")),
            "me",
        )
        .await;
        assert_eq!(ok.status, 200, "{name}: {}", ok.body);
    }
    let ok = serve(
        &app,
        Event::new("GET", "/api/me").header("authorization", &bearer(&token)),
        "me",
    )
    .await;
    assert_eq!(ok.status, 200);
    // A session due for its slide: the re-set cookie is Secure.
    db.client
        .execute(
            r#"UPDATE sessions SET expires = now() + interval '1 day' WHERE "sessionToken" = $1"#,
            &[&token],
        )
        .await
        .unwrap();
    let refreshed = serve(
        &app,
        Event::new("GET", "/api/me").cookie(&format!("__Secure-authjs.session-token={token}")),
        "me",
    )
    .await;
    let set_cookie = refreshed
        .header("set-cookie")
        .expect("the cookie is re-set");
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
    db.drop_db().await;
}

// ------------------------------------------------------------------ the request log line

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_line_names_the_user_and_api_gateways_request_id() {
    let db = TestDb::create().await;
    let app = App::from_settings(me::FUNCTION, db.settings(&[]));
    let (user, token) = db.session("logged@example.com", 3600).await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let call = |auth: Option<String>, apigw_id: &str| {
        let mut event = Event::new("GET", "/api/me");
        if let Some(auth) = auth {
            event = event.header("authorization", &auth);
        }
        let mut json = event.to_json();
        json["requestContext"]["requestId"] = Value::from(apigw_id);
        lambda_http::request::from_str(&json.to_string()).unwrap()
    };
    let req = call(Some(bearer(&token)), "Ab1cDeFgHiJkLmN=");
    let answer = app.http.serve(req, |req| me::handle(&app, req)).await;
    assert_eq!(answer.unwrap().status(), 200);
    let req = call(None, "Zz9yXwVuTsRqPoN=");
    let answer = app.http.serve(req, |req| me::handle(&app, req)).await;
    assert_eq!(answer.unwrap().status(), 401);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["apigw_request_id"], "Ab1cDeFgHiJkLmN=");
    assert_eq!(lines[0]["user_id"], user);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[1]["apigw_request_id"], "Zz9yXwVuTsRqPoN=");
    assert!(lines[1].get("user_id").is_none(), "{}", lines[1]);
    assert!(!text.contains(&token), "the token is never logged");
    db.drop_db().await;
}

// ------------------------------------------------------------------ bytes that are not UTF-8

#[tokio::test]
async fn bytes_that_are_not_utf8_are_a_problem_json_400() {
    let db = TestDb::create().await;
    let app = App::from_settings("tts-create", db.settings(&[]));
    let (_, token) = db.session("bytes@example.com", 3600).await;
    // A JSON body carrying invalid UTF-8 arrives base64-encoded (isBase64Encoded: true).
    for body in [
        &b"{\"text\":\"\xff\xfe\"}"[..],
        &b"\xc3\x28"[..],
        &b"{\"text\":\"ok\"}\xed\xa0\x80"[..],
    ] {
        let event = Event::new("POST", "/api/tts")
            .header("authorization", &bearer(&token))
            .header("content-type", "application/json")
            .base64_body(body);
        let answer = Answer::from_response(
            app.http
                .serve(event.request(), |req| async move {
                    shared::api::parse_json::<Value>(&req)?;
                    Ok(shared::api::no_content())
                })
                .await
                .unwrap(),
        );
        answer.assert_problem(400, "malformed-request");
    }
    // Header values beyond ASCII, as API Gateway's UTF-8 event carries them, in every header we read.
    for (name, value) in [
        ("idempotency-key", "k\u{fffd}y"),
        ("authorization", "Bearer t\u{ff}k"),
        ("content-type", "application/json\u{fffd}"),
        ("origin", "http://l\u{f6}calhost:3000"),
    ] {
        let event = Event::new("POST", "/api/tts")
            .header("authorization", &bearer(&token))
            .header(name, value)
            .header("content-type", "application/json")
            .header(name, value)
            .body("{}");
        let answer = Answer::from_response(
            app.http
                .serve(event.request(), |_| async { Ok(shared::api::no_content()) })
                .await
                .unwrap(),
        );
        answer.assert_problem(400, "malformed-request");
        assert_eq!(answer.body["errors"][0]["field"], name, "{}", answer.body);
    }
    db.drop_db().await;
}
