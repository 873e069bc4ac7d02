//! Per-user rate limits (issue 11 §3) against real PostgreSQL, through real API Gateway v2 events:
//! the GCRA bucket in the session statement, its 429 and fields, refill, separate buckets, the
//! concurrency bound, no writes without a session, the one round trip, and the webhook receivers'
//! flood posture (the signature is checked before any database query).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parley_tests::{Answer, Event, TestDb, TestStack, bearer, workspace_root};
use serde_json::json;
use shared::App;
use shared::api::ApiError;
use shared::api::auth::RESOLVE_SQL;
use shared::api::pipeline::READ_ONLY_FUNCTIONS;
use shared::api::ratelimit::{PAID_FUNCTIONS, RateClass, TOKEN_FUNCTIONS, WRITE_FUNCTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn app(db: &TestDb, function: &'static str, env: &[(&str, &str)]) -> App {
    App::from_settings(function, db.settings(env))
}

async fn me(app: &App, token: &str) -> Answer {
    let event = Event::new("GET", "/api/me").header("authorization", &bearer(token));
    Answer::from_response(
        app.http
            .serve(event.request(), |req| me::handle(app, req))
            .await
            .unwrap(),
    )
}

async fn tat(db: &TestDb, user: i32, class: &str) -> Option<time::OffsetDateTime> {
    db.client
        .query_opt(
            "SELECT tat FROM rate_limits WHERE user_id = $1 AND class = $2",
            &[&user, &class],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn buckets(db: &TestDb) -> i64 {
    db.client
        .query_one("SELECT count(*) FROM rate_limits", &[])
        .await
        .unwrap()
        .get(0)
}

fn headers_for(token: &str) -> lambda_http::http::HeaderMap {
    let mut h = lambda_http::http::HeaderMap::new();
    h.insert("authorization", bearer(token).parse().unwrap());
    h
}

// ------------------------------------------------------------------ classes

fn class_of(function: &str) -> RateClass {
    shared::api::ratelimit::class_of(function, READ_ONLY_FUNCTIONS)
}

#[test]
fn every_function_that_authenticates_is_in_exactly_one_class_list() {
    let root = workspace_root().join("functions");
    let mut authenticating = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut source = String::new();
        for file in std::fs::read_dir(dir.join("src")).unwrap() {
            source.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
        }
        if source.contains("sessions.authenticate(") {
            authenticating.push(name);
        }
    }
    authenticating.sort();
    assert!(authenticating.len() >= 20, "{authenticating:?}");
    for name in &authenticating {
        let lists = [
            ("PAID_FUNCTIONS", PAID_FUNCTIONS),
            ("TOKEN_FUNCTIONS", TOKEN_FUNCTIONS),
            ("WRITE_FUNCTIONS", WRITE_FUNCTIONS),
            ("READ_ONLY_FUNCTIONS", READ_ONLY_FUNCTIONS),
        ];
        let found: Vec<&str> = lists
            .iter()
            .filter(|(_, list)| list.contains(&name.as_str()))
            .map(|(list, _)| *list)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} authenticates and must be in exactly one of shared::api::ratelimit's lists \
             (or READ_ONLY_FUNCTIONS): found in {found:?}"
        );
    }
    // What the issue names, and the default for anything unlisted.
    for paid in [
        "transcriptions-create",
        "tts-create",
        "translations-create",
        "transcription-translations-create",
        "calls-create",
    ] {
        assert_eq!(class_of(paid), RateClass::Paid, "{paid}");
    }
    assert_eq!(class_of("realtime-token"), RateClass::Token);
    assert_eq!(class_of("recordings-list"), RateClass::Read);
    assert_eq!(class_of("recordings-upload"), RateClass::Write);
}

#[test]
fn a_bad_limit_fails_the_cold_start_naming_the_variable() {
    let mut vars = BTreeMap::from([
        ("DATABASE_URL", "postgres://u@127.0.0.1/x"),
        ("RATE_LIMIT_PAID", "ten a minute"),
        ("RATE_LIMIT_READ", "0/1m"),
    ]);
    let err = shared::api::settings::Settings::from_lookup(|n| vars.get(n).map(|v| v.to_string()))
        .unwrap_err();
    let names: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
    assert_eq!(names, ["RATE_LIMIT_PAID", "RATE_LIMIT_READ"]);
    assert!(err.to_string().contains("LIMIT/WINDOW"), "{err}");
    vars.insert("RATE_LIMIT_PAID", "5/1h;burst=3");
    vars.remove("RATE_LIMIT_READ");
    let s = shared::api::settings::Settings::from_lookup(|n| vars.get(n).map(|v| v.to_string()))
        .unwrap();
    assert_eq!(
        s.rate_limits.paid.policy_field(),
        "\"paid\";q=5;w=3600;parley-burst=3"
    );
}

