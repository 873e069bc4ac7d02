//! Dev and test orchestration for Parley: `cargo xtask <dev|test|lint|migrate|session>`.
//!
//! Everything a fresh machine lacks is brought here: the project-local Python venv (cargo-lambda,
//! moto, cfn-lint), the interop test's npm packages, and PostgreSQL when none answers.

mod bench;
mod postgres;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use postgres::Postgres;

const USAGE: &str = "\
usage: cargo xtask <command>

  dev                     run the whole API on http://127.0.0.1:9000 (PostgreSQL, migrations, cargo lambda watch)
  test [-- <filter>...]   run every test (unit, integration, handler, end-to-end, Auth.js interop)
  lint                    cargo fmt --check, clippy -D warnings, cfn-lint template.yaml
  migrate                 apply migrations/ to $DATABASE_URL (or the local dev database)
  session EMAIL [--name NAME]
                          create a local user and Auth.js session and print its cookie
  bench [--cold N] [--warm N] [--only a,b]
                          time functions' release binaries under a Lambda Runtime API emulator
                          against a hello-world floor and pgbench; writes docs/benchmarks.md
";

/// Queues the local stack creates: (name, worker function, variable that carries its URL, batch
/// size), as template.yaml declares them.
const QUEUES: &[(&str, &str, &str, i32)] = &[
    (
        "parley-transcriptions",
        "transcription-worker",
        "TRANSCRIPTION_QUEUE_URL",
        5,
    ),
    ("parley-tts", "tts-worker", "TTS_QUEUE_URL", 1),
];

/// Scheduled functions the pump invokes every minute (EventBridge's job in AWS).
const SCHEDULED: &[&str] = &[
    "transcription-reconciler",
    "tts-reconciler",
    "recordings-sweeper",
];

/// The local dev database's name on a shared server.
const DEV_DATABASE: &str = "parley_dev";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("dev") => runtime.block_on(dev()),
        Some("test") => runtime.block_on(test(&args[1..])),
        Some("lint") => lint(),
        Some("migrate") => runtime.block_on(migrate_command()),
        Some("session") => runtime.block_on(session(&args[1..])),
        Some("bench") => runtime.block_on(bench::bench(&args[1..])),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

pub type Result<T = ()> = std::result::Result<T, String>;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `.env` in the workspace root, as KEY=VALUE lines; the process environment wins over it.
fn dotenv(root: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(root.join(".env")) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.trim().trim_matches('"').trim_matches('\'').to_owned(),
            )
        })
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect()
}

