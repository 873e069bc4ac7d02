//! What the bench sends: the seeded rows, the API Gateway v2 events, and the functions' environment.

use std::str::FromStr;

use serde_json::{Value, json};

use xtask::Result;

/// The floor: a hello-world `lambda_runtime` binary (xtask/bench-floor), not a deployed function.
pub const FLOOR: &str = "bench-floor";

/// Every measured binary, floor first, in the order of [`targets`].
pub const NAMES: [&str; 6] = [
    FLOOR,
    "me",
    "recordings-list",
    "transcriptions-get",
    "assemblyai-webhook",
    "telnyx-webhook",
];

/// The bench's Telnyx signing key; the receiver is given its public half as `TELNYX_PUBLIC_KEY`.
const TELNYX_SEED: [u8; 32] = *b"parley-bench-telnyx-signing-key!";

/// `TELNYX_PUBLIC_KEY` for the bench's key.
pub fn telnyx_public_key() -> String {
    use base64::Engine;
    let key = ed25519_dalek::SigningKey::from_bytes(&TELNYX_SEED);
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
}

/// Recordings seeded for the list: more than a page (20), so the answer carries a signed cursor.
const RECORDINGS: usize = 25;

/// Same as `AUTH_SECRET` in the functions' environment; only cursors are signed with it here.
const AUTH_SECRET: &str = "parley-bench-auth-secret-0123456789abcdef";

/// Auth.js's default `session.maxAge` and `updateAge`, as the functions use them by default.
pub const SESSION_MAX_AGE_SECS: i64 = 30 * 24 * 3600;
pub const SESSION_UPDATE_AGE_SECS: i64 = 24 * 3600;

/// The rate limit every measured function runs under: one session makes thousands of requests, and
/// the bench times the allowed path (the bucket written on every request), never a 429.
const RATE_LIMIT: &str = "1000000/1s";
/// `RATE_LIMIT`'s emission interval and tolerance in microseconds, for pgbench's statement.
pub const RATE_INTERVAL_US: i64 = 1;
pub const RATE_TOLERANCE_US: i64 = 999_999;

/// One measured binary and the request it answers.
pub struct Target {
    pub name: &'static str,
    /// What one invocation does, for the report.
    pub path: &'static str,
    pub event: Value,
    pub expected_status: u64,
    /// A new event for every invocation (a receiver stores each event once: a repeat would time
    /// the duplicate path); `None` repeats `event`.
    pub fresh: Option<fn(u64) -> Value>,
}

/// A signed Telnyx `call.initiated` with its own event id: the receiver verifies, stores and
/// enqueues every one (the path a real call takes).
pub fn telnyx_event(n: u64) -> Value {
    let body = json!({
        "data": {
            "record_type": "event",
            "event_type": "call.initiated",
            "id": format!("0ccc7b54-4df3-4bca-a65a-{n:012}"),
            "occurred_at": "2026-12-05T03:00:00.000000Z",
            "payload": {
                "call_control_id": "v3:bench-call-control-id",
                "call_leg_id": "428c31b6-7af4-4bcb-b68e-5013ef9657c1",
                "call_session_id": "428c31b6-abf3-479b-a4f8-be8f3d4a4c6e",
                "connection_id": "1494404757140276705",
                "client_state": null,
                "direction": "incoming",
                "from": "+15557654321",
                "to": "+15550100001",
                "state": "parked",
                "start_time": "2026-12-05T03:00:00.000000Z"
            }
        },
        "meta": { "attempt": 1, "delivered_to": "https://r3pmxmplak.execute-api.us-east-1.amazonaws.com/webhooks/telnyx" }
    })
    .to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = ed25519_dalek::SigningKey::from_bytes(&TELNYX_SEED);
    let signature = shared::vendors::telnyx::signature::sign(&key, now, body.as_bytes());
    let mut event = Event::new("POST", "/webhooks/telnyx", "/webhooks/telnyx".into());
    event.headers = vec![
        ("content-type", "application/json".into()),
        ("user-agent", "Telnyx Webhooks".into()),
        ("telnyx-timestamp", now.to_string()),
        ("telnyx-signature-ed25519", signature),
    ];
    event.body = Some(body);
    event.to_json()
}

