//! The Neon pool and migrations against real PostgreSQL.

use std::time::{Duration, Instant};

use parley_tests::{TestDb, dead_database_url, settings_with};
use shared::platform::db::{self, DbError};

#[tokio::test]
async fn migrations_create_the_auth_js_schema_with_its_additions_and_rerun_as_a_no_op() {
    let mut db = TestDb::create().await;
    let applied = db::migrations::run(&mut db.client).await.unwrap();
    assert!(applied.is_empty(), "second run applied {applied:?}");
    let history: i64 = db
        .client
        .query_one("SELECT count(*) FROM parley_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert!(history >= 1);

    let columns: Vec<String> = db
        .client
        .query(
            "SELECT table_name || '.' || column_name FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name IN ('users','accounts','sessions','verification_token')
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "sessions.sessionToken",
        "sessions.userId",
        "sessions.expires",
        "users.emailVerified",
        "accounts.providerAccountId",
        "accounts.refresh_token",
        "verification_token.identifier",
    ] {
        assert!(
            columns.iter().any(|c| c == expected),
            "missing {expected} in {columns:?}"
        );
    }

    // Unique session tokens and provider identities, cascading deletes.
    let user: i32 = db
        .client
        .query_one(
            "INSERT INTO users (email) VALUES ('x@example.com') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let insert_session =
        r#"INSERT INTO sessions ("userId", expires, "sessionToken") VALUES ($1, now(), 'same')"#;
    db.client.execute(insert_session, &[&user]).await.unwrap();
    let dup = db
        .client
        .execute(insert_session, &[&user])
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let insert_account = r#"INSERT INTO accounts ("userId", type, provider, "providerAccountId") VALUES ($1, 'oauth', 'github', '42')"#;
    db.client.execute(insert_account, &[&user]).await.unwrap();
    assert!(db.client.execute(insert_account, &[&user]).await.is_err());
    db.client
        .execute("DELETE FROM users WHERE id = $1", &[&user])
        .await
        .unwrap();
    let left: i64 = db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM accounts)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let indexed: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_indexes WHERE tablename = 'sessions' AND indexdef LIKE '%\"userId\"%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexed, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let mut db = TestDb::create().await;
    db.client
        .execute(
            "UPDATE parley_schema_history SET checksum = '1' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = db::migrations::run(&mut db.client).await.unwrap_err();
    assert!(err.to_string().contains("different"), "{err}");
    db.drop_db().await;
}

#[tokio::test]
async fn the_statement_timeout_applies_to_every_pooled_connection() {
    let db = TestDb::create().await;
    let settings = db.settings(&[("DB_STATEMENT_TIMEOUT_MS", "200")]);
    let pool = db::pool(&settings.database);
    let client = db::client(&pool).await.unwrap();
    let started = Instant::now();
    let err = client
        .query_typed("select pg_sleep(3)", &[])
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    drop(client);
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn acquiring_from_an_exhausted_pool_times_out_quickly() {
    let db = TestDb::create().await;
    let settings = db.settings(&[("DB_POOL_MAX_SIZE", "1"), ("DB_ACQUIRE_TIMEOUT_MS", "300")]);
    let pool = db::pool(&settings.database);
    let held = db::client(&pool).await.unwrap();
    let started = Instant::now();
    let err = db::client(&pool).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    assert!(
        db::client(&pool).await.is_ok(),
        "the connection went back to the pool"
    );
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn a_connection_killed_while_idle_is_replaced_not_returned() {
    let db = TestDb::create().await;
    let pool = db::pool(&db.settings(&[]).database);
    let pid: i32 = db::client(&pool)
        .await
        .unwrap()
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // As if Neon closed the connection while the Lambda was frozen.
    db.client
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = db::client(&pool).await.unwrap();
    let new_pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, new_pid);
    drop(client);
    drop(pool);
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_as_unavailable() {
    let settings = settings_with(&dead_database_url(), &[("DB_CONNECT_TIMEOUT_MS", "500")]);
    let pool = db::pool(&settings.database);
    let started = Instant::now();
    let err = db::ping(&pool, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(!err.to_string().contains("not-a-real-password"));
}

/// The session lookup runs on a plan prepared once per connection (issue: warm `/api/me` was
/// re-planned on every request), and `DB_STATEMENT_CACHE=off` sends unnamed statements instead.
#[tokio::test]
async fn the_session_query_is_prepared_once_per_connection_unless_the_cache_is_off() {
    let db = TestDb::create().await;
    let (_, token) = db.session("cache@example.com", 3600).await;
    let mut headers = lambda_http::http::HeaderMap::new();
    headers.insert(
        lambda_http::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    for (cache, expected) in [("on", 1i64), ("off", 0)] {
        let settings = db.settings(&[("DB_POOL_MAX_SIZE", "1"), ("DB_STATEMENT_CACHE", cache)]);
        let app = shared::App::from_settings("test", settings);
        for _ in 0..3 {
            app.sessions.authenticate(&headers).await.unwrap();
        }
        // The pool holds one connection, so this is the one the lookups ran on.
        let client = db::client(&app.db).await.unwrap();
        let prepared: i64 = client
            .query_one(
                // This statement is prepared too, and its own text matches the pattern.
                "SELECT count(*) FROM pg_prepared_statements
                 WHERE statement LIKE '%FROM found%' AND statement NOT LIKE '%pg_prepared%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(prepared, expected, "DB_STATEMENT_CACHE={cache}");
    }
    db.drop_db().await;
}
