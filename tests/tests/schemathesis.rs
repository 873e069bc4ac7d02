//! The contract against the running API: schemathesis drives the real binaries under `cargo lambda
//! watch` (moto for R2 and SQS, the vendor sandbox, a real Auth.js session) from docs/openapi.yaml
//! and fails on any 5xx or any answer outside the document. Minutes long, so it is `#[ignore]`d in
//! the plain test run and run by `cargo xtask test` (xtask/src/contract.rs).

use std::process::Command;
use std::time::Duration;

use parley_tests::{Api, Moto, TestDb, authjs, borrow, free_port, workspace_root};
use serde_json::{Value, json};

/// Sign-outs schemathesis may make, each with a session of its own.
const SIGN_OUT_SESSIONS: usize = 400;
/// Account deletions schemathesis may make, each by a user of its own (a deletion ends every
/// session of its user, so it must never be the user the other routes run as).
const DELETED_ACCOUNTS: usize = 200;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes long: cargo xtask test runs it"]
async fn the_running_api_keeps_its_openapi_contract() {
    let schemathesis = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing (run via cargo xtask test)",
        schemathesis.display()
    );
    let db = TestDb::create().await;
    let moto = Moto::start().await;
    let sqs = shared::local::sqs_client(&moto.endpoint);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    // Producers need their queues at init; nothing consumes them here (the workers are not under test).
    let mut env = moto.bucket_env().await;
    for (variable, queue, worker) in [
        (
            "TRANSCRIPTION_QUEUE_URL",
            "contract-transcriptions",
            "transcription-worker",
        ),
        ("TTS_QUEUE_URL", "contract-tts", "tts-worker"),
        (
            "TRANSLATION_QUEUE_URL",
            "contract-translations",
            "translation-worker",
        ),
        ("ACCOUNT_QUEUE_URL", "contract-account", "account-worker"),
        ("CALL_QUEUE_URL", "contract-calls", "call-worker"),
        ("BILLING_QUEUE_URL", "contract-billing", "billing-worker"),
    ] {
        let route = shared::local::ensure_queue(&sqs, &format!("{queue}-{suffix}"), worker, 30, 5)
            .await
            .unwrap();
        env.push((variable, route.queue_url));
    }
    let sandbox =
        shared::local::sandbox::start(([127, 0, 0, 1], 0).into(), Duration::from_millis(200))
            .await
            .unwrap();
    let (keyless, _) = shared::local::sandbox_env(&sandbox.base_url, |_| None);
    env.extend(keyless);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    env.extend([
        ("DATABASE_URL", db.url.clone()),
        ("PARLEY_STAGE", "local".to_owned()),
        ("AWS_REGION", shared::local::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "parley-local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "parley-local-secret".to_owned()),
        ("AWS_ENDPOINT_URL_SQS", moto.endpoint.clone()),
        ("BACKEND_URL", base.clone()),
        ("PUBLIC_BASE_URL", base.clone()),
    ]);
    // schemathesis sends thousands of requests a minute under one session: limits a script
    // could never reach, so the contract run checks responses rather than tripping the 429 (which
    // tests/tests/rate_limits.rs covers, and the contract still lists on every authenticated route).
    for variable in [
        "RATE_LIMIT_PAID",
        "RATE_LIMIT_TOKEN",
        "RATE_LIMIT_WRITE",
        "RATE_LIMIT_READ",
    ] {
        env.push((variable, "1000000/1s".to_owned()));
    }
    let watch = Api::start_on(port, &borrow(&env)).await;
    // The contract is about shapes, not allowances: thousands of generated requests would use up
    // the free plan and turn valid requests into 402s (tests/tests/billing.rs covers quotas).
    db.client
        .execute(
            "UPDATE plans SET transcription_seconds = 1e15, speech_characters = 1e15,
                    translation_characters = 1e15, realtime_seconds = 1e15, call_minutes = 1e15,
                    storage_bytes = 1e15 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    // A plan for sale, so checkouts reach the Stripe sandbox (its price is made up: the sandbox
    // sells any price).
    db.client
        .execute(
            "INSERT INTO plans (name, stripe_price_id, transcription_seconds, speech_characters,
                                translation_characters, realtime_seconds, call_minutes, storage_bytes)
             VALUES ('pro', 'price_contractPro', 36000, 500000, 1000000, 18000, 600, 53687091200)",
            &[],
        )
        .await
        .unwrap();

    // The session every authenticated route runs under, made by Auth.js's own adapter.
    let made = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "contract@example.com",
            "--name",
            "Contract",
        ],
    );
    let token = made["session_token"].as_str().unwrap().to_owned();
    let user: i32 = made["user_id"].as_str().unwrap().parse().unwrap();
    let pool = sign_out_pool(&db, user).await;
    let doomed = deleted_accounts_pool(&db).await;

    let http = reqwest::Client::new();
    let wav = shared::platform::audio::silent_wav(1.0, 16000);
    let recording = watch
        .ready_recording(&http, &format!("authjs.session-token={token}"), &wav)
        .await;
    let created: Value = http
        .post(watch.url(&format!("/api/recordings/{recording}/transcriptions")))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let transcription = created["transcription"]["id"].as_str().unwrap().to_owned();
    let secret: String = db
        .client
        .query_one(
            "SELECT webhook_secret FROM transcriptions WHERE id = $1::text::uuid",
            &[&transcription],
        )
        .await
        .unwrap()
        .get(0);

    // A completed transcript to translate (the worker does not run here, so it is made directly).
    let completed = uuid::Uuid::now_v7().to_string();
    db.client
        .execute(
            r#"INSERT INTO transcriptions (id, owner_id, recording_id, status, webhook_secret, text,
                                           utterances, completed_at)
               VALUES ($1::text::uuid, $2, $3::text::uuid, 'completed', repeat('s', 32),
                       'Hello there. Hi.',
                       '[{"speaker":"A","text":"Hello there.","start":0,"end":900,"confidence":0.9},
                         {"speaker":"B","text":"Hi.","start":1000,"end":1400,"confidence":0.9}]',
                       now())"#,
            &[&completed, &user, &recording],
        )
        .await
        .unwrap();

    let report = std::env::temp_dir().join(format!("parley-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&report).unwrap();
    let root = workspace_root();
    let status = Command::new(&schemathesis)
        // Its cache and any report stay out of the checkout.
        .current_dir(&report)
        .arg("--config-file")
        .arg(root.join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(root.join("docs/openapi.yaml"))
        .args(["--url", &base])
        // Checks: all but unsupported_method and allow_header_conformance (see the config for why).
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // More, for a deeper run by hand: PARLEY_ST_ARGS="--max-examples 200 --continue-on-failure".
        .args(
            std::env::var("PARLEY_ST_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/schemathesis/hooks.py"),
        )
        .env("PARLEY_ST_SESSION", &token)
        .env("PARLEY_ST_SIGN_OUT_SESSIONS", &pool)
        .env("PARLEY_ST_DELETE_ACCOUNT_SESSIONS", &doomed)
        .env("PARLEY_ST_READY_RECORDING", &recording)
        .env("PARLEY_ST_TRANSCRIPTION", &transcription)
        .env("PARLEY_ST_WEBHOOK_SECRET", &secret)
        .env("PARLEY_ST_COMPLETED_TRANSCRIPTION", &completed)
        .status()
        .expect("schemathesis runs");

    drop(watch);
    drop(moto);
    let _ = std::fs::remove_dir_all(&report);
    let _ = std::fs::remove_file(&pool);
    let _ = std::fs::remove_file(&doomed);
    db.drop_db().await;
    assert!(
        status.success(),
        "schemathesis found responses outside docs/openapi.yaml (its report is above)"
    );
}

/// Sessions for the same user, one per sign-out, as rows in the Auth.js `sessions` table; returns
/// the file that lists their tokens.
async fn sign_out_pool(db: &TestDb, user: i32) -> std::path::PathBuf {
    let rows = db
        .client
        .query(
            r#"INSERT INTO sessions ("userId", expires, "sessionToken")
               SELECT $1, now() + interval '1 day', gen_random_uuid()::text FROM generate_series(1, $2)
               RETURNING "sessionToken""#,
            &[&user, &(SIGN_OUT_SESSIONS as i32)],
        )
        .await
        .unwrap();
    let tokens: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let path = std::env::temp_dir().join(format!(
        "parley-sign-out-sessions-{}.txt",
        std::process::id()
    ));
    std::fs::write(&path, tokens.join("\n")).unwrap();
    path
}

/// One user with one session per account deletion; returns the file that lists their tokens.
async fn deleted_accounts_pool(db: &TestDb) -> std::path::PathBuf {
    let rows = db
        .client
        .query(
            r#"WITH made AS (
                   INSERT INTO users (name, email)
                   SELECT 'Doomed', 'doomed-' || n || '@example.com' FROM generate_series(1, $1) AS n
                   RETURNING id
               )
               INSERT INTO sessions ("userId", expires, "sessionToken")
               SELECT id, now() + interval '1 day', gen_random_uuid()::text FROM made
               RETURNING "sessionToken""#,
            &[&(DELETED_ACCOUNTS as i32)],
        )
        .await
        .unwrap();
    let tokens: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let path = std::env::temp_dir().join(format!(
        "parley-delete-account-sessions-{}.txt",
        std::process::id()
    ));
    std::fs::write(&path, tokens.join("\n")).unwrap();
    path
}
