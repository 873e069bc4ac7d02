//! Powertools' idempotency scenarios, ported to our Postgres store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parley_tests::TestDb;
use serde_json::json;
use shared::platform::idempotency::{Claim, Idempotency, IdempotencyError};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn store(db: &TestDb, ttl: Duration) -> Idempotency {
    Idempotency::new(shared::platform::db::pool(&db.settings(&[]).database), ttl)
}

#[tokio::test]
async fn a_completed_key_returns_the_stored_response_without_running_again() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(3600)).await;
    let payload = json!({"recording_id": "r1", "options": {"a": 1, "b": 2}});
    let Claim::Acquired(lease) = idem
        .claim("worker", "job-1", &payload, now_ms() + 10_000)
        .await
        .unwrap()
    else {
        panic!("first execution must acquire");
    };
    idem.complete(lease, &json!({"transcript_id": "t-9"}))
        .await
        .unwrap();
    // Same payload with keys in another order: still the same request.
    let reordered = json!({"options": {"b": 2, "a": 1}, "recording_id": "r1"});
    match idem
        .claim("worker", "job-1", &reordered, now_ms() + 10_000)
        .await
        .unwrap()
    {
        Claim::Completed(response) => assert_eq!(response, json!({"transcript_id": "t-9"})),
        other => panic!("{other:?}"),
    }
    // Another scope never shares the record.
    assert!(matches!(
        idem.claim("other-fn", "job-1", &payload, 0).await.unwrap(),
        Claim::Acquired(_)
    ));
    db.drop_db().await;
}

#[tokio::test]
async fn a_key_in_progress_is_refused_until_its_deadline_passes() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(3600)).await;
    let payload = json!({"id": 1});
    let Claim::Acquired(_held) = idem
        .claim("worker", "k", &payload, now_ms() + 400)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        idem.claim("worker", "k", &payload, now_ms() + 10_000).await,
        Err(IdempotencyError::AlreadyInProgress)
    ));
    // The holder died at its Lambda deadline: the record is treated as expired and can be claimed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(matches!(
        idem.claim("worker", "k", &payload, now_ms() + 10_000)
            .await
            .unwrap(),
        Claim::Acquired(_)
    ));
    db.drop_db().await;
}

#[tokio::test]
async fn a_completed_record_expires_after_its_ttl() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(1)).await;
    let payload = json!({"id": 2});
    let Claim::Acquired(lease) = idem.claim("w", "k", &payload, 0).await.unwrap() else {
        panic!()
    };
    idem.complete(lease, &json!("done")).await.unwrap();
    assert!(matches!(
        idem.claim("w", "k", &payload, 0).await.unwrap(),
        Claim::Completed(_)
    ));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        idem.claim("w", "k", &payload, 0).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert_eq!(
        idem.purge_expired().await.unwrap(),
        0,
        "the re-claimed record is live again"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn another_payload_under_the_same_key_is_an_error() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(3600)).await;
    let Claim::Acquired(lease) = idem
        .claim("w", "k", &json!({"amount": 10}), 0)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        idem.claim("w", "k", &json!({"amount": 99}), 0).await,
        Err(IdempotencyError::PayloadMismatch)
    ));
    idem.complete(lease, &json!(1)).await.unwrap();
    assert!(matches!(
        idem.claim("w", "k", &json!({"amount": 99}), 0).await,
        Err(IdempotencyError::PayloadMismatch)
    ));
    db.drop_db().await;
}

#[tokio::test]
async fn a_failed_execution_releases_the_key_so_a_retry_runs() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(3600)).await;
    let payload = json!({"id": 3});
    let Claim::Acquired(lease) = idem.claim("w", "k", &payload, 0).await.unwrap() else {
        panic!()
    };
    idem.release(lease).await.unwrap();
    assert!(matches!(
        idem.claim("w", "k", &payload, 0).await.unwrap(),
        Claim::Acquired(_)
    ));
    db.drop_db().await;
}

#[tokio::test]
async fn concurrent_claims_let_exactly_one_run() {
    let db = TestDb::create().await;
    let idem = store(&db, Duration::from_secs(3600)).await;
    let payload = json!({"id": 4});
    let claims = futures_like_join(&idem, &payload).await;
    let acquired = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Acquired(_))))
        .count();
    let refused = claims
        .iter()
        .filter(|c| matches!(c, Err(IdempotencyError::AlreadyInProgress)))
        .count();
    assert_eq!((acquired, refused), (1, 7));
    db.drop_db().await;
}

async fn futures_like_join(
    idem: &Idempotency,
    payload: &serde_json::Value,
) -> Vec<Result<Claim, IdempotencyError>> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let idem = idem.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            idem.claim("w", "race", &payload, now_ms() + 10_000).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_unreachable_store_fails_closed() {
    let settings = parley_tests::settings_with(
        &parley_tests::dead_database_url(),
        &[("DB_CONNECT_TIMEOUT_MS", "300")],
    );
    let idem = Idempotency::new(
        shared::platform::db::pool(&settings.database),
        Duration::from_secs(60),
    );
    assert!(matches!(
        idem.claim("w", "k", &json!(1), 0).await,
        Err(IdempotencyError::Store(_))
    ));
}

/// The purge runs in its own scheduled function (it used to hide in the transcription
/// reconciler), with the EventBridge event shape, and removes only expired records.
#[tokio::test]
async fn the_idempotency_sweeper_removes_expired_records_and_keeps_live_ones() {
    let db = TestDb::create().await;
    let short = store(&db, Duration::from_secs(1)).await;
    let long = store(&db, Duration::from_secs(3600)).await;
    for (idem, key) in [(&short, "soon"), (&long, "later")] {
        let Claim::Acquired(lease) = idem.claim("w", key, &json!({}), 0).await.unwrap() else {
            panic!("{key} was free")
        };
        idem.complete(lease, &json!("done")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let report = idempotency_sweeper::handle(&long, parley_tests::events::scheduled())
        .await
        .unwrap();
    assert_eq!(report["purged"], 1);
    assert!(matches!(
        long.claim("w", "later", &json!({}), 0).await.unwrap(),
        Claim::Completed(_)
    ));
    db.drop_db().await;
}