// ------------------------------------------------------------------ the bucket

#[tokio::test]
async fn a_burst_is_allowed_then_429_with_retry_after_and_the_drafts_fields() {
    let db = TestDb::create().await;
    // 5 at once, then one every 720 s.
    let app = app(&db, me::FUNCTION, &[("RATE_LIMIT_READ", "5/1h")]);
    let (user, token) = db.session("burst@example.com", 3600).await;
    for left in (0..5).rev() {
        let ok = me(&app, &token).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        // One more frees 720 s after the last one taken.
        assert_eq!(
            ok.header("ratelimit"),
            Some(format!("\"read\";r={left};t=720").as_str())
        );
        assert_eq!(
            ok.header("ratelimit-policy"),
            Some("\"read\";q=5;w=3600;parley-burst=5")
        );
        assert_eq!(ok.header("retry-after"), None);
    }
    let before = tat(&db, user, "read").await.unwrap();
    let refused = me(&app, &token).await;
    refused.assert_problem(429, "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("720"));
    assert_eq!(refused.header("ratelimit"), Some("\"read\";r=0;t=720"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"read\";q=5;w=3600;parley-burst=5")
    );
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    assert_eq!(
        refused.body["detail"],
        "too many read requests; retry in 720 s"
    );
    assert!(refused.body.get("user").is_none());
    // A refusal stores nothing: the bucket is where the fifth request left it.
    assert_eq!(tat(&db, user, "read").await.unwrap(), before);
    assert_eq!(me(&app, &token).await.status, 429);
    assert_eq!(tat(&db, user, "read").await.unwrap(), before);
    db.drop_db().await;
}

#[tokio::test]
async fn the_bucket_refills_one_request_per_interval() {
    let db = TestDb::create().await;
    // Two at once, then one a second.
    let app = app(&db, me::FUNCTION, &[("RATE_LIMIT_READ", "2/2s")]);
    let (_, token) = db.session("refill@example.com", 3600).await;
    assert_eq!(me(&app, &token).await.status, 200);
    let second = me(&app, &token).await;
    assert_eq!(second.header("ratelimit"), Some("\"read\";r=0;t=1"));
    let refused = me(&app, &token).await;
    refused.assert_problem(429, "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = me(&app, &token).await;
    assert_eq!(again.status, 200, "one interval later, one more fits");
    assert_eq!(me(&app, &token).await.status, 429, "and only one");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(me(&app, &token).await.status, 200, "full again");
    let last = me(&app, &token).await;
    assert_eq!(last.status, 200);
    assert_eq!(me(&app, &token).await.status, 429);
    db.drop_db().await;
}

#[tokio::test]
async fn classes_and_users_never_share_a_bucket() {
    let db = TestDb::create().await;
    let env = [
        ("RATE_LIMIT_PAID", "2/1h"),
        ("RATE_LIMIT_TOKEN", "2/1h"),
        ("RATE_LIMIT_WRITE", "2/1h"),
        ("RATE_LIMIT_READ", "2/1h"),
    ];
    let paid = app(&db, "tts-create", &env);
    let token_app = app(&db, "realtime-token", &env);
    let write = app(&db, "recordings-delete", &env);
    let read = app(&db, "recordings-list", &env);
    let (alice_id, alice) = db.session("alice@example.com", 3600).await;
    let (_, bob) = db.session("bob@example.com", 3600).await;
    // Alice's second session (another device) shares her buckets: the user is the key.
    let alice_laptop = uuid::Uuid::new_v4().to_string();
    db.client
        .execute(
            r#"INSERT INTO sessions ("userId", expires, "sessionToken") VALUES ($1, now() + interval '1 hour', $2)"#,
            &[&alice_id, &alice_laptop],
        )
        .await
        .unwrap();
    for _ in 0..2 {
        paid.sessions
            .authenticate(&headers_for(&alice))
            .await
            .unwrap();
    }
    match paid
        .sessions
        .authenticate(&headers_for(&alice_laptop))
        .await
    {
        Err(ApiError::RateLimited(s)) => assert_eq!(s.policy.class, RateClass::Paid),
        other => panic!("expected 429, got {other:?}"),
    }
    // Her other classes are untouched, and so is Bob's paid bucket.
    for other in [&token_app, &write, &read] {
        let s = other
            .sessions
            .authenticate(&headers_for(&alice))
            .await
            .unwrap();
        assert_eq!(s.rate.remaining, 1, "{:?}", s.rate.policy.class);
    }
    for _ in 0..2 {
        paid.sessions
            .authenticate(&headers_for(&bob))
            .await
            .unwrap();
    }
    assert!(matches!(
        paid.sessions.authenticate(&headers_for(&bob)).await,
        Err(ApiError::RateLimited(_))
    ));
    assert_eq!(buckets(&db).await, 5, "alice: 4 classes, bob: 1");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_requests_never_exceed_the_burst() {
    let db = TestDb::create().await;
    // 10 at once, then one every 6 minutes: nothing refills during the test.
    let app = Arc::new(app(
        &db,
        "transcriptions-create",
        &[("RATE_LIMIT_PAID", "10/1h"), ("DB_POOL_MAX_SIZE", "25")],
    ));
    let (user, token) = db.session("parallel@example.com", 3600).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { app.sessions.authenticate(&headers_for(&token)).await })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => allowed += 1,
            Err(ApiError::RateLimited(s)) => {
                assert_eq!(s.remaining, 0);
                assert!((1..=360).contains(&s.retry_after_secs.unwrap()), "{s:?}");
                refused += 1
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((allowed, refused), (10, 40));
    // The bucket holds exactly ten intervals ahead of now (less the test's own time).
    let ahead: f64 = db
        .client
        .query_one(
            "SELECT extract(epoch FROM tat - now())::float8 FROM rate_limits WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert!((3590.0..=3600.0).contains(&ahead), "{ahead}");
    db.drop_db().await;
}

#[tokio::test]
async fn no_live_session_writes_nothing() {
    let db = TestDb::create().await;
    let app = app(&db, "tts-create", &[("RATE_LIMIT_PAID", "1/1h")]);
    let (_, expired) = db.session("expired@example.com", -60).await;
    for token in [
        expired.as_str(),
        "6f1c2d7e-8a9b-4c3d-9e8f-7a6b5c4d3e2f",
        "not a token",
    ] {
        let answer = me(&app, token).await;
        answer.assert_problem(401, "unauthenticated");
        assert_eq!(answer.header("ratelimit"), None);
    }
    assert_eq!(buckets(&db).await, 0);
    assert_eq!(
        db.session_count(&expired).await,
        0,
        "the expired one is gone"
    );
    db.drop_db().await;
}

// ------------------------------------------------------------------ one round trip

/// A TCP relay in front of PostgreSQL that counts the frontend messages that end a round trip:
/// `Sync` (extended protocol) and `Query` (simple protocol), and `Parse` (a statement prepared).
#[derive(Default)]
struct Wire {
    syncs: AtomicUsize,
    queries: AtomicUsize,
    parses: AtomicUsize,
    connections: AtomicUsize,
}

impl Wire {
    fn round_trips(&self) -> usize {
        self.syncs.load(Ordering::SeqCst) + self.queries.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.syncs.store(0, Ordering::SeqCst);
        self.queries.store(0, Ordering::SeqCst);
        self.parses.store(0, Ordering::SeqCst);
    }
}

/// Starts the relay to `upstream` (host:port); returns its address and its counters.
async fn counting_relay(upstream: String) -> (String, Arc<Wire>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let wire = Arc::new(Wire::default());
    let counters = wire.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            counters.connections.fetch_add(1, Ordering::SeqCst);
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let counters = counters.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut pending: Vec<u8> = Vec::new();
                let mut started = false;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Whole messages only: untyped during startup, `type + length` after.
                    loop {
                        let header = if started { 5 } else { 4 };
                        if pending.len() < header {
                            break;
                        }
                        let at = header - 4;
                        let len =
                            u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
                        let total = at + len;
                        if pending.len() < total {
                            break;
                        }
                        if started {
                            match pending[0] {
                                b'S' => counters.syncs.fetch_add(1, Ordering::SeqCst),
                                b'Q' => counters.queries.fetch_add(1, Ordering::SeqCst),
                                b'P' => counters.parses.fetch_add(1, Ordering::SeqCst),
                                _ => 0,
                            };
                        } else {
                            let code = u32::from_be_bytes(pending[4..8].try_into().unwrap());
                            // SSLRequest and GSSENCRequest come before the StartupMessage.
                            started = !matches!(code, 80_877_103 | 80_877_104);
                        }
                        pending.drain(..total);
                    }
                }
            });
        }
    });
    (addr, wire)
}

