//! Dev and test orchestration for Parley: `cargo xtask <dev|test|lint|migrate|session>`.
//!
//! Everything a fresh machine lacks is brought here: the project-local Python venv (cargo-lambda,
//! moto, cfn-lint), the interop test's npm packages, and PostgreSQL when none answers.

mod bench;
mod billing;
mod calls;
mod webhook;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use xtask::api::{ApiOptions, LocalApi};
use xtask::postgres::{self, Postgres};
use xtask::process::{self, Output, Stoppable};
use xtask::template::Template;
use xtask::{Result, tools, workspace_root};

const USAGE: &str = "\
usage: cargo xtask <command>

  dev                     run the whole API on http://127.0.0.1:9000 (PostgreSQL, migrations, moto,
                          cargo lambda watch behind a local API Gateway; see docs/local-stack.md)
  test [-- <filter>...]   run every test (unit, integration, handler, end-to-end, Auth.js interop)
  lint                    cargo fmt --check, clippy -D warnings, cfn-lint template.yaml
  migrate                 apply migrations/ to $DATABASE_URL (or the local dev database)
  session EMAIL [--name NAME]
                          create a local user and Auth.js session and print its cookie
  phone-number assign --provider telnyx|signalwire [--connection-id ID] [--number-sid SID] E164 EMAIL
                          assign a number to a user (against $DATABASE_URL or the dev database)
  call --provider telnyx|signalwire --to E164 [--from E164] [--seconds N]
                          play a whole inbound call through the running `cargo xtask dev` sandbox
  plan set NAME [--price price_…] [--transcription-seconds N] [--speech-characters N]
           [--translation-characters N] [--realtime-seconds N] [--call-minutes N] [--storage-bytes N]
                          create or change a plan (flags not given keep their value; a new plan
                          starts from free's), against $DATABASE_URL or the dev database
  usage EMAIL             a user's plan, period and every meter (used, reserved, limit)
  deletion status USER_ID show an account deletion: its tombstone, rows and objects' counts left,
                          vendor copies not yet confirmed ($DATABASE_URL or the local dev database)
  bench [--cold N] [--warm N] [--only a,b]
                          time functions' release binaries under a Lambda Runtime API emulator
                          against a hello-world floor and pgbench; writes docs/benchmarks.md
  webhook verify          judge captured webhook requests (JSON Lines on stdin) with the receivers'
                          own signature verifiers: prints valid / invalid: <reason> / error: <reason>
                          per line (see docs/webhooks.md)
  webhook replay EVENT-ID re-enqueue a stored webhook event through the same idempotent processing
                          (against $DATABASE_URL or the dev database)
";

/// The local dev database's name on a shared server.
const DEV_DATABASE: &str = "parley_dev";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Before the runtime starts any thread: the supervisor's signal mask must cover the process.
    if args.first().map(String::as_str) == Some(process::SUPERVISE) {
        return process::supervise(&args[1..]);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("dev") => runtime.block_on(dev()),
        Some("test") => runtime.block_on(test(&args[1..])),
        Some("lint") => lint(),
        Some("migrate") => runtime.block_on(migrate_command()),
        Some("session") => runtime.block_on(session(&args[1..])),
        Some("deletion") => runtime.block_on(deletion(&args[1..])),
        Some("bench") => runtime.block_on(bench::bench(&args[1..])),
        Some("phone-number") => runtime.block_on(with_database(|url| async move {
            calls::phone_number(&args[1..], &url).await
        })),
        Some("call") => runtime.block_on(calls::call(&args[1..])),
        Some("plan") => runtime.block_on(with_database(|url| async move {
            billing::plan(&args[1..], &url).await
        })),
        Some("usage") => runtime.block_on(with_database(|url| async move {
            billing::usage(&args[1..], &url).await
        })),
        Some("webhook") if args.get(1).map(String::as_str) == Some("replay") => {
            runtime.block_on(with_database(|url| async move {
                calls::replay(&args[2..], &url).await
            }))
        }
        Some("webhook") => webhook::webhook(&args[1..]),
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

/// SIGTERM, SIGINT (Ctrl-C) and SIGHUP all mean: stop everything and free the ports. `cargo
/// xtask` execs xtask in cargo's place (`cargo run` replaces its process on Unix), so a signal
/// to that pid reaches this process.
struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    fn listen() -> Result<StopSignals> {
        let listen = |kind: SignalKind| signal(kind).map_err(|e| format!("signal handler: {e}"));
        Ok(StopSignals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

fn port_setting(value: Option<String>, name: &str, default: u16) -> Result<u16> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a port number")),
    }
}

async fn dev() -> Result {
    // Orphans anywhere below (a function process whose watch died) re-parent to us, so stopping
    // can find them; each tool also runs under a supervisor that ends its subtree if we die.
    process::become_subreaper()?;
    let mut stop = StopSignals::listen()?;
    let supervisor = std::env::current_exe().ok();

    let root = workspace_root();
    let bin = tools::ensure_venv(&root)?;
    let dotenv = dotenv(&root);
    let setting = |name: &str| {
        non_empty_env(name).or_else(|| {
            dotenv
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    let port = port_setting(setting("PARLEY_DEV_PORT"), "PARLEY_DEV_PORT", 9000)?;
    let moto_port = port_setting(setting("PARLEY_MOTO_PORT"), "PARLEY_MOTO_PORT", 4510)?;
    let sandbox_port = port_setting(setting("PARLEY_SANDBOX_PORT"), "PARLEY_SANDBOX_PORT", 9010)?;
    // 0: any free port. watch's port is internal, so it is not printed.
    let watch_port = port_setting(setting("PARLEY_WATCH_PORT"), "PARLEY_WATCH_PORT", 0)?;
    let invoke_timeout = match setting("PARLEY_INVOKE_TIMEOUT_SECONDS") {
        None => None,
        Some(v) => Some(Duration::from_secs(v.trim().parse().map_err(|_| {
            format!("PARLEY_INVOKE_TIMEOUT_SECONDS={v:?} is not a number of seconds")
        })?)),
    };
    let schedule_override = match setting("PARLEY_SCHEDULE_SECONDS") {
        None => None,
        Some(v) => Some(Duration::from_secs(v.trim().parse().map_err(|_| {
            format!("PARLEY_SCHEDULE_SECONDS={v:?} is not a number of seconds")
        })?)),
    };
    let cors_origins = setting("CORS_ORIGINS");
    let template = Template::load(
        &root.join("template.yaml"),
        &BTreeMap::from([(
            "CorsOrigins".to_owned(),
            cors_origins
                .clone()
                .unwrap_or_else(|| xtask::api::local_cors_origins().join(",")),
        )]),
    )?;

    let mut pg = None;
    let database_url = match setting("DATABASE_URL") {
        Some(url) => url,
        None => {
            let server = Postgres::find_or_start(&root).await?;
            let url = server.create_database_if_missing(DEV_DATABASE).await?;
            pg = Some(server);
            url
        }
    };
    let outcome = serve(
        &mut stop,
        &root,
        &bin,
        &dotenv,
        &setting,
        Ports {
            api: port,
            moto: moto_port,
            sandbox: sandbox_port,
            watch: watch_port,
        },
        &template,
        &database_url,
        invoke_timeout,
        schedule_override,
        cors_origins,
        supervisor,
    )
    .await;
    if let Some(pg) = pg {
        pg.stop();
    }
    outcome
}

struct Ports {
    api: u16,
    moto: u16,
    sandbox: u16,
    watch: u16,
}

/// Everything after the database: runs until a stop signal, then stops what it started.
#[allow(clippy::too_many_arguments)]
async fn serve(
    stop: &mut StopSignals,
    root: &Path,
    bin: &Path,
    dotenv: &[(String, String)],
    setting: &dyn Fn(&str) -> Option<String>,
    ports: Ports,
    template: &Template,
    database_url: &str,
    invoke_timeout: Option<Duration>,
    schedule_override: Option<Duration>,
    cors_origins: Option<String>,
    supervisor: Option<std::path::PathBuf>,
) -> Result {
    let applied = postgres::migrate(database_url).await?;
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
        .any(|v| setting(v).is_some());
    let mut local_env: Vec<(String, String)> = Vec::new();
    let moto_endpoint = format!("http://127.0.0.1:{}", ports.moto);
    let mut moto = {
        let mut cmd = Command::new(bin.join("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &ports.moto.to_string()]);
        // Its access log (the pump polls every second) would drown the functions' logs.
        Stoppable::spawn("moto_server", cmd, supervisor.as_deref(), Output::Discard)?
    };
    let moto_addr = format!("127.0.0.1:{}", ports.moto);
    let moto_ready = tokio::select! {
        r = tools::wait_for_http_ok(
            &moto_addr,
            "/moto-api/",
            Duration::from_secs(60),
        ) => r.map_err(|e| match moto.exited() {
            Some(how) => format!("{how} (is port {} taken?)", ports.moto),
            None => e,
        }),
        s = stop.received() => Err(format!("{s} while starting")),
    };
    moto_ready?;
    if !uses_real_r2 {
        let storage = shared::platform::storage::StorageSettings {
            endpoint: moto_endpoint.clone(),
            bucket: "parley-local".to_owned(),
            access_key_id: "parley-local".to_owned(),
            secret_access_key: "parley-local-secret".to_owned().into(),
        };
        shared::platform::storage::Storage::new(&storage)
            .ensure_bucket()
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "R2 stand-in: moto_server on {} (bucket {})",
            storage.endpoint, storage.bucket
        );
        local_env.extend([
            ("R2_ENDPOINT".to_owned(), storage.endpoint),
            ("R2_BUCKET_NAME".to_owned(), storage.bucket),
            ("R2_ACCESS_KEY_ID".to_owned(), storage.access_key_id),
            (
                "R2_SECRET_ACCESS_KEY".to_owned(),
                "parley-local-secret".to_owned(),
            ),
        ]);
    }
    let base = format!("http://127.0.0.1:{}", ports.api);

    // Queues as the template declares them (with DLQs), and the pump that plays the event source.
    let sqs = shared::local::sqs_client(&moto_endpoint);
    let mut queue_routes = Vec::new();
    for source in &template.queues {
        // A short visibility timeout, so local retries come back quickly.
        let mut route = shared::local::ensure_queue(
            &sqs,
            &source.queue,
            &source.function,
            30,
            source.max_receive_count,
        )
        .await?;
        route.batch_size = source.batch_size;
        for variable in &source.url_variables {
            local_env.push((variable.clone(), route.queue_url.clone()));
        }
        queue_routes.push(route);
    }
    println!(
        "SQS stand-in: moto_server on {moto_endpoint} ({} queues + DLQs)",
        queue_routes.len()
    );
    let max_receive = template
        .queues
        .iter()
        .map(|q| q.max_receive_count)
        .max()
        .unwrap_or(5);
    local_env.extend([
        ("AWS_REGION".to_owned(), shared::local::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "parley-local".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            "parley-local-secret".to_owned(),
        ),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), moto_endpoint.clone()),
        // Callbacks (AssemblyAI's webhook) come in through the proxy, as through API Gateway;
        // a BACKEND_URL you set (a tunnel, for a real AssemblyAI key) wins.
        (
            "BACKEND_URL".to_owned(),
            setting("BACKEND_URL").unwrap_or_else(|| base.clone()),
        ),
        (
            "QUEUE_MAX_RECEIVE_COUNT".to_owned(),
            max_receive.to_string(),
        ),
        // Webhook signatures cover the URL the vendor called: the proxy's, over plain http.
        (
            "PUBLIC_BASE_URL".to_owned(),
            setting("PUBLIC_BASE_URL").unwrap_or_else(|| base.clone()),
        ),
    ]);

    // Vendors without a key talk to the bundled sandbox; say so loudly.
    let sandbox_url = format!("http://127.0.0.1:{}", ports.sandbox);
    let (sandbox_env, keyless) = shared::local::sandbox_env(&sandbox_url, setting);
    let mut running_sandbox = None;
    if !keyless.is_empty() {
        let running = shared::local::sandbox::start(
            ([127, 0, 0, 1], ports.sandbox).into(),
            Duration::from_secs(1),
        )
        .await
        .map_err(|e| format!("sandbox on port {}: {e}", ports.sandbox))?;
        running_sandbox = Some(running);
        println!(
            "\n==================== SANDBOX ====================\n\
             No key for: {}.\n\
             Those vendors are served by the offline sandbox at {sandbox_url}:\n\
             transcripts, speech and translations are generated placeholders, not real results;\n\
             a Stripe checkout URL \"pays\" when opened and no money moves.\n\
             Set the keys (environment or .env) to use the real services.\n\
             =================================================\n",
            keyless.join(", "),
        );
        local_env.extend(sandbox_env.into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    // With Stripe in the sandbox, a `pro` plan to buy (kept if you already made one).
    if setting("STRIPE_SECRET_KEY").is_none() {
        billing::seed_sandbox_plan(database_url).await?;
    }

    let mut env: Vec<(String, String)> = dotenv.to_vec();
    env.extend(local_env);
    env.push(("DATABASE_URL".to_owned(), database_url.to_owned()));
    env.push((
        "PARLEY_STAGE".to_owned(),
        setting("PARLEY_STAGE").unwrap_or_else(|| "local".to_owned()),
    ));
    let mut api = LocalApi::start(ApiOptions {
        root: root.to_path_buf(),
        cargo_lambda: bin.join("cargo-lambda"),
        addr: ([127, 0, 0, 1], ports.api).into(),
        watch_port: ports.watch,
        env,
        cors_origins,
        invoke_timeout,
        supervisor,
        verbose: true,
        ignore_changes: false,
    })
    .await?;
    let ready = tokio::select! {
        r = api.wait_for_health(&[200], Duration::from_secs(600)) => r,
        s = stop.received() => Err(format!("{s} while starting")),
    };
    if let Err(e) = ready {
        api.stop().await;
        moto.stop();
        return Err(format!("the API did not become ready: {e}"));
    }

    // Calls Parley dials now reach the sandbox's far end, `cargo xtask call` can play inbound
    // ones, and a paid sandbox checkout posts its events to the local /webhooks/stripe.
    if let Some(running) = &running_sandbox {
        running.attach(&base);
    }
    let pump = tokio::spawn(shared::local::run(
        sqs,
        api.invoke_base.clone(),
        queue_routes,
        // Schedules run below, each at its own template rate.
        Vec::new(),
        Duration::from_secs(3600),
    ));
    let schedules: Vec<_> = template
        .schedules
        .iter()
        .map(|s| {
            let function = s.function.clone();
            let every = schedule_override.unwrap_or(s.every);
            let invoke_base = api.invoke_base.clone();
            tokio::spawn(async move {
                let http = shared::platform::http_client::http_client(Duration::from_secs(900));
                loop {
                    tokio::time::sleep(every).await;
                    let event = shared::local::scheduled_event();
                    if let Err(e) =
                        shared::local::invoke(&http, &invoke_base, &function, &event).await
                    {
                        eprintln!("schedule: {function}: {e}");
                    }
                }
            })
        })
        .collect();

    println!("{}", banner(&base, template, schedule_override));
    let reason = loop {
        tokio::select! {
            s = stop.received() => break format!("{s} received"),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(how) = api.watch_exited().or_else(|| moto.exited()) {
                    break how;
                }
            }
        }
    };
    println!("\nstopping ({reason})…");
    pump.abort();
    schedules.iter().for_each(|s| s.abort());
    api.stop().await;
    moto.stop();
    println!("stopped");
    Ok(())
}

/// What the stack serves, from the template.
fn banner(base: &str, template: &Template, schedule_override: Option<Duration>) -> String {
    let mut text = format!("\nParley is ready on {base}\n");
    let mut routes: Vec<_> = template.routes.iter().collect();
    routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    for route in routes {
        text.push_str(&format!(
            "  {:<6} {base}{}  → {}\n",
            route.method, route.path, route.function
        ));
    }
    if template.cors.is_some() {
        text.push_str(
            "  OPTIONS (CORS preflight) is answered by the proxy, as CorsConfiguration does\n",
        );
    }
    text.push_str("Queues (the pump takes one batch at a time):\n");
    for q in &template.queues {
        text.push_str(&format!(
            "  {} → {} (batch {}{})\n",
            q.queue,
            q.function,
            q.batch_size,
            q.max_concurrency
                .map(|c| format!(", at most {c} at once in AWS"))
                .unwrap_or_default()
        ));
    }
    text.push_str("Schedules:\n");
    for s in &template.schedules {
        let every = match schedule_override {
            Some(d) => format!("every {}s (PARLEY_SCHEDULE_SECONDS)", d.as_secs()),
            None => s.expression.clone(),
        };
        text.push_str(&format!("  {} {every}\n", s.function));
    }
    text.push_str(
        "Make a session with: cargo xtask session you@example.com\n\
         Ctrl-C (or SIGTERM, SIGHUP) stops everything.\n",
    );
    text
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
    let outcome =
        outcome.and_then(|()| xtask::contract::schemathesis(&root, &bin, pg.admin_url(), args));
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

/// Runs `f` against the target database, stopping a server started for it afterwards.
async fn with_database<F, Fut>(f: F) -> Result
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result>,
{
    let (url, server) = target_database().await?;
    let outcome = f(url).await;
    if let Some(server) = server {
        server.stop();
    }
    outcome
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

/// `cargo xtask deletion status <user-id>`: what an account deletion did and what is left.
async fn deletion(args: &[String]) -> Result {
    const USAGE: &str = "usage: cargo xtask deletion status USER_ID";
    let user: i32 = match args {
        [command, id] if command == "status" => id.parse().map_err(|_| USAGE.to_owned())?,
        _ => return Err(USAGE.to_owned()),
    };
    let (url, server) = target_database().await?;
    let found = deletion_status(&url, user).await;
    if let Some(server) = server {
        server.stop();
    }
    println!("{}", found?);
    Ok(())
}

async fn deletion_status(url: &str, user: i32) -> Result<String> {
    let settings = shared::api::settings::Settings::from_lookup(|name| {
        (name == "DATABASE_URL").then(|| url.to_owned())
    })
    .map_err(|e| e.to_string())?;
    let pool = shared::platform::db::pool(&settings.database);
    let status = shared::domain::lifecycle::account::AccountDeletions::reader(pool)
        .status(shared::domain::UserId::new(user))
        .await
        .map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&status).map_err(|e| e.to_string())
}
