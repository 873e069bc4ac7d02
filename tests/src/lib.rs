//! Test support: fresh migrated PostgreSQL databases, real API Gateway v2 events, Auth.js sessions
//! made by the real adapter, and the real binaries under `cargo lambda watch` behind the local API
//! Gateway (xtask's proxy).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lambda_http::Request;
use serde_json::{Value, json};
use shared::api::settings::Settings;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The server tests create databases on; `cargo xtask test` sets it.
pub fn admin_url() -> String {
    std::env::var("PARLEY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database for one test, migrated, dropped when the test ends: by [`TestDb::drop_db`], or
/// when the value is dropped (a test that panicked or returned early leaves nothing behind).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub client: tokio_postgres::Client,
    dropped: bool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin = connect(&admin_url()).await;
        // The pid lets `cargo xtask test` sweep only databases whose test process is gone, so runs in
        // several checkouts can share one server.
        let name = format!(
            "parley_t_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let url = format!(
            "{}/{name}",
            admin_url().rsplit_once('/').expect("URL has a path").0
        );
        let mut client = connect(&url).await;
        shared::platform::db::migrations::run(&mut client)
            .await
            .expect("migrations apply");
        TestDb {
            name,
            url,
            client,
            dropped: false,
        }
    }

    /// Settings as a function would load them, pointed at this database.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        settings_with(&self.url, extra)
    }

    pub async fn drop_db(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }

    /// Inserts a user and a session expiring `expires_in_secs` from now (negative: already expired).
    pub async fn session(&self, email: &str, expires_in_secs: i64) -> (i32, String) {
        let user: i32 = self
            .client
            .query_one(
                r#"INSERT INTO users (name, email, "emailVerified", image) VALUES ('Test User', $1, now(), 'https://example.com/a.png') RETURNING id"#,
                &[&email],
            )
            .await
            .unwrap()
            .get(0);
        let token = uuid::Uuid::new_v4().to_string();
        self.client
            .execute(
                r#"INSERT INTO sessions ("userId", expires, "sessionToken") VALUES ($1, now() + make_interval(secs => $2::float8), $3)"#,
                &[&user, &(expires_in_secs as f64), &token],
            )
            .await
            .unwrap();
        (user, token)
    }

    pub async fn session_count(&self, token: &str) -> i64 {
        self.client
            .query_one(
                r#"SELECT count(*) FROM sessions WHERE "sessionToken" = $1"#,
                &[&token],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A meter's (used, reserved) over every period of the user whose session `token` is.
    pub async fn usage(&self, token: &str, meter: &str) -> (i64, i64) {
        let row = self
            .client
            .query_one(
                r#"SELECT coalesce(sum(c.used), 0)::bigint, coalesce(sum(c.reserved), 0)::bigint
                     FROM sessions s LEFT JOIN usage_counters c ON c.user_id = s."userId" AND c.meter = $2
                    WHERE s."sessionToken" = $1"#,
                &[&token, &meter],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Seconds from now until the session expires.
    pub async fn seconds_left(&self, token: &str) -> f64 {
        self.client
            .query_one(
                r#"SELECT extract(epoch FROM expires - now())::float8 FROM sessions WHERE "sessionToken" = $1"#,
                &[&token],
            )
            .await
            .unwrap()
            .get(0)
    }
}

pub fn settings_with(database_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> =
        HashMap::from([("DATABASE_URL".to_owned(), database_url.to_owned())]);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings are valid")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let config = shared::platform::settings::parse_database_url(url).expect("test URL parses");
    shared::platform::db::connect(&config)
        .await
        .expect("test database connects")
}

async fn drop_database(name: &str) {
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop test database");
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        // Drop cannot await, and the test's own runtime may be the one unwinding: use a thread.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the drop")
                .block_on(drop_database(&name));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop test database {}", self.name);
        }
    }
}

/// A URL nothing listens on: the "database is down" case.
pub fn dead_database_url() -> String {
    let port = free_port();
    format!("postgres://postgres:not-a-real-password@127.0.0.1:{port}/parley")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto_server on a free loopback port: the S3 (and SQS) stand-in. Stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new(workspace_root().join(".venv/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (cargo xtask installs it into .venv)");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/moto-api/", moto.endpoint))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        moto
    }

    /// R2 settings for a fresh bucket on this moto, as environment variables.
    pub async fn bucket_env(&self) -> Vec<(&'static str, String)> {
        let bucket = format!(
            "parley-t-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let env = vec![
            ("R2_ENDPOINT", self.endpoint.clone()),
            ("R2_BUCKET_NAME", bucket),
            ("R2_ACCESS_KEY_ID", "parley-test".to_owned()),
            ("R2_SECRET_ACCESS_KEY", "parley-test-secret".to_owned()),
        ];
        let settings = settings_with("postgres://unused@127.0.0.1/x", &borrow(&env));
        shared::platform::storage::Storage::new(settings.storage.as_ref().unwrap())
            .ensure_bucket()
            .await
            .expect("bucket created");
        env
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An API Gateway HTTP API (payload format 2.0) event, shaped exactly as AWS sends it.
pub struct Event {
    method: &'static str,
    path: String,
    headers: serde_json::Map<String, Value>,
    cookies: Vec<String>,
    body: Option<String>,
    base64: bool,
    path_params: serde_json::Map<String, Value>,
    query: String,
}

impl Event {
    pub fn new(method: &'static str, path: &str) -> Event {
        Event {
            method,
            path: path.to_owned(),
            headers: serde_json::Map::new(),
            cookies: Vec::new(),
            body: None,
            base64: false,
            path_params: serde_json::Map::new(),
            query: String::new(),
        }
    }

    /// Path parameters as API Gateway fills them from the route's `{name}` segments.
    pub fn path_param(mut self, name: &str, value: &str) -> Event {
        self.path_params
            .insert(name.to_owned(), Value::String(value.to_owned()));
        self
    }

    pub fn query(mut self, raw: &str) -> Event {
        self.query = raw.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Event {
        self.headers
            .insert(name.to_ascii_lowercase(), Value::String(value.to_owned()));
        self
    }

    /// API Gateway moves `Cookie` headers into the `cookies` array.
    pub fn cookie(mut self, pair: &str) -> Event {
        self.cookies.push(pair.to_owned());
        self
    }

    pub fn body(mut self, body: &str) -> Event {
        self.body = Some(body.to_owned());
        self
    }

    pub fn base64_body(mut self, bytes: &[u8]) -> Event {
        use base64::Engine;
        self.body = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        self.base64 = true;
        self
    }

    pub fn to_json(&self) -> Value {
        let mut headers = self.headers.clone();
        headers
            .entry("host")
            .or_insert(json!("abc123.execute-api.us-east-1.amazonaws.com"));
        headers.entry("user-agent").or_insert(json!("parley-tests"));
        headers.entry("x-forwarded-proto").or_insert(json!("https"));
        let mut event = json!({
            "version": "2.0",
            "routeKey": format!("{} {}", self.method, self.path),
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7",
                    "userAgent": "parley-tests"
                },
                "requestId": format!("req-{}", uuid::Uuid::new_v4().simple()),
                "routeKey": format!("{} {}", self.method, self.path),
                "stage": "$default",
                "time": "22/Nov/2026:03:00:00 +0000",
                "timeEpoch": 1795316400000u64
            },
            "isBase64Encoded": self.base64
        });
        if !self.path_params.is_empty() {
            event["pathParameters"] = Value::Object(self.path_params.clone());
        }
        if !self.query.is_empty() {
            let mut params = serde_json::Map::new();
            for pair in self.query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                params.insert(k.to_owned(), json!(v));
            }
            event["queryStringParameters"] = Value::Object(params);
        }
        if !self.cookies.is_empty() {
            event["cookies"] = json!(self.cookies);
        }
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        event
    }

    /// Parsed by lambda_http exactly as the runtime parses the real event.
    pub fn request(&self) -> Request {
        lambda_http::request::from_str(&self.to_json().to_string())
            .expect("a valid API Gateway v2 event")
    }
}

/// The parts of a response tests look at.
pub struct Answer {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn from_response(response: lambda_http::Response<lambda_http::Body>) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes: &[u8] = response.body().as_ref();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes).expect("JSON body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of the given status and slug.
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status);
        assert_eq!(
            self.body["type"],
            format!("tag:parley.dev,2026:problem:{slug}")
        );
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.body
        );
    }
}