#[test]
fn the_session_statement_is_one_statement() {
    let sql = RESOLVE_SQL.trim();
    assert!(!sql.contains(';'), "one statement, no separators");
    assert!(sql.starts_with("WITH found AS"));
    // The rate limit rides in it: the bucket is read, charged and reported in the same text.
    for part in [
        "charged AS",
        "INSERT INTO rate_limits",
        "FOR UPDATE",
        "AS allowed",
    ] {
        assert!(sql.contains(part), "{part}");
    }
}

#[tokio::test]
async fn an_authenticated_request_is_one_round_trip_allowed_or_refused() {
    let db = TestDb::create().await;
    let pg = shared::platform::settings::parse_database_url(&db.url).unwrap();
    let host = match &pg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("a TCP test server, not {other:?}"),
    };
    let (relay, wire) = counting_relay(format!("{host}:{}", pg.get_ports()[0])).await;
    let url = format!("postgres://postgres@{relay}/{}", pg.get_dbname().unwrap());
    let app = App::from_settings(
        me::FUNCTION,
        parley_tests::settings_with(
            &url,
            &[("DB_POOL_MAX_SIZE", "1"), ("RATE_LIMIT_READ", "3/1h")],
        ),
    );
    let (_, token) = db.session("wire@example.com", 3600).await;
    // The first request on a connection prepares the statement (one extra round trip, once).
    assert_eq!(me(&app, &token).await.status, 200);
    assert_eq!(wire.parses.load(Ordering::SeqCst), 1);
    for expected in [200, 200, 429, 429] {
        wire.reset();
        let answer = me(&app, &token).await;
        assert_eq!(answer.status, expected, "{}", answer.body);
        assert_eq!(wire.round_trips(), 1, "one Bind/Execute/Sync per request");
        assert_eq!(wire.parses.load(Ordering::SeqCst), 0, "the cached plan");
    }
    assert_eq!(wire.connections.load(Ordering::SeqCst), 1);
    db.drop_db().await;
}

