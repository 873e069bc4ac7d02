//! The Neon pool: deadpool-postgres over tokio-postgres, built once per execution environment.
//!
//! Queries use `query_typed` (the unnamed statement, one round trip), so nothing depends on a named
//! prepared statement surviving between transactions: that is what Neon's PgBouncer pooler in
//! transaction mode requires.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Metrics, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

use secrecy::{ExposeSecret, SecretString};

use crate::platform::settings::{Reader, parse_database_url};

pub use deadpool_postgres::{Client, Pool as DbPool};
pub use tokio_postgres::Row;
pub use tokio_postgres::types::{ToSql, Type};

/// A connection idle this long may have died while the Lambda was frozen: check it before use.
const STALE_AFTER: Duration = Duration::from_secs(30);
/// Connections older than this are replaced, so a restarted Neon compute is picked up.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
const STALE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached in time; worth retrying later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else is our bug or a constraint the caller must handle (500).
    #[error("database error: {0}")]
    Query(#[source] tokio_postgres::Error),
}

impl DbError {
    /// The SQLSTATE of a query error, if any.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            DbError::Query(e) => e.code(),
            DbError::Unavailable(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let transient = e.is_closed()
            || e.code().is_some_and(|c| {
                // Class 08 (connection), 53 (resources), 57P0x (shutdown) and 57014 (statement timeout).
                let code = c.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P0")
                    || *c == SqlState::QUERY_CANCELED
            })
            || (e.code().is_none()
                && std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
        if transient {
            DbError::Unavailable(e.to_string())
        } else {
            DbError::Query(e)
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(e) => DbError::from(e),
            PoolError::Timeout(kind) => DbError::Unavailable(format!("pool timed out ({kind:?})")),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct DatabaseSettings {
    /// The parsed connection settings; the URL itself is a secret and is not kept.
    pub pg: tokio_postgres::Config,
    pub pool_max_size: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Zero disables the `statement_timeout` startup option.
    pub statement_timeout: Duration,
    /// Prepare each statement once per server connection and reuse its plan (`DB_STATEMENT_CACHE`).
    pub statement_cache: bool,
}

impl fmt::Debug for DatabaseSettings {
    // tokio_postgres::Config's own Debug already redacts the password; hosts are not secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("hosts", &self.pg.get_hosts())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("password", &self.pg.get_password().map(|_| "[redacted]"))
            .field("ssl_mode", &self.pg.get_ssl_mode())
            .field("pool_max_size", &self.pool_max_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("statement_cache", &self.statement_cache)
            .finish()
    }
}

impl DatabaseSettings {
    /// `DATABASE_URL` (or Neon's `NEON_PG_CONN`) and the pool's bounds.
    pub fn read(r: &mut Reader) -> Option<DatabaseSettings> {
        let pool_max_size = r.bounded("DB_POOL_MAX_SIZE", 2usize, 1, 32);
        let connect_timeout =
            Duration::from_millis(r.bounded("DB_CONNECT_TIMEOUT_MS", 3_000u64, 250, 10_000));
        let acquire_timeout =
            Duration::from_millis(r.bounded("DB_ACQUIRE_TIMEOUT_MS", 3_000u64, 100, 10_000));
        let statement_timeout =
            Duration::from_millis(r.bounded("DB_STATEMENT_TIMEOUT_MS", 5_000u64, 0, 60_000));
        let statement_cache = match r.get("DB_STATEMENT_CACHE").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                r.problem(
                    "DB_STATEMENT_CACHE",
                    format!("must be on or off; got {other:?}"),
                );
                true
            }
        };
        Some(DatabaseSettings {
            statement_cache,
            pg: database_url(r)?,
            pool_max_size,
            connect_timeout,
            acquire_timeout,
            statement_timeout,
        })
    }
}

fn database_url(r: &mut Reader) -> Option<tokio_postgres::Config> {
    let (name, url) = match (r.get("DATABASE_URL"), r.get("NEON_PG_CONN")) {
        (Some(url), _) => ("DATABASE_URL", url),
        (None, Some(url)) => ("NEON_PG_CONN", url),
        (None, None) => {
            r.problem(
                "DATABASE_URL",
                "is required (NEON_PG_CONN is accepted as an alias)",
            );
            return None;
        }
    };
    let url = SecretString::from(url);
    let variable = if name == "DATABASE_URL" {
        "DATABASE_URL"
    } else {
        "NEON_PG_CONN"
    };
    match parse_database_url(url.expose_secret()) {
        // A deployed stage talks to Neon over the internet: a URL that would let the driver fall back
        // to plain text (no sslmode, `prefer`, `disable`) is refused before any connection is tried.
        Ok(config) if r.stage.is_deployed() && config.get_ssl_mode() != SslMode::Require => {
            r.problem(
                variable,
                format!(
                    "must set sslmode=require (or verify-ca / verify-full) outside the local stage ({})",
                    r.stage.as_str()
                ),
            );
            None
        }
        Ok(config) => Some(config),
        Err(reason) => {
            r.problem(
                variable,
                format!("is not a usable PostgreSQL URL: {reason}"),
            );
            None
        }
    }
}

/// Whether [`query`] prepares statements (set once per process by [`pool`]).
static STATEMENT_CACHE: AtomicBool = AtomicBool::new(true);

/// Runs one statement. With the statement cache on (the default), each SQL text is prepared once
/// per server connection and later calls are a single Bind/Execute round trip on a cached plan;
/// Neon's pooler (PgBouncer 1.22, transaction mode) tracks protocol-level prepared statements, so
/// this holds behind it. `DB_STATEMENT_CACHE=off` sends unnamed statements for poolers that don't.
pub async fn query(
    client: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if !STATEMENT_CACHE.load(Ordering::Relaxed) {
        return client.query_typed(sql, params).await;
    }
    let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
    let statement = client.prepare_typed_cached(sql, &types).await?;
    let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
    client.query(&statement, &values).await
}

/// Builds the pool without connecting; the first `get` (or [`warm_up`]) opens a connection.
/// One statement on a pooled connection: acquire it, run the statement (see [`query`]), give it back.
pub async fn fetch(
    pool: &Pool,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, DbError> {
    let client = client(pool).await?;
    Ok(query(&client, sql, params).await?)
}

pub fn pool(settings: &DatabaseSettings) -> Pool {
    STATEMENT_CACHE.store(settings.statement_cache, Ordering::Relaxed);
    let mut pg = settings.pg.clone();
    pg.connect_timeout(settings.connect_timeout);
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    if !settings.statement_timeout.is_zero() {
        // A startup option, not `SET`: session SET is not allowed through a transaction-mode pooler.
        let option = format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        );
        let options = match pg.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {option}"),
            _ => option,
        };
        pg.options(&options);
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match pg.get_ssl_mode() {
        // Only an explicit `require` (or verify-*) means TLS: `prefer`, the default, is a local URL.
        SslMode::Require => Manager::from_config(pg, tls_connector(), manager_config),
        _ => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(STALE_CHECK_TIMEOUT))
        .pre_recycle(Hook::async_fn(
            |client: &mut deadpool_postgres::ClientWrapper, metrics: &Metrics| {
                let idle = metrics.last_used();
                let age = metrics.age();
                Box::pin(async move {
                    if age > MAX_CONNECTION_AGE {
                        return Err(HookError::message("connection reached its maximum age"));
                    }
                    if idle > STALE_AFTER {
                        match tokio::time::timeout(STALE_CHECK_TIMEOUT, client.simple_query(""))
                            .await
                        {
                            Ok(Ok(_)) => {}
                            _ => return Err(HookError::message("stale connection dropped")),
                        }
                    }
                    Ok(())
                })
            },
        ))
        .build()
        .expect("a runtime and a size are always set")
}

fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    // Roots compiled in (webpki-roots): no certificate-store scan on the cold-start path.
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Takes a connection from the pool, mapping pool failures to [`DbError`].
pub async fn client(pool: &Pool) -> Result<Client, DbError> {
    Ok(pool.get().await?)
}

/// Opens a connection during INIT so the first request does not pay for it; failure is only logged
/// (the request will try again and answer 503 if the database is still down).
pub async fn warm_up(pool: &Pool) {
    if let Err(e) = client(pool).await {
        tracing::warn!(error = %e, "database warm-up failed");
    }
}

/// `select 1` within `within`: the health check.
pub async fn ping(pool: &Pool, within: Duration) -> Result<(), DbError> {
    let check = async {
        let client = client(pool).await?;
        client.query_typed("select 1", &[]).await?;
        Ok::<_, DbError>(())
    };
    match tokio::time::timeout(within, check).await {
        Ok(result) => result,
        Err(_) => Err(DbError::Unavailable(format!(
            "no answer within {} ms",
            within.as_millis()
        ))),
    }
}

/// Opens one direct connection (for migrations and tooling), with the same TLS rule as the pool.
pub async fn connect(pg: &tokio_postgres::Config) -> Result<tokio_postgres::Client, DbError> {
    let client = match pg.get_ssl_mode() {
        SslMode::Require => {
            let (client, connection) = pg.connect(tls_connector()).await?;
            tokio::spawn(connection);
            client
        }
        _ => {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

#[cfg(feature = "migrate")]
pub mod migrations {
    //! Forward-only SQL migrations from `migrations/`, applied with refinery.

    refinery::embed_migrations!("../migrations");

    /// The history table; refinery refuses to run if an applied file was edited since.
    pub const HISTORY_TABLE: &str = "parley_schema_history";

    /// Applies every pending migration; a no-op when there is none. Returns the names applied.
    pub async fn run(client: &mut tokio_postgres::Client) -> Result<Vec<String>, refinery::Error> {
        let mut runner = migrations::runner()
            .set_abort_divergent(true)
            .set_abort_missing(true);
        runner.set_migration_table_name(HISTORY_TABLE);
        let report = runner.run_async(client).await?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect())
    }
}