/// Runs the Auth.js interop script (the real @auth/pg-adapter) and returns its JSON line.
pub fn authjs(database_url: &str, args: &[&str]) -> Value {
    let script = workspace_root().join("tests/authjs-interop/authjs.mjs");
    let output = Command::new("node")
        .arg(script)
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("node runs (cargo xtask test installs the npm packages)");
    assert!(
        output.status.success(),
        "authjs.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("authjs.mjs prints one JSON line")
}

/// The real function binaries under `cargo lambda watch`, behind the proxy that plays API Gateway
/// in `cargo xtask dev` (xtask::api): requests take the same path as on the dev stack. Stopped,
/// with every function process, on drop.
pub struct Api {
    api: xtask::api::LocalApi,
    /// Where clients call.
    pub base: String,
    /// watch's Lambda invoke API, for the queue pump.
    pub invoke_base: String,
}

impl Api {
    /// Uploads `bytes` as a WAV recording through the API (presigned PUT to the bucket included)
    /// and completes it, with the session `cookie` (`name=token`); returns the recording's id.
    pub async fn ready_recording(
        &self,
        http: &reqwest::Client,
        cookie: &str,
        bytes: &[u8],
    ) -> String {
        let created: Value = http
            .post(self.url("/api/recordings/uploads"))
            .header("cookie", cookie)
            .header("origin", "http://localhost:3000")
            .json(&json!({"content_type": "audio/wav", "size_bytes": bytes.len(), "file_name": "test.wav"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let upload = &created["upload"];
        let mut put = http.put(upload["url"].as_str().unwrap());
        for (name, value) in upload["headers"].as_object().unwrap() {
            put = put.header(name.as_str(), value.as_str().unwrap());
        }
        let stored = put.body(bytes.to_vec()).send().await.unwrap();
        assert!(
            stored.status().is_success(),
            "PUT to the bucket: {}",
            stored.status()
        );
        let id = created["recording"]["id"].as_str().unwrap().to_owned();
        let done = http
            .post(self.url(&format!("/api/recordings/{id}/complete")))
            .header("cookie", cookie)
            .header("origin", "http://localhost:3000")
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
        id
    }

    pub async fn start(env: &[(&str, &str)]) -> Api {
        Api::start_on(0, env).await
    }

    /// On a chosen port (0: any), for functions that must know their own URL (`BACKEND_URL`).
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> Api {
        Api::start_with(port, env, None).await
    }

    /// With every warm function's timeout overridden, as `PARLEY_INVOKE_TIMEOUT_SECONDS` does.
    pub async fn start_with(
        port: u16,
        env: &[(&str, &str)],
        invoke_timeout: Option<Duration>,
    ) -> Api {
        let cargo_lambda = std::env::var("PARLEY_CARGO_LAMBDA")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".venv/bin/cargo-lambda"));
        assert!(
            cargo_lambda.exists(),
            "cargo-lambda not found at {} (run via cargo xtask test)",
            cargo_lambda.display()
        );
        let cors_origins = env
            .iter()
            .find(|(k, _)| *k == "CORS_ORIGINS")
            .map(|(_, v)| v.to_string());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut api = xtask::api::LocalApi::start(xtask::api::ApiOptions {
            root: workspace_root(),
            cargo_lambda,
            addr: ([127, 0, 0, 1], port).into(),
            watch_port: 0,
            env,
            cors_origins,
            invoke_timeout,
            supervisor: None,
            verbose: false,
            // The binaries are built already (cargo xtask test builds them first).
            ignore_changes: true,
        })
        .await
        .expect("the local API starts");
        api.wait_for_health(&[200, 503], Duration::from_secs(300))
            .await
            .expect("the local API serves /health");
        Api {
            base: api.base.clone(),
            invoke_base: api.invoke_base.clone(),
            api,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the proxy read from template.yaml.
    pub fn template(&self) -> &xtask::template::Template {
        &self.api.template
    }
}

/// `Authorization` for a session token, as the API's bearer scheme takes it.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Lambda events in the shapes AWS sends, typed, for handlers under test.
pub mod events {
    use aws_lambda_events::event::sqs::SqsEvent;
    use serde_json::json;

    /// One SQS record delivering `body` for the `receive_count`th time from `queue_arn`.
    pub fn sqs_delivery(body: &str, receive_count: u32, queue_arn: &str) -> SqsEvent {
        serde_json::from_value(json!({"Records": [{
            "messageId": uuid::Uuid::new_v4().to_string(),
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": receive_count.to_string(),
                "SentTimestamp": "1795316400000",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1795316400001"
            },
            "messageAttributes": {},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": shared::local::REGION
        }]}))
        .expect("an SQS event in AWS's shape")
    }

    /// An EventBridge `Schedule` invocation, as a scheduled function receives it.
    pub fn scheduled() -> lambda_runtime::LambdaEvent<serde_json::Value> {
        lambda_runtime::LambdaEvent::new(
            shared::local::scheduled_event(),
            lambda_runtime::Context::default(),
        )
    }
}

/// Everything a handler or worker test runs against, built one way for every test file: a fresh
/// database, moto (its bucket as R2, and a queue when asked), a wiremock server standing in for a
/// vendor when asked, and the `App` a function would build from that environment.
pub struct TestStack {
    pub db: TestDb,
    pub app: shared::App,
    pub sqs: aws_sdk_sqs::Client,
    /// The queue the stack was built with (see [`TestStackBuilder::queue`]).
    pub queue: Option<shared::local::Route>,
    /// The vendor stand-in (see [`TestStackBuilder::vendor`]); assert on the requests it receives.
    pub vendor: wiremock::MockServer,
    pub bucket: String,
    pub moto: Moto,
}

pub struct TestStackBuilder {
    function: &'static str,
    queue: Option<(&'static str, &'static str, &'static str)>,
    vendor_urls: Vec<&'static str>,
    env: Vec<(&'static str, String)>,
}

impl TestStack {
    /// A stack for `function` (the name its log lines carry).
    pub fn builder(function: &'static str) -> TestStackBuilder {
        TestStackBuilder {
            function,
            queue: None,
            vendor_urls: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl TestStackBuilder {
    /// A fresh moto queue (with its DLQ) fed to `worker`, its URL given in `variable`.
    pub fn queue(
        mut self,
        prefix: &'static str,
        worker: &'static str,
        variable: &'static str,
    ) -> Self {
        self.queue = Some((prefix, worker, variable));
        self
    }

    /// Points each of these base-URL variables at the wiremock vendor.
    pub fn vendor(mut self, base_url_variables: &[&'static str]) -> Self {
        self.vendor_urls.extend_from_slice(base_url_variables);
        self
    }

    pub fn env(mut self, pairs: &[(&'static str, &str)]) -> Self {
        self.env
            .extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self
    }

    pub async fn build(self) -> TestStack {
        let moto = Moto::start().await;
        let vendor = wiremock::MockServer::start().await;
        let sqs = shared::local::sqs_client(&moto.endpoint);
        let db = TestDb::create().await;
        let mut env = moto.bucket_env().await;
        let bucket = env
            .iter()
            .find(|(k, _)| *k == "R2_BUCKET_NAME")
            .expect("moto's bucket")
            .1
            .clone();
        let queue = match self.queue {
            Some((prefix, worker, variable)) => {
                let name = format!(
                    "{prefix}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..10]
                );
                let route = shared::local::ensure_queue(&sqs, &name, worker, 1, 5)
                    .await
                    .expect("queue created");
                env.push((variable, route.queue_url.clone()));
                Some(route)
            }
            None => None,
        };
        for variable in self.vendor_urls {
            env.push((variable, vendor.uri()));
        }
        env.extend(self.env);
        let app = shared::App::from_settings(self.function, db.settings(&borrow(&env)));
        TestStack {
            db,
            app,
            sqs,
            queue,
            vendor,
            bucket,
            moto,
        }
    }
}
