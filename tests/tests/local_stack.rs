//! The local stack as a developer runs it: `cargo xtask dev` (the real command, through `cargo
//! run`) and the API Gateway proxy in front of the real binaries under `cargo lambda watch`.
//! It answers like API Gateway, stays up when idle, and stops completely.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parley_tests::{Api, TestDb, free_port, workspace_root};
use serde_json::Value;
use xtask::process::{alive, descendants};
use xtask::template::Template;

/// `cargo xtask dev` in its own process, on ports of its own.
struct Dev {
    child: Child,
    base: String,
    ports: Vec<u16>,
    log: PathBuf,
}

#[derive(Clone, Copy)]
struct Ports {
    api: u16,
    moto: u16,
    sandbox: u16,
    watch: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            api: free_port(),
            moto: free_port(),
            sandbox: free_port(),
            watch: free_port(),
        }
    }
}

impl Dev {
    /// Starts `cargo xtask dev` and waits until `/health` answers 200 through the proxy.
    async fn start(database_url: &str, ports: Ports, extra: &[(&str, &str)]) -> Dev {
        let root = workspace_root();
        let log = root.join(format!(
            "target/tmp/xtask-dev-{}-{}.log",
            std::process::id(),
            ports.api
        ));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let bin = root.join(".venv/bin");
        let path = std::env::join_paths(
            std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let child = Command::new("cargo")
            .current_dir(&root)
            .args(["xtask", "dev"])
            .env("DATABASE_URL", database_url)
            .env("PARLEY_DEV_PORT", ports.api.to_string())
            .env("PARLEY_MOTO_PORT", ports.moto.to_string())
            .env("PARLEY_SANDBOX_PORT", ports.sandbox.to_string())
            .env("PARLEY_WATCH_PORT", ports.watch.to_string())
            .envs(extra.iter().copied())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cargo xtask dev starts");
        let mut dev = Dev {
            child,
            base: format!("http://127.0.0.1:{}", ports.api),
            ports: vec![ports.api, ports.moto, ports.sandbox, ports.watch],
            log,
        };
        let http = reqwest::Client::new();
        // The first start may build xtask and the health function.
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if let Ok(r) = http.get(dev.url("/health")).send().await
                && r.status() == 200
            {
                break;
            }
            if let Ok(Some(status)) = dev.child.try_wait() {
                panic!("cargo xtask dev exited ({status}):\n{}", dev.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "cargo xtask dev did not get ready:\n{}",
                dev.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        dev
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits for xtask to exit; its status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cargo xtask dev did not exit:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let tree = descendants(self.pid());
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid().to_string()])
                .status();
            for pid in tree {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = self.child.wait();
        }
    }
}

/// Waits until none of `pids` runs; the ones still running after `within`.
fn survivors(pids: &[u32], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left
                .iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn taken(ports: &[u16]) -> Vec<u16> {
    ports
        .iter()
        .copied()
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect()
}

/// The process tree under `cargo xtask dev`, with a function process started by a request.
async fn tree_with_functions(dev: &Dev) -> Vec<u32> {
    let me = reqwest::get(dev.url("/api/me")).await.unwrap();
    assert_eq!(me.status(), 401);
    let tree = descendants(dev.pid());
    // xtask, two supervisors, moto, watch, and the health and me processes at least.
    assert!(tree.len() >= 6, "{tree:?}");
    tree
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sigint_and_sighup_stop_everything_and_free_the_ports() {
    let db = TestDb::create().await;
    // The same ports every time: each start proves the last stop freed them.
    let ports = Ports::free();
    for signal in ["TERM", "INT", "HUP"] {
        let mut dev = Dev::start(&db.url, ports, &[]).await;
        let tree = tree_with_functions(&dev).await;
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &dev.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = dev.wait_exit(Duration::from_secs(60));
        assert!(
            status.success(),
            "SIG{signal}: {status}\n{}",
            dev.log_tail()
        );
        let left = survivors(&tree, Duration::from_secs(5));
        assert!(left.is_empty(), "SIG{signal} left running: {left:?}");
        assert_eq!(taken(&dev.ports), Vec::<u16>::new(), "SIG{signal}");
        assert!(dev.log_tail().contains("stopped"), "{}", dev.log_tail());
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_xtask_leaves_no_process_behind() {
    let db = TestDb::create().await;
    let mut dev = Dev::start(&db.url, Ports::free(), &[]).await;
    let tree = tree_with_functions(&dev).await;
    Command::new("kill")
        .args(["-KILL", &dev.pid().to_string()])
        .status()
        .unwrap();
    dev.wait_exit(Duration::from_secs(10));
    // The supervisors get SIGTERM from the kernel and end their subtrees within their grace period.
    let left = survivors(&tree, Duration::from_secs(15));
    assert!(left.is_empty(), "left running: {left:?}");
    assert_eq!(taken(&dev.ports), Vec::<u16>::new());
    db.drop_db().await;
}

/// A request to every route in the template, with made-up ids and no credentials.
async fn every_route(
    http: &reqwest::Client,
    dev: &Dev,
    template: &Template,
    timeout: Duration,
) -> Vec<String> {
    let mut slow_or_failed = Vec::new();
    for route in &template.routes {
        let path = route
            .path
            .replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let started = Instant::now();
        let answer = http
            .request(method, dev.url(&path))
            .timeout(timeout)
            .send()
            .await;
        let took = started.elapsed();
        match answer {
            Ok(r) if r.status().as_u16() < 500 && r.status() != 408 => {
                if took > Duration::from_secs(2) {
                    slow_or_failed.push(format!("{} took {took:?}", route.key()));
                }
            }
            Ok(r) => slow_or_failed.push(format!("{}: {} after {took:?}", route.key(), r.status())),
            Err(e) => slow_or_failed.push(format!("{}: {e:?} after {took:?}", route.key())),
        }
    }
    slow_or_failed
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_at_once_after_idling_past_the_invoke_timeout() {
    let db = TestDb::create().await;
    // Idle three times longer than a warm function may take; watch used to end every function's
    // wait for its next event at this timeout, killing it.
    let dev = Dev::start(
        &db.url,
        Ports::free(),
        &[("PARLEY_INVOKE_TIMEOUT_SECONDS", "3")],
    )
    .await;
    let template = Template::load(
        &workspace_root().join("template.yaml"),
        &BTreeMap::from([("CorsOrigins".to_owned(), "http://localhost:3000".to_owned())]),
    )
    .unwrap();
    let http = reqwest::Client::new();
    // The first round starts every function (and may build one); only its answers are checked.
    let first: Vec<String> = every_route(&http, &dev, &template, Duration::from_secs(900))
        .await
        .into_iter()
        .filter(|p| !p.contains(" took "))
        .collect();
    assert!(first.is_empty(), "{first:?}\n{}", dev.log_tail());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_idle = every_route(&http, &dev, &template, Duration::from_secs(30)).await;
    assert!(
        after_idle.is_empty(),
        "after 10 s idle: {after_idle:?}\n{}",
        dev.log_tail()
    );
    assert!(
        !dev.log_tail()
            .contains("missing lambda-runtime-aws-request-id"),
        "{}",
        dev.log_tail()
    );
    drop(dev);
    db.drop_db().await;
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn assert_not_found(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 404, "{what}");
    assert_eq!(
        header(&response, "content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], xtask::proxy::NOT_FOUND_TYPE, "{what}");
    assert_eq!(body["title"], "Not Found", "{what}");
    assert_eq!(body["status"], 404, "{what}");
}

#[tokio::test]
async fn unknown_routes_get_problem_json_404_and_watch_stays_internal() {
    let db = TestDb::create().await;
    let api = Api::start(&[("DATABASE_URL", db.url.as_str())]).await;
    let http = reqwest::Client::new();

    assert_not_found(
        http.get(api.url("/nope")).send().await.unwrap(),
        "unknown path",
    )
    .await;
    assert_not_found(
        http.put(api.url("/api/me")).send().await.unwrap(),
        "a method the path does not declare",
    )
    .await;
    // watch's own routes (function URLs, the invoke API) are not reachable through the proxy.
    assert_not_found(
        http.get(api.url("/lambda-url/recordings-sweeper"))
            .send()
            .await
            .unwrap(),
        "watch's function URL",
    )
    .await;
    assert_not_found(
        http.post(api.url("/2015-03-31/functions/recordings-sweeper/invocations"))
            .body("{}")
            .send()
            .await
            .unwrap(),
        "watch's invoke API",
    )
    .await;
    assert_ne!(
        api.invoke_base, api.base,
        "watch listens apart from the API"
    );
    drop(api);
    db.drop_db().await;
}

#[tokio::test]
async fn preflight_is_answered_as_cors_configuration_would_without_a_function() {
    let db = TestDb::create().await;
    let api = Api::start(&[
        ("DATABASE_URL", db.url.as_str()),
        ("CORS_ORIGINS", "https://app.example.com"),
    ])
    .await;
    let cors = api.template().cors.clone().expect("CorsConfiguration");
    let http = reqwest::Client::new();
    let preflight = |origin: &str| {
        http.request(
            reqwest::Method::OPTIONS,
            api.url(&format!("/api/recordings/{}", uuid::Uuid::new_v4())),
        )
        .header("origin", origin)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization")
        .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-methods"),
        Some(cors.allow_methods.join(",").as_str())
    );
    assert_eq!(
        header(&allowed, "access-control-allow-headers"),
        Some(cors.allow_headers.join(",").as_str())
    );
    assert_eq!(header(&allowed, "access-control-max-age"), Some("600"));
    // No function answered: every function response carries the shared security headers.
    assert_eq!(header(&allowed, "x-content-type-options"), None);

    // Any other origin: API Gateway answers, but without CORS headers, so the browser refuses.
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(refused.status(), 204);
    assert!(
        !refused
            .headers()
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "{:?}",
        refused.headers()
    );

    // On real requests the proxy sets the CORS headers, for allowed origins only.
    let me = http
        .get(api.url("/api/me"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    assert_eq!(
        header(&me, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(header(&me, "x-content-type-options"), Some("nosniff"));
    let other = http
        .get(api.url("/api/me"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    drop(api);
    db.drop_db().await;
}