async fn dev() -> Result {
    let root = workspace_root();
    let bin = tools::ensure_venv(&root)?;
    let dotenv = dotenv(&root);
    let from_dotenv = |name: &str| {
        dotenv
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    let mut pg = None;
    let database_url = match non_empty_env("DATABASE_URL").or_else(|| from_dotenv("DATABASE_URL")) {
        Some(url) => url,
        None => {
            let server = Postgres::find_or_start(&root).await?;
            let url = server.create_database_if_missing(DEV_DATABASE).await?;
            pg = Some(server);
            url
        }
    };
    let applied = postgres::migrate(&database_url).await?;
    println!(
        "migrations: {}",
        if applied.is_empty() {
            "up to date".to_owned()
        } else {
            applied.join(", ")
        }
    );

    // moto_server is the SQS stand-in, and R2's (S3 API) unless real R2 settings were given.
    let uses_real_r2 = ["R2_ENDPOINT", "R2_ACCOUNT_ID", "R2_BUCKET_NAME"]
        .iter()
        .any(|v| non_empty_env(v).is_some() || from_dotenv(v).is_some());
    let mut local_env: Vec<(&str, String)> = Vec::new();
    let moto_port = non_empty_env("PARLEY_MOTO_PORT").unwrap_or_else(|| "4510".to_owned());
    let moto_endpoint = format!("http://127.0.0.1:{moto_port}");
    // Stopped by `Group`'s Drop when dev returns, after watch (declared later, dropped first).
    let _moto = {
        let mut cmd = Command::new(bin.join("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &moto_port])
            .stdout(std::process::Stdio::null())
            // Its access log (the pump polls every second) would drown the functions' logs.
            .stderr(std::process::Stdio::null());
        tools::Group::spawn(cmd)?
    };
    tools::wait_for_http_ok(
        &format!("127.0.0.1:{moto_port}"),
        "/moto-api/",
        Duration::from_secs(60),
    )
    .await?;
    if !uses_real_r2 {
        let storage = shared::config::StorageSettings {
            endpoint: moto_endpoint.clone(),
            bucket: "parley-local".to_owned(),
            access_key_id: "parley-local".to_owned(),
            secret_access_key: "parley-local-secret".to_owned().into(),
        };
        shared::storage::Storage::new(&storage)
            .ensure_bucket()
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "R2 stand-in: moto_server on {} (bucket {})",
            storage.endpoint, storage.bucket
        );
        local_env.extend([
            ("R2_ENDPOINT", storage.endpoint),
            ("R2_BUCKET_NAME", storage.bucket),
            ("R2_ACCESS_KEY_ID", storage.access_key_id),
            ("R2_SECRET_ACCESS_KEY", "parley-local-secret".to_owned()),
        ]);
    }
    let port = non_empty_env("PARLEY_DEV_PORT").unwrap_or_else(|| "9000".to_owned());
    let base = format!("http://127.0.0.1:{port}");

    // Queues as the template declares them (with DLQs), and the pump that plays the event source.
    let sqs = shared::local::sqs_client(&moto_endpoint);
    let mut routes = Vec::new();
    for (queue, function, variable, batch_size) in QUEUES {
        let mut route = shared::local::ensure_queue(&sqs, queue, function, 30, 5).await?;
        route.batch_size = *batch_size;
        local_env.push((variable, route.queue_url.clone()));
        routes.push(route);
    }
    println!(
        "SQS stand-in: moto_server on {moto_endpoint} ({} queues + DLQs)",
        routes.len()
    );
    local_env.extend([
        ("AWS_REGION", shared::local::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "parley-local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "parley-local-secret".to_owned()),
        ("AWS_ENDPOINT_URL_SQS", moto_endpoint.clone()),
        ("BACKEND_URL", base.clone()),
        ("QUEUE_MAX_RECEIVE_COUNT", "5".to_owned()),
    ]);

    // Vendors without a key talk to the bundled sandbox; say so loudly.
    let sandbox_port: u16 = non_empty_env("PARLEY_SANDBOX_PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(9010);
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let (sandbox_env, keyless) = shared::local::sandbox_env(&sandbox_url, |name| {
        non_empty_env(name).or_else(|| from_dotenv(name))
    });
    if !keyless.is_empty() {
        shared::sandbox::start(
            ([127, 0, 0, 1], sandbox_port).into(),
            Duration::from_secs(1),
        )
        .await
        .map_err(|e| format!("sandbox on port {sandbox_port}: {e}"))?;
        println!(
            "\n==================== SANDBOX ====================\n\
             No key for: {}.\n\
             Those vendors are served by the offline sandbox at {sandbox_url}:\n\
             transcripts and speech are generated placeholders, not real results.\n\
             Set the keys (environment or .env) to use the real services.\n\
             =================================================\n",
            keyless.join(", "),
        );
        local_env.extend(sandbox_env);
    }

    let mut watch = Command::new(bin.join("cargo-lambda"));
    watch
        .current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--disable-cors",
            // How long watch holds an invoke open: the longest worker's template timeout. (The
            // deadline header it sends is its own; see shared::vendor::effective_deadline.)
            "--timeout",
            "120",
            "-A",
            "127.0.0.1",
            "-P",
            &port,
        ])
        .envs(dotenv.iter().cloned())
        .envs(local_env)
        .env("DATABASE_URL", &database_url)
        .env(
            "PARLEY_STAGE",
            non_empty_env("PARLEY_STAGE").unwrap_or_else(|| "local".to_owned()),
        )
        .env("PATH", tools::path_with(&bin));
    let mut watch = tools::Group::spawn(watch)?;

    let addr = format!("127.0.0.1:{port}");
    let ready = tokio::select! {
        r = tools::wait_for_http_ok(&addr, "/health", Duration::from_secs(600)) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    if let Err(e) = ready {
        watch.stop();
        if let Some(pg) = pg {
            pg.stop();
        }
        return Err(format!("the API did not become ready: {e}"));
    }
    tokio::spawn(shared::local::run(
        sqs,
        base.clone(),
        routes,
        SCHEDULED.iter().map(|f| f.to_string()).collect(),
        Duration::from_secs(60),
    ));
    println!(
        "\nParley is ready on {base}\n  GET  {base}/health\n  GET  {base}/api/me\n  POST {base}/api/auth/sign-out\n  POST {base}/api/recordings/uploads   (and /api/recordings…)\n\
           POST {base}/api/recordings/{{id}}/transcriptions\n  POST {base}/api/tts\n\
         Make a session with: cargo xtask session you@example.com\nCtrl-C stops everything.\n"
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\nstopping…"),
        status = watch.wait() => println!("cargo lambda watch exited: {status}"),
    }
    watch.stop();
    if let Some(pg) = pg {
        pg.stop();
    }
    Ok(())
}

async fn test(args: &[String]) -> Result {
    let root = workspace_root();
    let bin = tools::ensure_venv(&root)?;
    tools::ensure_npm(&root.join("tests/authjs-interop"))?;
    let pg = Postgres::find_or_start(&root).await?;
    pg.drop_test_databases().await?;

    // Build the binaries first so `cargo lambda watch` in the end-to-end tests starts them at once.
    let built = tools::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--workspace",
        "--bins",
    ]));
    let outcome = match built {
        Ok(()) => {
            let filter: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
            let mut cargo = Command::new("cargo");
            cargo
                .current_dir(&root)
                .args(["test", "--workspace", "--no-fail-fast", "--"])
                .args(filter)
                .env("PARLEY_TEST_PG_URL", pg.admin_url())
                .env("PARLEY_CARGO_LAMBDA", bin.join("cargo-lambda"))
                .env("PATH", tools::path_with(&bin));
            tools::run(&mut cargo)
        }
        Err(e) => Err(e),
    };
    let cleaned = pg.drop_test_databases().await;
    pg.stop();
    outcome.map_err(|e| format!("tests failed: {e}"))?;
    cleaned
}