/// Rows the requests refer to.
pub struct Seeded {
    pub session_token: String,
    pub transcription_id: String,
    pub webhook_secret: String,
}

/// A user with an Auth.js session, recordings, and a completed transcription with its callback secret.
pub async fn seed(url: &str) -> Result<Seeded> {
    let (user_id, session_token, _) = xtask::postgres::create_session(
        url,
        "bench@example.com",
        Some("Bench User"),
        SESSION_MAX_AGE_SECS,
    )
    .await?;
    let client = connect(url).await?;
    // The server's message, not just "db error".
    let failed = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => format!("seeding: {}", db.message()),
        None => format!("seeding: {e}"),
    };

    // Spread over time so the keyset order is the insertion order, as real uploads are.
    client
        .execute(
            "INSERT INTO recordings (id, owner_id, object_key, status, content_type,
                 declared_size_bytes, size_bytes, duration_seconds, file_name, created_at, updated_at)
             SELECT gen_random_uuid(), $1::int, 'recordings/' || $1::int || '/' || n || '.wav', 'ready',
                 'audio/wav', 4800044, 4800044, 150.0, 'call-' || n || '.wav',
                 now() - make_interval(mins => n), now() - make_interval(mins => n)
             FROM generate_series(1, $2::int) AS n",
            &[&user_id, &(RECORDINGS as i32)],
        )
        .await
        .map_err(failed)?;
    let words: Vec<Value> = "thanks for calling parley this call may be recorded how can I help"
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            let start = i as i64 * 300;
            json!({ "text": w, "start": start, "end": start + 250, "confidence": 0.97, "speaker": "A" })
        })
        .collect();
    let utterances = json!([
        { "speaker": "A", "text": "Thanks for calling Parley, this call may be recorded.", "start": 0, "end": 2650, "confidence": 0.97 },
        { "speaker": "A", "text": "How can I help?", "start": 2700, "end": 3850, "confidence": 0.98 }
    ]);
    // 43 base64url characters: the 256-bit shape of the secrets the API issues.
    let webhook_secret = "benchWebhookSecret0123456789abcdefghijklmno".to_owned();
    let row = client
        .query_one(
            "INSERT INTO transcriptions (id, owner_id, recording_id, status, language_code,
                 speaker_labels, webhook_secret, message_sent_at, submit_started_at,
                 vendor_transcript_id, submitted_at, text, utterances, words,
                 audio_duration_seconds, confidence, completed_at)
             SELECT gen_random_uuid(), $1::int, r.id, 'completed', 'en_us', true, $2::text, now(),
                 now(), 'bench-transcript-0001', now(), $3::text, $4::jsonb, $5::jsonb, 150.0, 0.97, now()
             FROM recordings r WHERE r.owner_id = $1::int ORDER BY r.created_at DESC LIMIT 1
             RETURNING id::text",
            &[
                &user_id,
                &webhook_secret,
                &"Thanks for calling Parley, this call may be recorded. How can I help?",
                &utterances,
                &Value::Array(words),
            ],
        )
        .await
        .map_err(failed)?;
    Ok(Seeded {
        session_token,
        transcription_id: row.get(0),
        webhook_secret,
    })
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to the bench database: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// "PostgreSQL 15.x" and its build, as the server reports it.
pub async fn server_version(url: &str) -> Result<String> {
    let row = connect(url)
        .await?
        .query_one("SELECT split_part(version(), ',', 1)", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// An API Gateway HTTP API (payload 2.0) event as a browser's request arrives, like
/// tests/fixtures/apigw-v2-get-me.json.
struct Event {
    method: &'static str,
    route: &'static str,
    path: String,
    path_parameters: Option<Value>,
    query: Option<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    cookies: Vec<String>,
    body: Option<String>,
}

impl Event {
    fn new(method: &'static str, route: &'static str, path: String) -> Event {
        Event {
            method,
            route,
            path,
            path_parameters: None,
            query: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            body: None,
        }
    }

    /// A signed-in browser on the web app: its origin and its Auth.js cookie among others.
    fn signed_in(mut self, session_token: &str) -> Event {
        self.headers
            .push(("origin", "http://localhost:3000".into()));
        self.headers.push(("accept", "application/json".into()));
        self.cookies = vec![
            "theme=dark".to_owned(),
            "authjs.callback-url=http%3A%2F%2Flocalhost%3A3000".to_owned(),
            format!("authjs.session-token={session_token}"),
        ];
        self
    }

    fn to_json(&self) -> Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in [
            ("host", "r3pmxmplak.execute-api.us-east-1.amazonaws.com"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
            (
                "x-amzn-trace-id",
                "Root=1-6740b8c1-0b1c6d2e3f4a5b6c7d8e9f01",
            ),
            ("x-forwarded-for", "205.255.255.176"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-proto", "https"),
        ] {
            headers.insert(name.to_owned(), json!(value));
        }
        for (name, value) in &self.headers {
            headers.insert((*name).to_owned(), json!(value));
        }
        let body_length = self.body.as_ref().map_or(0, String::len);
        headers.insert("content-length".to_owned(), json!(body_length.to_string()));
        let route_key = format!("{} {}", self.method, self.route);
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": self.query.as_ref().map(|(k, v)| format!("{k}={v}")).unwrap_or_default(),
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "r3pmxmplak",
                "domainName": "r3pmxmplak.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "r3pmxmplak",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "205.255.255.176",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": route_key,
                "stage": "$default",
                "time": "05/Dec/2026:03:00:00 +0000",
                "timeEpoch": 1796439600000u64
            },
            "isBase64Encoded": false
        });
        if !self.cookies.is_empty() {
            event["cookies"] = json!(self.cookies);
        }
        if let Some(params) = &self.path_parameters {
            event["pathParameters"] = params.clone();
        }
        if let Some((name, value)) = &self.query {
            let mut params = serde_json::Map::new();
            params.insert((*name).to_owned(), json!(value));
            event["queryStringParameters"] = Value::Object(params);
        }
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        event
    }
}