// ------------------------------------------------------------------ handlers and nothing queued

#[tokio::test]
async fn a_refused_create_queues_nothing_and_a_browser_can_read_the_fields() {
    let stack = TestStack::builder(tts_create::FUNCTION)
        .queue("tts", "tts-worker", "TTS_QUEUE_URL")
        .vendor(&["ELEVENLABS_BASE_URL"])
        .env(&[
            ("ELEVENLABS_API_KEY", "sk_el_test_0123456789abcdef"),
            ("RATE_LIMIT_PAID", "2/10m"),
        ])
        .build()
        .await;
    let jobs = stack.app.tts_jobs(stack.sqs.clone()).unwrap();
    let (_, token) = stack.db.session("speaker@example.com", 3600).await;
    let create = |n: usize| {
        let event = Event::new("POST", "/api/tts")
            .cookie(&format!("authjs.session-token={token}"))
            .header("origin", "http://localhost:3000")
            .header("content-type", "application/json")
            .body(
                &json!({"text": format!("Hello number {n}."), "voice_id": "21m00Tcm4TlvDq8ikWAM"})
                    .to_string(),
            );
        let (app, jobs) = (&stack.app, &jobs);
        async move {
            Answer::from_response(
                app.http
                    .serve(event.request(), |req| tts_create::handle(app, jobs, req))
                    .await
                    .unwrap(),
            )
        }
    };
    for n in 0..2 {
        let created = create(n).await;
        assert_eq!(created.status, 202, "{}", created.body);
        assert_eq!(
            created.header("ratelimit"),
            Some(format!("\"paid\";r={};t=300", 1 - n).as_str())
        );
        assert_eq!(
            created.header("access-control-expose-headers"),
            Some("ratelimit, ratelimit-policy, retry-after")
        );
    }
    let refused = create(2).await;
    refused.assert_problem(429, "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("300"));
    assert_eq!(refused.header("ratelimit"), Some("\"paid\";r=0;t=300"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"paid\";q=2;w=600;parley-burst=2")
    );
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let count: i64 = stack
        .db
        .client
        .query_one("SELECT count(*) FROM tts_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "the refused request created no job");
    let route = stack.queue.as_ref().unwrap();
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&route.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let depth: usize = attributes
        .attributes()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(depth, 2, "and sent nothing to the queue");
    // No vendor was called either: the worker never ran, and create never calls ElevenLabs.
    assert!(stack.vendor.received_requests().await.unwrap().is_empty());
}

// ------------------------------------------------------------------ webhook flood posture

const SIGNALWIRE_KEY: &str = "PSKrate-limit-test-signing-key";

/// A receiver's state over a database nothing listens on: any query would answer 503.
fn dead_db_app(function: &'static str) -> App {
    let telnyx_key = ed25519_dalek::SigningKey::from_bytes(&[11u8; 32]);
    use base64::Engine;
    let public =
        base64::engine::general_purpose::STANDARD.encode(telnyx_key.verifying_key().as_bytes());
    App::from_settings(
        function,
        parley_tests::settings_with(
            &parley_tests::dead_database_url(),
            &[
                ("DB_CONNECT_TIMEOUT_MS", "500"),
                ("DB_ACQUIRE_TIMEOUT_MS", "500"),
                ("TELNYX_PUBLIC_KEY", &public),
                ("SIGNALWIRE_SIGNING_KEY", SIGNALWIRE_KEY),
                // Never reached: a forged request is refused first, a signed one fails at the database.
                ("CALL_QUEUE_URL", "http://127.0.0.1:9/000000000000/calls"),
            ],
        ),
    )
}

fn sqs() -> aws_sdk_sqs::Client {
    shared::local::sqs_client("http://127.0.0.1:9")
}

#[tokio::test]
async fn a_forged_telnyx_event_is_refused_without_a_database_query() {
    let app = dead_db_app(telnyx_webhook::FUNCTION);
    let receiver = app.telnyx_receiver(sqs()).unwrap();
    let body = json!({"data": {"record_type": "event", "event_type": "call.initiated",
        "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0", "occurred_at": "2026-12-05T10:00:00.000000Z",
        "payload": {"call_control_id": "v3:x", "call_leg_id": "l", "call_session_id": "s",
                    "connection_id": "1", "from": "+15557654321", "to": "+15550001111",
                    "direction": "incoming", "state": "parked"}}})
    .to_string();
    let post = |key: &ed25519_dalek::SigningKey| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = shared::vendors::telnyx::signature::sign(key, now, body.as_bytes());
        Event::new("POST", "/webhooks/telnyx")
            .header("content-type", "application/json")
            .header("telnyx-timestamp", &now.to_string())
            .header("telnyx-signature-ed25519", &signature)
            .body(&body)
    };
    let call = |event: Event| {
        let (app, receiver) = (&app, &receiver);
        async move {
            Answer::from_response(
                app.http
                    .serve(event.request(), |req| telnyx_webhook::handle(receiver, req))
                    .await
                    .unwrap(),
            )
        }
    };
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    call(post(&forger))
        .await
        .assert_problem(401, "invalid-callback-credentials");
    let unsigned = call(
        Event::new("POST", "/webhooks/telnyx")
            .header("content-type", "application/json")
            .body(&body),
    )
    .await;
    assert!([400, 401].contains(&unsigned.status), "{}", unsigned.body);
    // The control: the account's signature gets as far as the (dead) database.
    let genuine = ed25519_dalek::SigningKey::from_bytes(&[11u8; 32]);
    call(post(&genuine))
        .await
        .assert_problem(503, "service-unavailable");
}

/// A SignalWire form callback to `path`, signed with `key`.
fn signalwire_event(path: &str, params: &[(&str, &str)], key: &str) -> Event {
    let url = format!("https://abc123.execute-api.us-east-1.amazonaws.com{path}");
    let signature = shared::vendors::signalwire::signature::sign_form(
        &secrecy::SecretString::from(key.to_owned()),
        &url,
        params,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Event::new("POST", path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-signalwire-signature", &signature)
        .body(&body)
}

const CALL: &[(&str, &str)] = &[
    ("AccountSid", "AC0123"),
    ("CallSid", "CA0123"),
    ("From", "+15557654321"),
    ("To", "+15550001111"),
    ("Direction", "inbound"),
    ("CallStatus", "ringing"),
];

const RECORDING: &[(&str, &str)] = &[
    ("AccountSid", "AC0123"),
    ("CallSid", "CA0123"),
    ("RecordingSid", "RE0123"),
    ("RecordingStatus", "completed"),
    ("RecordingUrl", "https://files.signalwire.com/r/RE0123.wav"),
    ("RecordingDuration", "12"),
];

#[tokio::test]
async fn forged_signalwire_callbacks_are_refused_without_a_database_query() {
    for (function, path, params) in [
        (
            signalwire_voice::FUNCTION,
            "/webhooks/signalwire/voice",
            CALL,
        ),
        (
            signalwire_status::FUNCTION,
            "/webhooks/signalwire/status",
            CALL,
        ),
        (
            signalwire_recording::FUNCTION,
            "/webhooks/signalwire/recording",
            RECORDING,
        ),
    ] {
        let app = dead_db_app(function);
        let receiver = app.signalwire_receiver(sqs()).unwrap();
        let http = app.http.clone().accepting_forms();
        let call = |event: Event| {
            let (app, receiver, http) = (&app, &receiver, &http);
            async move {
                let req = event.request();
                let response = http
                    .serve(req, |req| async move {
                        match function {
                            "signalwire-voice" => {
                                signalwire_voice::handle(app, receiver, req).await
                            }
                            "signalwire-status" => signalwire_status::handle(receiver, req).await,
                            _ => signalwire_recording::handle(receiver, req).await,
                        }
                    })
                    .await
                    .unwrap();
                Answer::from_response(response)
            }
        };
        let forged = call(signalwire_event(path, params, "PSKsomebody-else")).await;
        forged.assert_problem(401, "invalid-callback-credentials");
        // Unsigned, and signed over another URL: refused the same way.
        let mut unsigned = signalwire_event(path, params, SIGNALWIRE_KEY);
        unsigned = unsigned.header("x-signalwire-signature", "0000");
        call(unsigned)
            .await
            .assert_problem(401, "invalid-callback-credentials");
        if function == "signalwire-voice" {
            // The `after` document is verified too, before anything is answered.
            let after = signalwire_event(path, params, "PSKsomebody-else").query("after=dial");
            call(after)
                .await
                .assert_problem(401, "invalid-callback-credentials");
        }
        // The control: the project's signature gets as far as the (dead) database.
        call(signalwire_event(path, params, SIGNALWIRE_KEY))
            .await
            .assert_problem(503, "service-unavailable");
    }
}

#[tokio::test]
async fn a_forged_assemblyai_callback_with_a_mac_is_refused_without_a_database_query() {
    // The URL's MAC is checked before the lookup (transcriptions.rs covers the legacy path).
    let app = App::from_settings(
        assemblyai_webhook::FUNCTION,
        parley_tests::settings_with(
            &parley_tests::dead_database_url(),
            &[
                ("DB_CONNECT_TIMEOUT_MS", "500"),
                ("DB_ACQUIRE_TIMEOUT_MS", "500"),
            ],
        ),
    );
    let queue = shared::platform::queue::JobQueue::new(sqs(), "http://127.0.0.1:9/000000000000/t");
    let signer = app.callback_signer().unwrap();
    let id = uuid::Uuid::new_v4();
    for sig in [
        signer.sign(uuid::Uuid::new_v4()),
        "AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ] {
        let event = Event::new("POST", "/webhooks/assemblyai")
            .query(&format!("transcription_id={id}&sig={sig}"))
            .header("content-type", "application/json")
            .header(shared::vendors::assemblyai::WEBHOOK_AUTH_HEADER, "anything")
            .body(&json!({"transcript_id": "t1", "status": "completed"}).to_string());
        let answer = Answer::from_response(
            app.http
                .serve(event.request(), |req| {
                    assemblyai_webhook::handle(&app, &queue, &signer, req)
                })
                .await
                .unwrap(),
        );
        answer.assert_problem(401, "invalid-callback-credentials");
    }
}
