//! End to end: the real binaries under `cargo lambda watch` behind the local API Gateway proxy,
//! sessions made by the real Auth.js adapter.

use parley_tests::{Api, TestDb, authjs};
use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test]
async fn the_api_serves_health_me_and_sign_out_for_auth_js_sessions() {
    let db = TestDb::create().await;
    let api = Api::start(&[("DATABASE_URL", db.url.as_str()), ("PARLEY_STAGE", "local")]).await;
    let http = reqwest::Client::new();

    let health = http.get(api.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");

    // A session created by @auth/pg-adapter, exactly as the Next.js app would.
    let made = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "interop@example.com",
            "--name",
            "Interop",
        ],
    );
    let token = made["session_token"].as_str().unwrap();
    let cookie = format!("authjs.session-token={token}");
    let me = http
        .get(api.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["user"]["id"], made["user_id"]);
    assert_eq!(body["user"]["email"], "interop@example.com");
    assert_eq!(body["user"]["name"], "Interop");

    // The same token as a bearer (what a Next.js server forwards).
    let bearer = http
        .get(api.url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    // An adapter session that has expired is refused, and deleted as Auth.js would.
    let expired = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "late@example.com",
            "--expires-in-seconds",
            "-60",
        ],
    );
    let late = expired["session_token"].as_str().unwrap();
    let refused = http
        .get(api.url("/api/me"))
        .header("cookie", format!("authjs.session-token={late}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        authjs(&db.url, &["get-session", "--token", late])["session"],
        Value::Null
    );

    // A forged token is 401 too.
    let forged = http
        .get(api.url("/api/me"))
        .header("cookie", "authjs.session-token=forged-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Sign out: CSRF-checked, deletes the row the adapter sees, clears the cookie.
    let csrf = http
        .post(api.url("/api/auth/sign-out"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(csrf.status(), 403);
    let out = http
        .post(api.url("/api/auth/sign-out"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        authjs(&db.url, &["get-session", "--token", token])["session"],
        Value::Null
    );
    let after = http
        .get(api.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    drop(api);
    db.drop_db().await;
}

#[tokio::test]
async fn a_session_refreshed_by_the_api_is_seen_by_the_adapter() {
    let db = TestDb::create().await;
    let api = Api::start(&[("DATABASE_URL", db.url.as_str())]).await;
    // 29 days left: the API slides it to 30, and Auth.js reads the new expiry from the same row.
    let made = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "slide@example.com",
            "--expires-in-seconds",
            "2505600",
        ],
    );
    let token = made["session_token"].as_str().unwrap();
    let me = reqwest::Client::new()
        .get(api.url("/api/me"))
        .header("cookie", format!("authjs.session-token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.headers().get("set-cookie").is_some());
    let seen = authjs(&db.url, &["get-session", "--token", token]);
    let expires = time::OffsetDateTime::parse(
        seen["session"]["expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((2_592_000 - left).abs() < 60, "adapter sees {left} s left");
    drop(api);
    db.drop_db().await;
}

#[tokio::test]
async fn a_recording_round_trips_through_the_real_binaries() {
    let db = parley_tests::TestDb::create().await;
    let moto = parley_tests::Moto::start().await;
    let r2 = moto.bucket_env().await;
    let mut env = parley_tests::borrow(&r2);
    env.push(("DATABASE_URL", db.url.as_str()));
    let api = Api::start(&env).await;
    let http = reqwest::Client::new();
    let alice = authjs(
        &db.url,
        &["create-session", "--email", "alice-e2e@example.com"],
    );
    let bob = authjs(
        &db.url,
        &["create-session", "--email", "bob-e2e@example.com"],
    );
    let cookie = |who: &Value| {
        format!(
            "authjs.session-token={}",
            who["session_token"].as_str().unwrap()
        )
    };
    let origin = "http://localhost:3000";
    let wav = shared::platform::audio::silent_wav(0.75, 16000);

    let created = http
        .post(api.url("/api/recordings/uploads"))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .json(&serde_json::json!({"content_type": "audio/wav", "size_bytes": wav.len(), "file_name": "hello.wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["recording"]["id"].as_str().unwrap().to_owned();
    let upload = &created["upload"];
    // watch sets _X_AMZN_TRACE_ID on every invocation, as Lambda does: the upload headers are
    // still exactly the signed ones (no x-amzn-trace-id), which R2's CORS rule allows.
    let names: Vec<&str> = upload["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["content-length", "content-type", "if-none-match"]);
    let mut put = http.put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    assert!(
        put.body(wav.clone())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    let done = http
        .post(api.url(&format!("/api/recordings/{id}/complete")))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["recording"]["status"], "ready");
    assert_eq!(done["recording"]["duration_seconds"], 0.75);

    let list: Value = http
        .get(api.url("/api/recordings?limit=5"))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], id.as_str());
    let bobs: Value = http
        .get(api.url("/api/recordings"))
        .header("cookie", cookie(&bob))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["items"], serde_json::json!([]));
    let peek = http
        .get(api.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), 404);

    let got: Value = http
        .get(api.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = reqwest::get(got["recording"]["download_url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), wav);

    // Bytes that are not UTF-8, in a header Parley reads or in a JSON body: a problem+json 400.
    let bad_header = http
        .post(api.url("/api/recordings/uploads"))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(b"key-\xff\xfe").unwrap(),
        )
        .json(&serde_json::json!({"content_type": "audio/wav", "size_bytes": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_header.status(), 400);
    assert_eq!(
        bad_header.headers()["content-type"],
        "application/problem+json"
    );
    let bad_body = http
        .post(api.url("/api/recordings/uploads"))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .header("content-type", "application/json")
        .body(b"{\"content_type\":\"audio/wav\xff\",\"size_bytes\":10}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 400);
    assert_eq!(
        bad_body.headers()["content-type"],
        "application/problem+json"
    );

    let gone = http
        .delete(api.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let after = http
        .get(api.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 404);
    drop(api);
    drop(moto);
    db.drop_db().await;
}

/// The local stack as `cargo xtask dev` runs it, with no vendor keys: moto for R2 and SQS, the
/// sandbox for the vendors, the real binaries under `cargo lambda watch`, and the queue pump.
struct LocalStack {
    db: parley_tests::TestDb,
    api: Api,
    sqs: aws_sdk_sqs::Client,
    routes: Vec<shared::local::Route>,
    http: reqwest::Client,
    sandbox: shared::local::sandbox::Running,
    /// The bucket the functions use, to look at what is left in it.
    storage: shared::platform::storage::Storage,
    sandbox_url: String,
    _moto: parley_tests::Moto,
}

impl LocalStack {
    async fn start() -> LocalStack {
        let db = parley_tests::TestDb::create().await;
        let moto = parley_tests::Moto::start().await;
        let sqs = shared::local::sqs_client(&moto.endpoint);
        // The queues, batch sizes and redrive as template.yaml declares them, as `cargo xtask dev`
        // makes them (with a short visibility timeout, so retries come back quickly).
        let template = xtask::template::Template::load(
            &parley_tests::workspace_root().join("template.yaml"),
            &std::collections::BTreeMap::from([(
                "CorsOrigins".to_owned(),
                "http://localhost:3000".to_owned(),
            )]),
        )
        .unwrap();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut routes = Vec::new();
        let mut queue_env = Vec::new();
        for source in &template.queues {
            let mut route = shared::local::ensure_queue(
                &sqs,
                &format!("e2e-{}-{suffix}", source.queue),
                &source.function,
                5,
                source.max_receive_count,
            )
            .await
            .unwrap();
            route.batch_size = source.batch_size;
            for variable in &source.url_variables {
                queue_env.push((variable.clone(), route.queue_url.clone()));
            }
            routes.push(route);
        }
        let sandbox =
            shared::local::sandbox::start(([127, 0, 0, 1], 0).into(), Duration::from_millis(200))
                .await
                .unwrap();
        let (keyless, names) = shared::local::sandbox_env(&sandbox.base_url, |_| None);
        for vendor in [
            "AssemblyAI",
            "ElevenLabs",
            "Telnyx",
            "SignalWire",
            "DeepL",
            "OpenAI",
            "Stripe",
        ] {
            assert!(names.contains(&vendor), "{vendor} is served by the sandbox");
        }
        let port = parley_tests::free_port();
        let mut owned = moto.bucket_env().await;
        let storage = shared::platform::storage::Storage::new(
            parley_tests::settings_with(&db.url, &parley_tests::borrow(&owned))
                .storage
                .as_ref()
                .expect("moto's bucket"),
        );
        owned.extend(keyless);
        let mut owned: Vec<(String, String)> = owned
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(queue_env)
            .collect();
        owned.extend(
            [
                ("DATABASE_URL", db.url.clone()),
                ("AWS_REGION", shared::local::REGION.to_owned()),
                ("AWS_ACCESS_KEY_ID", "parley-local".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "parley-local-secret".to_owned()),
                ("AWS_ENDPOINT_URL_SQS", moto.endpoint.clone()),
                ("BACKEND_URL", format!("http://127.0.0.1:{port}")),
                // Vendors sign the URL they call: the local API Gateway's, over plain http.
                ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
                // The pumps poll a resource ten times a second until the pipeline settles: read
                // limits a script could not reach, so a wait never drains the bucket an assertion
                // after it needs (the limits themselves: tests/tests/rate_limits.rs).
                ("RATE_LIMIT_READ", "1000000/1s".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let env: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let api = Api::start_on(port, &env).await;
        sandbox.attach(&format!("http://127.0.0.1:{port}"));
        LocalStack {
            db,
            api,
            sqs,
            routes,
            http: reqwest::Client::new(),
            sandbox_url: sandbox.base_url.clone(),
            storage,
            sandbox,
            _moto: moto,
        }
    }

    /// Runs the pump until `GET url` shows `resource` completed or failed (or gives up after three
    /// minutes); returns that last answer.
    async fn pump_until_settled(&self, cookie: &str, url: &str, resource: &str) -> Value {
        let http = shared::platform::http_client::http_client(Duration::from_secs(900));
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let got: Value = self
                .http
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if got[resource]["status"] == "completed" || got[resource]["status"] == "failed" {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the pipeline did not finish: {got}"
            );
            self.pump(&http).await;
        }
    }

    async fn pump(&self, http: &reqwest::Client) {
        for route in &self.routes {
            shared::local::pump_once(&self.sqs, http, &self.api.invoke_base, route, 1)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn with_no_keys_the_sandbox_transcribes_a_recording_end_to_end() {
    let stack = LocalStack::start().await;
    let alice = authjs(
        &stack.db.url,
        &["create-session", "--email", "alice-sandbox@example.com"],
    );
    let cookie = format!(
        "authjs.session-token={}",
        alice["session_token"].as_str().unwrap()
    );
    let recording = stack
        .api
        .ready_recording(
            &stack.http,
            &cookie,
            &shared::platform::audio::silent_wav(3.0, 16000),
        )
        .await;

    let created = stack
        .http
        .post(
            stack
                .api
                .url(&format!("/api/recordings/{recording}/transcriptions")),
        )
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .header("idempotency-key", "e2e-1")
        .json(&serde_json::json!({"speaker_labels": true, "speakers_expected": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    let id = created["transcription"]["id"].as_str().unwrap().to_owned();
    let url = stack.api.url(&format!("/api/transcriptions/{id}"));

    // Submit, the sandbox's callback to the real webhook, then the fetch: no further action.
    let got = stack
        .pump_until_settled(&cookie, &url, "transcription")
        .await;
    let t = &got["transcription"];
    assert_eq!(t["status"], "completed", "{got}");
    let text = t["text"].as_str().unwrap();
    assert!(text.contains("sandbox transcript"), "{text}");
    assert!(text.contains("3.0 seconds"), "{text}");
    assert_eq!(t["audio_duration_seconds"], 3.0);
    assert!(!t["words"].as_array().unwrap().is_empty());
    assert_eq!(t["utterances"][1]["speaker"], "B");
    assert!(
        t["words"].as_array().unwrap().last().unwrap()["end"]
            .as_i64()
            .unwrap()
            <= 3000
    );

    let token: Value = stack
        .http
        .post(stack.api.url("/api/transcription/realtime-token"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&serde_json::json!({"expires_in_seconds": 30}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in_seconds"], 30);
    assert!(token["token"].as_str().unwrap().starts_with("sandbox-"));
}

#[tokio::test]
async fn with_no_keys_the_sandbox_speaks_a_text_end_to_end() {
    let stack = LocalStack::start().await;
    let bob = authjs(
        &stack.db.url,
        &["create-session", "--email", "bob-sandbox@example.com"],
    );
    let cookie = format!(
        "authjs.session-token={}",
        bob["session_token"].as_str().unwrap()
    );
    let created = stack
        .http
        .post(stack.api.url("/api/tts"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&serde_json::json!({"text": "Thanks for calling Parley. Please hold.", "voice_id": "21m00Tcm4TlvDq8ikWAM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    let id = created["tts"]["id"].as_str().unwrap().to_owned();
    let url = stack.api.url(&format!("/api/tts/{id}"));
    let got = stack.pump_until_settled(&cookie, &url, "tts").await;
    let t = &got["tts"];
    assert_eq!(t["status"], "completed", "{got}");
    assert_eq!(t["content_type"], "audio/mpeg");
    let audio = reqwest::get(t["audio_url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(audio.len() as i64, t["size_bytes"].as_i64().unwrap());
    assert!(
        shared::platform::audio::matches("mp3", &audio),
        "a real MP3 stream"
    );
    // 39 characters at ~14 a second: about 2.8 s of 26 ms frames.
    assert!(audio.len() > 100 * 417, "{} bytes", audio.len());
}

// ----------------------------------------------------------------------------------------- billing

#[tokio::test]
async fn with_no_keys_a_sandbox_checkout_makes_a_free_user_pro() {
    let stack = LocalStack::start().await;
    stack
        .db
        .client
        .execute(
            "INSERT INTO plans (name, stripe_price_id, transcription_seconds, speech_characters,
                                translation_characters, realtime_seconds, call_minutes, storage_bytes)
             VALUES ('pro', 'price_e2ePro', 36000, 500000, 1000000, 18000, 600, 53687091200)",
            &[],
        )
        .await
        .unwrap();
    let payer = authjs(
        &stack.db.url,
        &["create-session", "--email", "payer-sandbox@example.com"],
    );
    let user: i32 = payer["user_id"].as_str().unwrap().parse().unwrap();
    let cookie = format!(
        "authjs.session-token={}",
        payer["session_token"].as_str().unwrap()
    );
    // On the free plan (cut to 10 characters here) a longer speech request is refused before
    // anything is queued: 402 naming the meter.
    stack
        .db
        .client
        .execute(
            "UPDATE plans SET speech_characters = 10 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    let speak = || async {
        stack
            .http
            .post(stack.api.url("/api/tts"))
            .header("cookie", &cookie)
            .header("origin", "http://localhost:3000")
            .json(&json!({"text": "Twenty characters!!!", "voice_id": "21m00Tcm4TlvDq8ikWAM"}))
            .send()
            .await
            .unwrap()
    };
    let refused = speak().await;
    assert_eq!(refused.status(), 402);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "tag:parley.dev,2026:problem:quota-exceeded"
    );
    assert_eq!(problem["meter"], "speech_characters");
    assert_eq!(problem["remaining"], 10);
    let billing = || async {
        stack
            .http
            .get(stack.api.url("/api/billing"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let before = billing().await;
    assert_eq!(
        (before["plan"].as_str(), before["status"].as_str()),
        (Some("free"), None)
    );

    let checkout = stack
        .http
        .post(stack.api.url("/api/billing/checkout"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(checkout.status(), 201);
    let url = checkout.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with(&format!(
            "{}/stripe-sandbox/checkout/cs_test_",
            stack.sandbox_url
        )),
        "{url}"
    );

    // Opening the checkout URL (as a browser or curl would) pays: the sandbox posts signed
    // events to the local /webhooks/stripe, then redirects to the app's success page.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let paid = browser.get(&url).send().await.unwrap();
    assert_eq!(paid.status(), 303, "{}", paid.text().await.unwrap());
    let location = paid.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost:3000/billing?checkout=success&session_id=cs_test_"),
        "{location}"
    );
    let kinds: Vec<String> = stack
        .db
        .client
        .query(
            "SELECT event_type FROM webhook_events WHERE vendor = 'stripe' ORDER BY received_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        [
            "checkout.session.completed",
            "customer.subscription.created",
            "invoice.paid"
        ]
    );

    // The billing worker re-fetches the subscription from the sandbox: the user is now pro.
    stack
        .pump_while(&["billing-worker"], "the subscription", || async {
            stack
                .db
                .client
                .query_one(
                    "SELECT count(*) FROM subscriptions s JOIN plans p
                        ON p.stripe_price_id = s.stripe_price_id
                      WHERE s.user_id = $1 AND s.status = 'active' AND p.name = 'pro'
                        AND s.current_period_end > now()",
                    &[&user],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        })
        .await;
    stack
        .pump_while(&["billing-worker"], "every event applied", || async {
            stack
                .db
                .client
                .query_one(
                    "SELECT count(*) FROM webhook_events WHERE vendor = 'stripe' AND status <> 'processed'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 0
        })
        .await;

    // Pro now: the plan and its allowance apply, and the same request succeeds.
    let after = billing().await;
    assert_eq!(after["plan"], "pro", "{after}");
    assert_eq!(after["status"], "active");
    assert_eq!(after["usage"]["speech_characters"]["limit"], 500000);
    assert!(after["current_period_end"].is_string());
    let accepted = speak().await;
    assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());

    // Now there is a customer to manage: the portal opens on the sandbox.
    let portal = stack
        .http
        .post(stack.api.url("/api/billing/portal"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(portal.status(), 201);
    let portal_url = portal.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(portal_url.starts_with(&format!("{}/stripe-sandbox/portal/bps_", stack.sandbox_url)));
    // A second checkout is refused: plan changes go through the portal.
    let again = stack
        .http
        .post(stack.api.url("/api/billing/checkout"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

// ------------------------------------------------------------------------------------------- calls

impl LocalStack {
    /// Pumps the queues whose worker is in `functions` (all when empty) until `done` holds.
    async fn pump_while<F, Fut>(&self, functions: &[&str], what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let http = shared::platform::http_client::http_client(Duration::from_secs(900));
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while !done().await {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            for route in &self.routes {
                if functions.is_empty() || functions.contains(&route.function.as_str()) {
                    shared::local::pump_once(&self.sqs, &http, &self.api.invoke_base, route, 0)
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, cookie: &str, path: &str) -> Value {
        self.http
            .get(self.api.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A signed-in user owning `number` on `provider`, with the number set up through the API.
    async fn phone_owner(
        &self,
        email: &str,
        number: &str,
        provider: &str,
        settings: Value,
    ) -> String {
        let user = authjs(&self.db.url, &["create-session", "--email", email]);
        let cookie = format!(
            "authjs.session-token={}",
            user["session_token"].as_str().unwrap()
        );
        self.db
            .client
            .execute(
                "INSERT INTO phone_numbers (id, e164, provider, telnyx_connection_id, owner_id)
                 SELECT gen_random_uuid(), $1, $2, $3, id FROM users WHERE email = $4",
                &[
                    &number,
                    &provider,
                    &shared::local::telephony::SANDBOX_CONNECTION_ID,
                    &email,
                ],
            )
            .await
            .unwrap();
        let listed = self.get(&cookie, "/api/phone-numbers").await;
        let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
        let patched = self
            .http
            .patch(self.api.url(&format!("/api/phone-numbers/{id}")))
            .header("cookie", &cookie)
            .header("origin", "http://localhost:3000")
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
        cookie
    }

    /// Plays an inbound call while pumping the call worker, which must answer it.
    async fn play_inbound(&self, provider: &str, to: &str) -> shared::local::telephony::Played {
        let plan = shared::local::telephony::CallPlan {
            provider: provider.to_owned(),
            from: "+15557654321".to_owned(),
            to: to.to_owned(),
            seconds: 1.0,
        };
        let calls = self.sandbox.calls.clone();
        let call = tokio::spawn(async move { calls.inbound(&plan).await });
        self.pump_while(&["call-worker"], "the call to finish", || async {
            call.is_finished()
        })
        .await;
        call.await.unwrap().expect("the sandbox played the call")
    }
}

#[tokio::test]
async fn a_telnyx_call_is_answered_recorded_ingested_and_transcribed() {
    let stack = LocalStack::start().await;
    let number = "+15550100001";
    let cookie = stack
        .phone_owner(
            "telnyx-owner@example.com",
            number,
            "telnyx",
            json!({"record": true, "transcribe": true, "greeting": "Thanks for calling Parley."}),
        )
        .await;
    let played = stack.play_inbound("telnyx", number).await;
    assert!(played.recorded, "{played:?}");
    let commands: Vec<_> = stack
        .sandbox
        .telnyx
        .commands()
        .into_iter()
        .map(|c| (c.action, c.body))
        .collect();
    let actions: Vec<&str> = commands.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["answer", "speak", "record_start"], "{commands:?}");
    assert_eq!(commands[1].1["payload"], "Thanks for calling Parley.");
    assert_eq!(commands[2].1["channels"], "dual");
    // Every command carries a command id derived from the call, and the answer our call's state.
    assert!(commands.iter().all(|(_, b)| b["command_id"].is_string()));

    // A late redelivery of every stored event sends no command twice.
    stack
        .db
        .client
        .execute("UPDATE webhook_events SET status = 'received'", &[])
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> = stack
        .db
        .client
        .query("SELECT id FROM webhook_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let call_queue = stack
        .routes
        .iter()
        .find(|r| r.function == "call-worker")
        .unwrap();
    for id in &ids {
        stack
            .sqs
            .send_message()
            .queue_url(&call_queue.queue_url)
            .message_body(json!({ "event": id }).to_string())
            .send()
            .await
            .unwrap();
    }
    let db = &stack.db;
    stack
        .pump_while(&["call-worker"], "the redeliveries", || async {
            let left: i64 = db
                .client
                .query_one(
                    "SELECT count(*) FROM webhook_events WHERE status <> 'processed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            left == 0
        })
        .await;
    assert_eq!(
        stack.sandbox.telnyx.commands().len(),
        3,
        "no command was sent twice"
    );

    // Ingest and transcription.
    let done = || async {
        let calls = stack.get(&cookie, "/api/calls").await;
        let Some(recording) = calls["items"][0]["recording_ids"][0].as_str() else {
            return false;
        };
        let t = stack
            .get(
                &cookie,
                &format!("/api/recordings/{recording}/transcriptions"),
            )
            .await;
        t["items"][0]["status"] == "completed"
    };
    stack
        .pump_while(&[], "ingest and transcription", done)
        .await;
    let calls = stack.get(&cookie, "/api/calls").await;
    let call = &calls["items"][0];
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["provider"], "telnyx");
    assert_eq!(call["to"], number);
    assert_eq!(call["hangup_cause"], "normal_clearing");
    let recording_id = call["recording_ids"][0].as_str().unwrap();
    let recording = stack
        .get(&cookie, &format!("/api/recordings/{recording_id}"))
        .await;
    assert_eq!(recording["recording"]["status"], "ready", "{recording}");
    assert!(recording["recording"]["duration_seconds"].as_f64().unwrap() > 0.5);
    let one = stack
        .get(
            &cookie,
            &format!("/api/calls/{}", call["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(one["call"]["id"], call["id"]);
}

#[tokio::test]
async fn a_signalwire_call_is_answered_with_cxml_recorded_and_transcribed() {
    let stack = LocalStack::start().await;
    let number = "+15550100002";
    let cookie = stack
        .phone_owner(
            "signalwire-owner@example.com",
            number,
            "signalwire",
            json!({"record": true, "transcribe": true, "greeting": "Hello <there> & welcome"}),
        )
        .await;
    let played = stack.play_inbound("signalwire", number).await;
    assert!(played.recorded, "{played:?}");
    assert!(
        played
            .steps
            .iter()
            .any(|s| s == "cXML ← Say, Record, Hangup"),
        "{played:?}"
    );
    let done = || async {
        let calls = stack.get(&cookie, "/api/calls").await;
        let Some(recording) = calls["items"][0]["recording_ids"][0].as_str() else {
            return false;
        };
        let t = stack
            .get(
                &cookie,
                &format!("/api/recordings/{recording}/transcriptions"),
            )
            .await;
        t["items"][0]["status"] == "completed"
    };
    stack
        .pump_while(&[], "ingest and transcription", done)
        .await;
    let calls = stack.get(&cookie, "/api/calls").await;
    assert_eq!(calls["items"].as_array().unwrap().len(), 1);
    let call = &calls["items"][0];
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["provider"], "signalwire");
    assert_eq!(call["duration_seconds"], 1);
}

#[tokio::test]
async fn an_outbound_call_is_dialled_recorded_and_can_be_hung_up() {
    let stack = LocalStack::start().await;
    let number = "+15550100003";
    let cookie = stack
        .phone_owner(
            "caller@example.com",
            number,
            "telnyx",
            json!({"record": true}),
        )
        .await;
    let placed = stack
        .http
        .post(stack.api.url("/api/calls"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&json!({"from": number, "to": "+15559990000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    let placed: Value = placed.json().await.unwrap();
    assert_eq!(placed["call"]["status"], "queued");
    let id = placed["call"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/calls/{id}");
    let done = || async {
        let call = stack.get(&cookie, &path).await;
        call["call"]["recording_ids"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    stack
        .pump_while(&[], "the outbound call's recording", done)
        .await;
    let call = stack.get(&cookie, &path).await;
    assert_eq!(call["call"]["direction"], "outbound");
    assert_eq!(call["call"]["status"], "completed", "{call}");
    let dial = &stack.sandbox.telnyx.dials()[0];
    assert_eq!(dial["to"], "+15559990000");
    assert_eq!(dial["from"], number);
    assert_eq!(
        dial["connection_id"],
        shared::local::telephony::SANDBOX_CONNECTION_ID
    );
    assert!(
        dial["client_state"].is_string(),
        "client_state is set on the dial itself"
    );

    // A call that has ended cannot be hung up; one never dialled is canceled.
    let again = stack
        .http
        .post(stack.api.url(&format!("{path}/hangup")))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn forged_duplicate_and_reordered_telnyx_events() {
    let stack = LocalStack::start().await;
    let number = "+15550100004";
    let _cookie = stack
        .phone_owner(
            "order@example.com",
            number,
            "telnyx",
            json!({"record": false}),
        )
        .await;
    let url = stack.api.url("/webhooks/telnyx");
    let event = |kind: &str, id: &str, extra: Value| {
        let mut payload = json!({
            "call_control_id": "v3:reordered", "call_leg_id": "leg-r", "call_session_id": "session-r",
            "connection_id": shared::local::telephony::SANDBOX_CONNECTION_ID,
            "from": "+15557654321", "to": number, "direction": "incoming", "state": "parked",
        });
        for (k, v) in extra.as_object().unwrap() {
            payload[k] = v.clone();
        }
        json!({"data": {"record_type": "event", "event_type": kind, "id": id,
                        "occurred_at": "2026-12-05T10:00:00.000000Z", "payload": payload}})
        .to_string()
    };
    let post = |body: String, signed_by_sandbox: bool| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = if signed_by_sandbox {
            stack.sandbox.telnyx.sign(now, body.as_bytes())
        } else {
            let forger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
            shared::vendors::telnyx::signature::sign(&forger, now, body.as_bytes())
        };
        stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("telnyx-timestamp", now.to_string())
            .header("telnyx-signature-ed25519", signature)
            .body(body)
            .send()
    };
    // A forged event is refused and stores nothing.
    let forged = post(event("call.initiated", "forged-1", json!({})), false)
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let stored: i64 = stack
        .db
        .client
        .query_one("SELECT count(*) FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // The hangup arrives before the call's first event, and twice.
    let hangup = event(
        "call.hangup",
        "evt-hangup",
        json!({"hangup_cause": "originator_cancel", "hangup_source": "caller"}),
    );
    let first: Value = post(hangup.clone(), true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["duplicate"], false);
    let second: Value = post(hangup, true).await.unwrap().json().await.unwrap();
    assert_eq!(second["duplicate"], true);
    let initiated = post(event("call.initiated", "evt-initiated", json!({})), true)
        .await
        .unwrap();
    assert_eq!(initiated.status(), 200);
    let db = &stack.db;
    stack
        .pump_while(&["call-worker"], "both events", || async {
            let n: i64 = db
                .client
                .query_one(
                    "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n == 2
        })
        .await;
    let status: String = stack
        .db
        .client
        .query_one("SELECT status FROM calls", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "canceled");
    assert!(
        stack.sandbox.telnyx.commands().is_empty(),
        "an ended call is never answered"
    );
}

#[tokio::test]
async fn an_expired_telnyx_link_is_refetched_and_a_vanished_recording_fails_clearly() {
    let stack = LocalStack::start().await;
    let number = "+15550100005";
    let cookie = stack
        .phone_owner(
            "expiry@example.com",
            number,
            "telnyx",
            json!({"record": true}),
        )
        .await;
    // The call ends and its recording.saved is applied, but nothing is ingested yet.
    stack.play_inbound("telnyx", number).await;
    let db = &stack.db;
    stack
        .pump_while(&["call-worker"], "the recording event", || async {
            let n: i64 = db
                .client
                .query_one(
                    "SELECT count(*) FROM webhook_events WHERE status <> 'processed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n == 0
        })
        .await;
    // Ten minutes pass: every link the event carried has expired.
    stack.sandbox.telnyx.expire_urls();
    let has_recording = || async {
        let calls = stack.get(&cookie, "/api/calls").await;
        calls["items"][0]["recording_ids"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    stack
        .pump_while(
            &["recording-ingest"],
            "the refetched recording",
            has_recording,
        )
        .await;

    // A second call whose recording is gone from Telnyx as well: the job fails, nothing is left.
    stack.play_inbound("telnyx", number).await;
    stack
        .pump_while(&["call-worker"], "the second recording event", || async {
            let n: i64 = db
                .client
                .query_one(
                    "SELECT count(*) FROM webhook_events WHERE status <> 'processed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n == 0
        })
        .await;
    stack.sandbox.telnyx.expire_urls();
    let saved: Value = serde_json::from_slice(
        &stack
            .db
            .client
            .query_one(
                "SELECT body FROM webhook_events WHERE event_type = 'call.recording.saved'
                  ORDER BY received_at DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get::<_, Vec<u8>>(0),
    )
    .unwrap();
    let recording_id = saved["data"]["payload"]["recording_id"].as_str().unwrap();
    let deleted = stack
        .http
        .delete(format!(
            "{}/v2/recordings/{recording_id}",
            stack.sandbox.base_url
        ))
        .bearer_auth(shared::vendors::telnyx::config::SANDBOX_API_KEY)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    stack
        .pump_while(&["recording-ingest"], "the failed ingest", || async {
            let n: i64 = db
                .client
                .query_one("SELECT count(*) FROM calls WHERE error IS NOT NULL", &[])
                .await
                .unwrap()
                .get(0);
            n == 1
        })
        .await;
    let recordings: i64 = stack
        .db
        .client
        .query_one("SELECT count(*) FROM recordings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recordings, 1, "only the first call's recording exists");
    let error: String = stack
        .db
        .client
        .query_one("SELECT error FROM calls WHERE error IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(error.contains("Telnyx"), "{error}");
}

#[tokio::test]
async fn deleting_an_account_after_a_transcription_leaves_nothing_in_the_database_bucket_or_vendors()
 {
    let stack = LocalStack::start().await;
    let made = authjs(
        &stack.db.url,
        &["create-session", "--email", "erase-me@example.com"],
    );
    let user: i32 = made["user_id"].as_str().unwrap().parse().unwrap();
    let cookie = format!(
        "authjs.session-token={}",
        made["session_token"].as_str().unwrap()
    );
    let origin = "http://localhost:3000";
    // Upload, transcribe (the sandbox holds the transcript), and speak (it keeps a history item).
    let recording = stack
        .api
        .ready_recording(
            &stack.http,
            &cookie,
            &shared::platform::audio::silent_wav(2.0, 16000),
        )
        .await;
    let created: Value = stack
        .http
        .post(
            stack
                .api
                .url(&format!("/api/recordings/{recording}/transcriptions")),
        )
        .header("cookie", &cookie)
        .header("origin", origin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["transcription"]["id"].as_str().unwrap().to_owned();
    let url = stack.api.url(&format!("/api/transcriptions/{id}"));
    let got = stack
        .pump_until_settled(&cookie, &url, "transcription")
        .await;
    assert_eq!(got["transcription"]["status"], "completed", "{got}");
    let spoken: Value = stack
        .http
        .post(stack.api.url("/api/tts"))
        .header("cookie", &cookie)
        .header("origin", origin)
        .json(&serde_json::json!({"text": "Goodbye.", "voice_id": "21m00Tcm4TlvDq8ikWAM"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tts = spoken["tts"]["id"].as_str().unwrap().to_owned();
    let got = stack
        .pump_until_settled(&cookie, &stack.api.url(&format!("/api/tts/{tts}")), "tts")
        .await;
    assert_eq!(got["tts"]["status"], "completed", "{got}");
    let row = stack
        .db
        .client
        .query_one(
            "SELECT (SELECT vendor_transcript_id FROM transcriptions WHERE owner_id = $1),
                    (SELECT vendor_history_item_id FROM tts_jobs WHERE owner_id = $1)",
            &[&user],
        )
        .await
        .unwrap();
    let (transcript, history_item): (String, String) = (row.get(0), row.get(1));
    let sandbox = reqwest::Client::new();
    let at_vendor = |path: String, key: &'static str| {
        sandbox
            .get(format!("{}{path}", stack.sandbox_url))
            .header(key, "sandbox")
            .send()
    };
    let before: Value = at_vendor(format!("/v2/transcript/{transcript}"), "authorization")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        before["text"]
            .as_str()
            .unwrap()
            .contains("sandbox transcript")
    );
    assert_eq!(
        at_vendor(format!("/v1/history/{history_item}"), "xi-api-key")
            .await
            .unwrap()
            .status(),
        200
    );
    let prefix = format!("users/{user}/");
    assert_eq!(stack.storage.list_keys(&prefix).await.unwrap().len(), 2);

    let deleted = stack
        .http
        .delete(stack.api.url("/api/me"))
        .header("cookie", &cookie)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"deletion": {"status": "queued"}}));
    let me = stack
        .http
        .get(stack.api.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);

    // The account worker runs from the queue, as on a deployed stage.
    let http = shared::platform::http_client::http_client(Duration::from_secs(900));
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let status: Option<String> = stack
            .db
            .client
            .query_opt(
                "SELECT status FROM account_deletions WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if status.as_deref() == Some("completed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deletion did not finish: {status:?}"
        );
        stack.pump(&http).await;
    }

    // Nothing of the user in the database...
    for owned in shared::domain::lifecycle::account::OWNED_TABLES {
        let n: i64 = stack
            .db
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} = $1",
                    owned.table, owned.owner_column
                ),
                &[&user],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{} still holds rows", owned.table);
    }
    let users: i64 = stack
        .db
        .client
        .query_one("SELECT count(*) FROM users WHERE id = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0);
    let pending: i64 = stack
        .db
        .client
        .query_one(
            "SELECT count(*) FROM vendor_deletions WHERE subject_user_id = $1 AND done_at IS NULL",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    // ...in the bucket...
    assert_eq!(
        stack.storage.list_keys(&prefix).await.unwrap(),
        Vec::<String>::new()
    );
    // ...or at the vendors: the transcript redacted as AssemblyAI does, the history item gone.
    let after: Value = at_vendor(format!("/v2/transcript/{transcript}"), "authorization")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["text"], "Deleted by user.");
    assert_eq!(after["audio_url"], "http://deleted_by_user");
    assert_eq!(after["words"], Value::Null);
    assert_eq!(
        at_vendor(format!("/v1/history/{history_item}"), "xi-api-key")
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_signalwire_outbound_call_is_placed_answered_with_cxml_and_recorded() {
    let stack = LocalStack::start().await;
    let number = "+15550100006";
    let cookie = stack
        .phone_owner(
            "sw-caller@example.com",
            number,
            "signalwire",
            json!({"record": true}),
        )
        .await;
    let placed = stack
        .http
        .post(stack.api.url("/api/calls"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .json(&json!({"from": number, "to": "+15559990001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    let placed: Value = placed.json().await.unwrap();
    let path = format!("/api/calls/{}", placed["call"]["id"].as_str().unwrap());
    let done = || async {
        let call = stack.get(&cookie, &path).await;
        call["call"]["status"] == "completed"
            && call["call"]["recording_ids"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    };
    stack
        .pump_while(&[], "the SignalWire call's recording", done)
        .await;
    // SignalWire was asked with a form naming Parley's callbacks, which carry the call's id.
    let created = stack
        .sandbox
        .signalwire
        .calls()
        .into_iter()
        .find(|c| c.direction == "outbound-api")
        .expect("the call was created at SignalWire");
    assert_eq!(created.to, "+15559990001");
    assert!(
        created.url.as_deref().is_some_and(|u| u.ends_with(&format!(
            "/webhooks/signalwire/voice?call={}",
            placed["call"]["id"].as_str().unwrap()
        ))),
        "{created:?}"
    );
}
