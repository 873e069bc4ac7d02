//! `cargo xtask bench`: cold start, warm latency and peak memory of functions' release binaries
//! under a loopback Lambda Runtime API, against a hello-world floor and pgbench's latency for the
//! same session statement. Results go to docs/benchmarks.md.

mod emulator;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use emulator::{Emulator, Reply};
use report::{DatabaseFloor, Machine, Measured};
use workload::{FLOOR, Target};

use xtask::Result;
use xtask::postgres::Postgres;

/// The Lambda timeout the deadline header announces (template.yaml's global Timeout).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one answer before the bench gives up on a process.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// Warm invocations run in blocks, round-robin over the binaries, so background load on a shared
/// machine spreads over all of them instead of skewing one.
const BLOCK: usize = 100;
/// pgbench transactions that each open their own connection, to price a first connection.
const CONNECT_RUNS: usize = 200;

struct Options {
    cold_runs: usize,
    invocations: usize,
    warm_up: usize,
    only: Option<Vec<String>>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        cold_runs: 20,
        invocations: 2000,
        warm_up: 20,
        only: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        let count = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag} takes a positive count"))
        };
        match flag.as_str() {
            "--cold" => o.cold_runs = count(value()?)?,
            "--warm" => o.invocations = count(value()?)?,
            "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
            other => return Err(format!("unexpected argument {other:?} (see cargo xtask)")),
        }
    }
    Ok(o)
}

pub async fn bench(args: &[String]) -> Result {
    let options = options(args)?;
    let root = xtask::workspace_root();
    let pgbench = postgres_tool("pgbench")?;

    // The floor and the functions in one build, with the same profile.
    let names: Vec<&str> = workload::NAMES
        .into_iter()
        .filter(|n| {
            *n == FLOOR
                || options
                    .only
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|x| x == n))
        })
        .collect();
    if names.len() < 2 {
        return Err(format!(
            "--only names none of the measured functions: {}",
            names.join(", ")
        ));
    }
    let mut build = Command::new("cargo");
    build.current_dir(&root).args(["build", "--release"]);
    // `cargo run` gave this process xtask's CARGO_MANIFEST_DIR and CARGO_PKG_*; build scripts
    // that watch them (ring's) would rerun and relink everything a plain `cargo build` had built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            build.env_remove(&*name);
        }
    }
    for name in &names {
        build.args(["-p", name]);
    }
    xtask::tools::run(&mut build)?;
    let release = target_dir(&root).join("release");

    // Other work on a shared machine moves the figures; the report says how busy it was.
    let load_before = load_average();
    let pg = Postgres::find_or_start(&root).await?;
    let database = format!("parley_bench_{}", std::process::id());
    let url = pg.create_database_if_missing(&database).await?;
    // The receivers send to SQS on their measured path: moto_server stands in, as in `cargo xtask dev`.
    let moto = if names.contains(&"telnyx-webhook") {
        Some(start_moto(&root).await?)
    } else {
        None
    };
    let outcome = measure(
        &root,
        &release,
        &pgbench,
        &url,
        &names,
        &options,
        moto.as_ref().map(|(_, sqs)| sqs),
    )
    .await;
    if let Some((mut child, _)) = moto {
        let _ = child.kill();
        let _ = child.wait();
    }
    let dropped = drop_database(pg.admin_url(), &database).await;
    pg.stop();
    let (floor, functions, db) = outcome?;
    dropped?;

    let load = format!("{load_before} before, {} after", load_average());
    let machine = machine(&root, &db.server, &load);
    println!("\n{}", report::table(&floor, &functions, &db));
    if let Some(me) = functions.iter().find(|m| m.name == "me") {
        println!(
            "`me` against issue 12's goals:\n{}",
            report::goal_lines(&floor, me, &db)
        );
    }
    let settings = report::Settings {
        cold_runs: options.cold_runs,
        connect_runs: CONNECT_RUNS,
        warm_up: options.warm_up,
        invocations: options.invocations,
    };
    let block = report::markdown(&floor, &functions, &db, &machine, &settings);
    let doc = root.join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&doc)
        .unwrap_or_else(|_| "# Benchmarks\n\nWritten by `cargo xtask bench`.\n".to_owned());
    std::fs::create_dir_all(root.join("docs")).map_err(|e| e.to_string())?;
    std::fs::write(&doc, report::splice(&existing, &block))
        .map_err(|e| format!("writing {}: {e}", doc.display()))?;
    println!("wrote {}", doc.display());
    Ok(())
}