/// The floor first, then the functions issue 12 names: `me`, a list, a job GET, the webhook.
pub fn targets(seeded: &Seeded) -> Vec<Target> {
    let token = &seeded.session_token;
    let me = Event::new("GET", "/api/me", "/api/me".into())
        .signed_in(token)
        .to_json();
    let list = Event::new("GET", "/api/recordings", "/api/recordings".into())
        .signed_in(token)
        .to_json();
    let mut job = Event::new(
        "GET",
        "/api/transcriptions/{id}",
        format!("/api/transcriptions/{}", seeded.transcription_id),
    )
    .signed_in(token);
    job.path_parameters = Some(json!({ "id": seeded.transcription_id }));
    let mut webhook = Event::new(
        "POST",
        "/webhooks/assemblyai",
        "/webhooks/assemblyai".into(),
    );
    webhook.query = Some(("transcription_id", seeded.transcription_id.clone()));
    webhook.headers = vec![
        ("content-type", "application/json".into()),
        ("user-agent", "AssemblyAI-Webhook".into()),
        ("x-parley-webhook-secret", seeded.webhook_secret.clone()),
    ];
    webhook.body =
        Some(r#"{"transcript_id":"bench-transcript-0001","status":"completed"}"#.to_owned());
    vec![
        Target {
            name: FLOOR,
            path: "hello world: parses the `me` event as JSON, answers a constant",
            event: me.clone(),
            expected_status: 200,
            fresh: None,
        },
        Target {
            name: "me",
            path: "`GET /api/me`: session cookie → the session statement → the user",
            event: me,
            expected_status: 200,
            fresh: None,
        },
        Target {
            name: "recordings-list",
            path: "`GET /api/recordings`: session, then a page of 20 of 25 recordings with a signed cursor",
            event: list,
            expected_status: 200,
            fresh: None,
        },
        Target {
            name: "transcriptions-get",
            path: "`GET /api/transcriptions/{id}`: session, then a completed job with its words",
            event: job.to_json(),
            expected_status: 200,
            fresh: None,
        },
        Target {
            name: "assemblyai-webhook",
            path: "`POST /webhooks/assemblyai` for a completed job: secret lookup, constant-time check, \
                   answered as already final (the path that sends nothing to SQS)",
            event: webhook.to_json(),
            expected_status: 200,
            fresh: None,
        },
        Target {
            name: "telnyx-webhook",
            path: "`POST /webhooks/telnyx`, a new signed event each time: Ed25519 check, one INSERT, \
                   one SQS SendMessage (to moto_server)",
            event: telnyx_event(0),
            expected_status: 200,
            fresh: Some(telnyx_event),
        },
    ]
}

/// What Lambda and template.yaml give a function, with local stand-ins for AWS and the vendors.
/// Nothing here is contacted on the measured paths: R2 and SQS point at a closed port, so a path
/// that did call them would fail the bench instead of timing a stand-in.
pub fn function_env(name: &str, database_url: &str, sqs: Option<&Sqs>) -> Vec<(String, String)> {
    let date = time::OffsetDateTime::now_utc().date();
    let stream = format!(
        "{:04}/{:02}/{:02}/[$LATEST]{}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        uuid::Uuid::new_v4().simple()
    );
    let closed = "http://127.0.0.1:9";
    [
        // Lambda's own.
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("_HANDLER", "bootstrap"),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        // template.yaml's Globals.Function.MemorySize.
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", &stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret-access-key"),
        ("AWS_SESSION_TOKEN", "bench-session-token"),
        // Parley's (see shared's config).
        ("PARLEY_STAGE", "local"),
        ("DATABASE_URL", database_url),
        ("AUTH_SECRET", AUTH_SECRET),
        ("CORS_ORIGINS", "http://localhost:3000"),
        ("RATE_LIMIT_PAID", RATE_LIMIT),
        ("RATE_LIMIT_TOKEN", RATE_LIMIT),
        ("RATE_LIMIT_WRITE", RATE_LIMIT),
        ("RATE_LIMIT_READ", RATE_LIMIT),
        ("R2_ENDPOINT", closed),
        ("R2_BUCKET_NAME", "parley-bench"),
        ("R2_ACCESS_KEY_ID", "parley-bench"),
        ("R2_SECRET_ACCESS_KEY", "parley-bench-secret"),
        (
            "TRANSCRIPTION_QUEUE_URL",
            &format!("{closed}/123456789012/parley-transcriptions"),
        ),
        (
            "TTS_QUEUE_URL",
            &format!("{closed}/123456789012/parley-tts"),
        ),
        ("ASSEMBLYAI_API_KEY", "bench-assemblyai-key"),
        ("ASSEMBLYAI_BASE_URL", closed),
        ("ELEVENLABS_BASE_URL", closed),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(sqs.into_iter().flat_map(|sqs| {
        // The receivers enqueue on the measured path: a real SQS API (moto_server) answers.
        [
            ("CALL_QUEUE_URL".to_owned(), sqs.call_queue_url.clone()),
            ("AWS_ENDPOINT_URL_SQS".to_owned(), sqs.endpoint.clone()),
            ("TELNYX_PUBLIC_KEY".to_owned(), telnyx_public_key()),
        ]
    }))
    .collect()
}

/// moto_server's SQS and the call queue on it.
pub struct Sqs {
    pub endpoint: String,
    pub call_queue_url: String,
}