fn lint() -> Result {
    let root = workspace_root();
    let bin = tools::ensure_venv(&root)?;
    tools::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    tools::run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    tools::run(
        Command::new(bin.join("cfn-lint"))
            .current_dir(&root)
            .arg("template.yaml"),
    )
}

/// The database `migrate` and `session` act on: `$DATABASE_URL`, else the local dev database.
async fn target_database() -> Result<(String, Option<Postgres>)> {
    if let Some(url) = non_empty_env("DATABASE_URL").or_else(|| non_empty_env("NEON_PG_CONN")) {
        return Ok((url, None));
    }
    let root = workspace_root();
    if let Some((_, url)) = dotenv(&root).into_iter().find(|(k, _)| k == "DATABASE_URL") {
        return Ok((url, None));
    }
    let server = Postgres::find_or_start(&root).await?;
    let url = server.create_database_if_missing(DEV_DATABASE).await?;
    Ok((url, Some(server)))
}

async fn migrate_command() -> Result {
    let (url, server) = target_database().await?;
    let applied = postgres::migrate(&url).await;
    if let Some(server) = server {
        server.stop();
    }
    let applied = applied?;
    if applied.is_empty() {
        println!("migrations: up to date");
    } else {
        println!("migrations applied: {}", applied.join(", "));
    }
    Ok(())
}

async fn session(args: &[String]) -> Result {
    let email = args
        .first()
        .filter(|e| e.contains('@') && !e.starts_with('-'))
        .ok_or("usage: cargo xtask session EMAIL [--name NAME]")?;
    let name = match args.get(1).map(String::as_str) {
        Some("--name") => Some(args.get(2).ok_or("--name needs a value")?.clone()),
        Some(other) => return Err(format!("unexpected argument {other:?}")),
        None => None,
    };
    let max_age: i64 = non_empty_env("SESSION_MAX_AGE_SECONDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30 * 24 * 3600);
    let (url, server) = target_database().await?;
    let created = postgres::create_session(&url, email, name.as_deref(), max_age).await;
    if let Some(server) = server {
        server.stop();
    }
    let (user_id, token, expires) = created?;
    let port = non_empty_env("PARLEY_DEV_PORT").unwrap_or_else(|| "9000".to_owned());
    println!("Session for {email} (user {user_id}), valid until {expires}.");
    println!("Cookie: authjs.session-token={token}\n");
    println!("  curl -s http://127.0.0.1:{port}/api/me -H 'Cookie: authjs.session-token={token}'");
    println!("  curl -s http://127.0.0.1:{port}/api/me -H 'Authorization: Bearer {token}'");
    println!(
        "  curl -si -X POST http://127.0.0.1:{port}/api/auth/sign-out -H 'Cookie: authjs.session-token={token}' -H 'Origin: http://localhost:3000'"
    );
    Ok(())
}