/// moto_server on a free port with the call queue on it.
async fn start_moto(root: &Path) -> Result<(std::process::Child, workload::Sqs)> {
    let bin = xtask::tools::ensure_venv(root)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(bin.join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting moto_server: {e}"))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let sqs = shared::local::sqs_client(&endpoint);
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        match sqs.create_queue().queue_name("bench-calls").send().await {
            Ok(out) => break out.queue_url.unwrap_or_default(),
            Err(e) if Instant::now() > deadline => return Err(format!("moto_server: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    Ok((
        child,
        workload::Sqs {
            endpoint,
            call_queue_url: url,
        },
    ))
}

/// Seeds the database, runs pgbench, then every binary cold and warm.
async fn measure(
    root: &Path,
    release: &Path,
    pgbench: &Path,
    url: &str,
    names: &[&str],
    options: &Options,
    sqs: Option<&workload::Sqs>,
) -> Result<(Measured, Vec<Measured>, DatabaseFloor)> {
    let applied = xtask::postgres::migrate(url).await?;
    println!("bench database migrated ({} migrations)", applied.len());
    let seeded = workload::seed(url).await?;
    let targets: Vec<Target> = workload::targets(&seeded)
        .into_iter()
        .filter(|t| names.contains(&t.name))
        .collect();

    let mut db = database_floor(
        root,
        pgbench,
        url,
        &seeded.session_token,
        options.invocations,
    )?;
    db.server = workload::server_version(url).await?;
    println!(
        "pgbench, session statement: {:.3} ms prepared, {:.3} ms unprepared, {:.2} ms more on a new connection",
        db.prepared_ms, db.extended_ms, db.connect_ms
    );

    let logs = root.join("target/bench");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let runs: Vec<Run> = targets
        .iter()
        .map(|t| Run {
            target: t,
            binary: release.join(t.name),
            env: workload::function_env(t.name, url, sqs),
            log: logs.join(format!("{}.log", t.name)),
            event: Bytes::from(t.event.to_string()),
            sent: std::sync::atomic::AtomicU64::new(1),
        })
        .collect();
    for run in &runs {
        // Truncate last run's log; processes append to it.
        std::fs::write(&run.log, b"").map_err(|e| e.to_string())?;
    }

    let mut cold: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    for round in 0..options.cold_runs {
        for (i, run) in runs.iter().enumerate() {
            cold[i].push(run.cold_start().await?);
        }
        print!("\rcold starts: {}/{}", round + 1, options.cold_runs);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    println!();

    let mut warm = Vec::new();
    for run in &runs {
        let mut process = run.start().await?;
        for _ in 0..=options.warm_up {
            process.invoke(run).await?;
        }
        warm.push(process);
    }
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    while latencies[0].len() < options.invocations {
        let block = BLOCK.min(options.invocations - latencies[0].len());
        for (i, run) in runs.iter().enumerate() {
            for _ in 0..block {
                latencies[i].push(warm[i].invoke(run).await?);
            }
        }
        print!(
            "\rwarm invocations: {}/{}",
            latencies[0].len(),
            options.invocations
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    println!();

    let mut measured = Vec::new();
    for ((run, process), (cold, warm)) in runs.iter().zip(warm).zip(cold.into_iter().zip(latencies))
    {
        let peak_rss_kib = process.peak_rss_kib()?;
        process.stop().await;
        let binary_bytes = std::fs::metadata(&run.binary)
            .map_err(|e| e.to_string())?
            .len();
        measured.push(Measured {
            name: run.target.name,
            path: run.target.path,
            cold,
            warm,
            peak_rss_kib,
            binary_bytes,
        });
    }
    let floor = measured.remove(0);
    Ok((floor, measured, db))
}

/// One binary, its environment and the event it answers.
struct Run<'a> {
    target: &'a Target,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    event: Bytes,
    /// Invocations so far, numbering fresh events.
    sent: std::sync::atomic::AtomicU64,
}

/// A running function process and the emulator it polls.
struct Process {
    child: tokio::process::Child,
    emulator: Emulator,
}

impl Run<'_> {
    /// The event for the next invocation.
    fn next_event(&self) -> Bytes {
        match self.target.fresh {
            Some(make) => {
                let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Bytes::from(make(n).to_string())
            }
            None => self.event.clone(),
        }
    }

    fn command(&self, emulator: &Emulator) -> Result<tokio::process::Command> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        // Only what Lambda would set: nothing of this shell's environment leaks in.
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", emulator.runtime_api())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// exec → first response, in a new process (which then ends).
    async fn cold_start(&self) -> Result<Duration> {
        let emulator = Emulator::start(self.target.name, TIMEOUT).await?;
        let pending = emulator.submit(self.next_event());
        let mut cmd = self.command(&emulator)?;
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        let mut process = Process { child, emulator };
        let answered = process.answer(self, pending).await;
        process.stop().await;
        Ok(answered? - started)
    }

    async fn start(&self) -> Result<Process> {
        let emulator = Emulator::start(self.target.name, TIMEOUT).await?;
        let child = self
            .command(&emulator)?
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        Ok(Process { child, emulator })
    }
}

impl Process {
    /// One invocation: from queuing the event to the response's arrival.
    async fn invoke(&mut self, run: &Run<'_>) -> Result<Duration> {
        let pending = self.emulator.submit(run.next_event());
        let queued = Instant::now();
        Ok(self.answer(run, pending).await? - queued)
    }

    /// Waits for the answer and checks it is the expected HTTP status; returns when it arrived.
    async fn answer(&mut self, run: &Run<'_>, pending: emulator::Pending) -> Result<Instant> {
        let name = run.target.name;
        let log = run.log.display();
        let outcome = tokio::select! {
            outcome = self.emulator.wait(pending) => outcome.map_err(|e| format!("{name}: {e}; see {log}"))?,
            status = self.child.wait() => {
                return Err(format!("{name} exited ({}) before answering; see {log}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())));
            }
            _ = tokio::time::sleep(ANSWER_WITHIN) => {
                return Err(format!("{name} did not answer within {ANSWER_WITHIN:?}; see {log}"));
            }
        };
        let body = match outcome.reply {
            Reply::Response(body) => body,
            Reply::Error { body, .. } => {
                return Err(format!(
                    "{name} reported an error: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        };
        let status = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["statusCode"].as_u64());
        if status != Some(run.target.expected_status) {
            return Err(format!(
                "{name} answered {}, not {}: {}",
                status.map_or("no status".to_owned(), |s| s.to_string()),
                run.target.expected_status,
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(outcome.at)
    }

    /// The process's peak resident set so far (Linux `VmHWM`), read while it still runs.
    fn peak_rss_kib(&self) -> Result<u64> {
        let pid = self.child.id().ok_or("the process already ended")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in /proc/<pid>/status".to_owned())
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.emulator.close();
    }
}

/// pgbench on the statement `me` runs, with the seeded token: prepared (the floor) and unprepared.
fn database_floor(
    root: &Path,
    pgbench: &Path,
    url: &str,
    token: &str,
    transactions: usize,
) -> Result<DatabaseFloor> {
    let script = root.join("target/bench/session.sql");
    std::fs::create_dir_all(script.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    std::fs::write(&script, pgbench_script(&session_statement(root)?))
        .map_err(|e| e.to_string())?;
    let config = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let latency = |mode: &str, connect_each: bool, count: usize| -> Result<f64> {
        let mut cmd = Command::new(pgbench);
        if connect_each {
            cmd.arg("-C");
        }
        let output = cmd
            .args(["-h", &host, "-p", &port.to_string()])
            .args(["-U", config.get_user().unwrap_or("postgres")])
            .args(["-M", mode, "-n", "-c", "1"])
            .args(["-t", &count.to_string()])
            .arg("-D")
            .arg(format!("token={token}"))
            .arg("-D")
            .arg(format!("max_age={}", workload::SESSION_MAX_AGE_SECS))
            .arg("-D")
            .arg(format!("update_age={}", workload::SESSION_UPDATE_AGE_SECS))
            // The rate-limit bucket of `me`'s class, under the bench's limit (always allowed, so
            // every transaction writes the bucket, as a warm request does).
            .arg("-D")
            .arg("class=read")
            .arg("-D")
            .arg(format!("interval_us={}", workload::RATE_INTERVAL_US))
            .arg("-D")
            .arg(format!("tolerance_us={}", workload::RATE_TOLERANCE_US))
            .arg("-f")
            .arg(&script)
            .arg(config.get_dbname().unwrap_or("postgres"))
            .output()
            .map_err(|e| format!("running pgbench: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "pgbench -M {mode} failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        text.lines()
            .find_map(|l| l.strip_prefix("latency average = "))
            .and_then(|v| v.trim_end_matches(" ms").trim().parse().ok())
            .ok_or_else(|| format!("no latency in pgbench's output: {text}"))
    };
    let extended_ms = latency("extended", false, transactions)?;
    // A connection costs milliseconds (a backend fork): fewer runs say enough.
    let connect_ms = latency("extended", true, CONNECT_RUNS)? - extended_ms;
    Ok(DatabaseFloor {
        prepared_ms: latency("prepared", false, transactions)?,
        extended_ms,
        connect_ms,
        transactions,
        server: String::new(),
    })
}

/// The session-resolving statement, read from shared's source (`const RESOLVE_SQL`) wherever the
/// crate's layout puts it, so pgbench runs exactly what `me` runs.
fn session_statement(root: &Path) -> Result<String> {
    const START: &str = "const RESOLVE_SQL: &str = r#\"";
    let mut dirs = vec![root.join("shared/src")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Some((_, rest)) = text.split_once(START) {
                    let (sql, _) = rest
                        .split_once("\"#;")
                        .ok_or_else(|| format!("unterminated RESOLVE_SQL in {}", path.display()))?;
                    return Ok(sql.trim().to_owned());
                }
            }
        }
    }
    Err("no `const RESOLVE_SQL` (the session statement) under shared/src".to_owned())
}

/// The statement as a pgbench script: its `$n` parameters become pgbench variables.
fn pgbench_script(sql: &str) -> String {
    format!(
        "{};\n",
        sql.replace("$1", ":token")
            .replace("$2", ":max_age")
            .replace("$3", ":update_age")
            .replace("$4", ":class")
            .replace("$5", ":interval_us")
            .replace("$6", ":tolerance_us")
    )
}

async fn drop_database(admin_url: &str, name: &str) -> Result {
    let config = tokio_postgres::Config::from_str(admin_url).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(|e| format!("dropping {name}: {e}"))
}

/// A PostgreSQL client tool: on PATH, else the newest /usr/lib/postgresql/*/bin.
fn postgres_tool(tool: &str) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.exists())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin").join(tool))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("{tool} not found (apt-get install postgresql-client)"))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn first_line(cmd: &mut Command) -> Option<String> {
    let output = cmd.output().ok().filter(|o| o.status.success())?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

fn machine(root: &Path, postgres: &str, load: &str) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB", kib / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".to_owned());
    let commit =
        first_line(
            Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "--short=12", "HEAD"]),
        )
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = Command::new("git")
        .current_dir(root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        date: time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_default(),
        commit: if dirty {
            format!("{commit} (with uncommitted changes)")
        } else {
            commit
        },
        rustc: first_line(Command::new("rustc").arg("--version")).unwrap_or_default(),
        postgres: postgres.to_owned(),
        load: load.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_runs_shareds_session_statement_with_variables() {
        let sql = session_statement(&xtask::workspace_root()).unwrap();
        assert!(sql.contains("\"sessionToken\" = $1"), "{sql}");
        let script = pgbench_script(&sql);
        assert!(script.contains(":token") && script.contains(":update_age"));
        assert!(script.contains(":class") && script.contains(":tolerance_us"));
        assert!(!script.contains('$') && script.ends_with(";\n"));
    }
}
