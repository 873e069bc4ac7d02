//! Finding PostgreSQL (or starting a private cluster under target/), and the database chores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;

use crate::Result;
use crate::tools::run;

const SHARED_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The private cluster's port: away from 5432 so it never fights a system server.
const PRIVATE_PORT: u16 = 54329;

/// A PostgreSQL server we can create databases on; `stop` only stops what we started.
pub struct Postgres {
    admin_url: String,
    started: Option<PathBuf>,
    bin: Option<PathBuf>,
}

impl Postgres {
    /// `127.0.0.1:5432` if it answers, else our private cluster (initialised on first use).
    pub async fn find_or_start(root: &Path) -> Result<Postgres> {
        if answers(SHARED_SERVER).await {
            return Ok(Postgres {
                admin_url: SHARED_SERVER.to_owned(),
                started: None,
                bin: None,
            });
        }
        let private_url = format!("postgres://postgres@127.0.0.1:{PRIVATE_PORT}/postgres");
        if answers(&private_url).await {
            // Someone else (another `cargo xtask dev`) runs it; leave it running when we finish.
            return Ok(Postgres {
                admin_url: private_url,
                started: None,
                bin: None,
            });
        }
        let bin = postgres_bin_dir()?;
        let data = root.join("target/pg/data");
        if !data.join("PG_VERSION").exists() {
            println!(
                "initialising a private PostgreSQL cluster in {}",
                data.display()
            );
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            as_postgres_user(&data)?;
            run(pg_command(&bin, "initdb")
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
                .arg(&data))?;
        }
        println!("starting the private PostgreSQL cluster on 127.0.0.1:{PRIVATE_PORT}");
        let options = format!(
            "-p {PRIVATE_PORT} -c listen_addresses=127.0.0.1 -k {}",
            data.display()
        );
        run(pg_command(&bin, "pg_ctl")
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(data.join("../server.log"))
            .arg("-D")
            .arg(&data)
            .arg("start"))?;
        if !answers(&private_url).await {
            return Err(format!(
                "the private cluster did not answer; see {}",
                data.join("../server.log").display()
            ));
        }
        Ok(Postgres {
            admin_url: private_url,
            started: Some(data),
            bin: Some(bin),
        })
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Stops the cluster if this process started it.
    pub fn stop(self) {
        if let (Some(data), Some(bin)) = (&self.started, &self.bin) {
            let _ = run(pg_command(bin, "pg_ctl")
                .args(["-m", "fast", "-w", "-D"])
                .arg(data)
                .arg("stop"));
        }
    }

    /// Creates `name` if it does not exist and returns its URL.
    pub async fn create_database_if_missing(&self, name: &str) -> Result<String> {
        let client = connect(&self.admin_url).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(self
            .admin_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{name}"))
            .expect("URL has a path"))
    }

    /// Drops the per-test databases (`parley_t_*`) that a crashed run may have left.
    pub async fn drop_test_databases(&self) -> Result {
        let client = connect(&self.admin_url).await?;
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'parley\\_t\\_%'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        for row in rows {
            let name: String = row.get(0);
            if owner_is_alive(&name) {
                continue;
            }
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .map_err(|e| format!("dropping {name}: {e}"))?;
        }
        Ok(())
    }
}

/// Test databases are named `parley_t_<pid>_<uuid>`; one whose test process still runs is in use.
fn owner_is_alive(name: &str) -> bool {
    name.strip_prefix("parley_t_")
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let config = shared::platform::settings::parse_database_url(url)?;
    shared::platform::db::connect(&config)
        .await
        .map_err(|e| e.to_string())
}

async fn answers(url: &str) -> bool {
    let Ok(mut config) = tokio_postgres::Config::from_str(url) else {
        return false;
    };
    config.connect_timeout(Duration::from_secs(2));
    matches!(
        tokio::time::timeout(Duration::from_secs(3), shared::platform::db::connect(&config)).await,
        Ok(Ok(client)) if client.simple_query("select 1").await.is_ok()
    )
}

/// Applies migrations/ to `url`; returns what was applied.
pub async fn migrate(url: &str) -> Result<Vec<String>> {
    let mut client = connect(url)
        .await
        .map_err(|e| format!("connecting for migrations: {e}"))?;
    shared::platform::db::migrations::run(&mut client)
        .await
        .map_err(|e| format!("migrations refused: {e}"))
}

/// Creates (or reuses) the user with `email` and a fresh 256-bit session token.
pub async fn create_session(
    url: &str,
    email: &str,
    name: Option<&str>,
    max_age_secs: i64,
) -> Result<(i32, String, String)> {
    let client = connect(url).await?;
    let existing = client
        .query_opt(
            "SELECT id FROM users WHERE email = $1 ORDER BY id LIMIT 1",
            &[&email],
        )
        .await
        .map_err(|e| e.to_string())?;
    let user_id: i32 = match existing {
        Some(row) => row.get(0),
        None => client
            .query_one(
                r#"INSERT INTO users (name, email, "emailVerified") VALUES ($1, $2, now()) RETURNING id"#,
                &[&name, &email],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0),
    };
    // 32 random bytes: above ASVS's 128-bit floor, unlike Auth.js's default UUID (122 bits).
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let row = client
        .query_one(
            r#"INSERT INTO sessions ("userId", expires, "sessionToken")
               VALUES ($1, now() + make_interval(secs => $2::float8), $3) RETURNING expires::text"#,
            &[&user_id, &(max_age_secs as f64), &token],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((user_id, token, row.get(0)))
}

fn postgres_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    }) {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().ok_or_else(|| {
        "no PostgreSQL answers on 127.0.0.1:5432 and no initdb is installed (apt-get install postgresql)".to_owned()
    })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: hand the data directory to the `postgres` user.
fn as_postgres_user(data: &Path) -> Result {
    if running_as_root() {
        let parent = data.parent().expect("data has a parent");
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(parent))?;
    }
    Ok(())
}

fn pg_command(bin: &Path, tool: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        cmd
    } else {
        Command::new(bin.join(tool))
    }
}
