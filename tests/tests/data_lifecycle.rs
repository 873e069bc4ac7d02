//! Data lifecycle against real PostgreSQL, moto (R2 and the account queue) and wiremock playing
//! AssemblyAI and ElevenLabs, asserting the exact DELETE each vendor documents: recording and
//! speech deletion reaching every copy, a vendor that is down retried by the sweeper, speech
//! retention, account deletion (rerunnable, idempotent) and export.

use parley_tests::{Answer, Event, TestStack, bearer, events};
use serde_json::{Value, json};
use shared::App;
use shared::domain::UserId;
use shared::domain::lifecycle::account::{AccountDeletions, OWNED_TABLES, UNASSIGNED_ON_DELETION};
use shared::domain::lifecycle::{AccountWorker, LifecycleSweeper};
use shared::local::Route;
use shared::platform::storage::Storage;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AAI_KEY: &str = "aai-test-key-0123456789";
const EL_KEY: &str = "sk_el_test_0123456789abcdef";
const ORIGIN: &str = "http://localhost:3000";

struct Ctx {
    stack: TestStack,
    storage: Storage,
    route: Route,
    worker: AccountWorker,
    sweeper: LifecycleSweeper,
}

async fn ctx() -> Ctx {
    let stack = TestStack::builder("data-lifecycle")
        .queue("account", "account-worker", "ACCOUNT_QUEUE_URL")
        .vendor(&["ASSEMBLYAI_BASE_URL", "ELEVENLABS_BASE_URL"])
        .env(&[
            ("ASSEMBLYAI_API_KEY", AAI_KEY),
            ("ELEVENLABS_API_KEY", EL_KEY),
            // The speech worker is built in one test; only its reconciler sends.
            (
                "TTS_QUEUE_URL",
                "http://127.0.0.1:1/123456789012/tts-unused",
            ),
        ])
        .build()
        .await;
    let storage = Storage::new(stack.app.settings.storage.as_ref().unwrap());
    let route = stack.queue.clone().expect("built with a queue");
    let worker = stack.app.account_worker(stack.sqs.clone()).unwrap();
    let sweeper = stack.app.lifecycle_sweeper(stack.sqs.clone()).unwrap();
    Ctx {
        stack,
        storage,
        route,
        worker,
        sweeper,
    }
}

fn app(c: &Ctx) -> &App {
    &c.stack.app
}

fn vendor(c: &Ctx) -> &MockServer {
    &c.stack.vendor
}

/// AssemblyAI's answer to `DELETE /v2/transcript/{id}`: the transcript, redacted, still `completed`.
fn redacted(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": id, "status": "completed", "text": "Deleted by user.",
        "audio_url": "http://deleted_by_user", "webhook_url": "http://deleted_by_user",
        "words": null, "utterances": null
    }))
}

async fn expect_transcript_delete(vendor: &MockServer, id: &str, times: u64) {
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/transcript/{id}")))
        .and(header("authorization", AAI_KEY))
        .respond_with(redacted(id))
        .expect(times)
        .mount(vendor)
        .await;
}

async fn expect_history_delete(vendor: &MockServer, id: &str, times: u64) {
    Mock::given(method("DELETE"))
        .and(path(format!("/v1/history/{id}")))
        .and(header("xi-api-key", EL_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .expect(times)
        .mount(vendor)
        .await;
}

impl Ctx {
    async fn query_i64(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.stack
            .db
            .client
            .query_one(sql, params)
            .await
            .unwrap()
            .get(0)
    }

    /// A ready recording with its object in R2 and one transcription per vendor id.
    async fn recording(&self, user: i32, transcripts: &[&str]) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let key = format!("users/{user}/recordings/{id}.wav");
        let wav = shared::platform::audio::silent_wav(0.5, 8000);
        self.storage
            .put(&key, wav.clone().into(), "audio/wav")
            .await
            .unwrap();
        self.stack
            .db
            .client
            .execute(
                "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes, size_bytes, file_name)
                 VALUES ($1, $2, $3, 'ready', 'audio/wav', $4, $4, 'call.wav')",
                &[&id, &user, &key, &(wav.len() as i64)],
            )
            .await
            .unwrap();
        for vendor_id in transcripts {
            self.stack
                .db
                .client
                .execute(
                    "INSERT INTO transcriptions (id, owner_id, recording_id, status, webhook_secret, vendor_transcript_id, text, completed_at)
                     VALUES ($1, $2, $3, 'completed', 'secret-secret-secret-secret', $4, 'hello from the call', now())",
                    &[&Uuid::now_v7(), &user, &id, vendor_id],
                )
                .await
                .unwrap();
        }
        (id, key)
    }

    /// A completed speech job with its audio in R2 and an ElevenLabs history item.
    async fn speech(&self, user: i32, history_item: Option<&str>, age_days: f64) -> (Uuid, String) {
        let id = Uuid::now_v7();
        let key = format!("users/{user}/tts/{id}.mp3");
        self.storage
            .put(&key, vec![0xFF, 0xFB, 0x90, 0x00].into(), "audio/mpeg")
            .await
            .unwrap();
        self.stack
            .db
            .client
            .execute(
                "INSERT INTO tts_jobs (id, owner_id, status, characters, voice_id, model_id, output_format,
                                       object_key, content_type, size_bytes, vendor_history_item_id, completed_at)
                 VALUES ($1, $2, 'completed', 5, '21m00Tcm4TlvDq8ikWAM', 'eleven_multilingual_v2', 'mp3_44100_128',
                         $3, 'audio/mpeg', 4, $4, now() - make_interval(days => $5::float8::int))",
                &[&id, &user, &key, &history_item, &age_days],
            )
            .await
            .unwrap();
        (id, key)
    }

    async fn serve(&self, event: Event, function: &str) -> Answer {
        let app = app(self);
        let req = event.request();
        let response = match function {
            "recordings-delete" => {
                let recordings = app.recording_deletion().unwrap();
                app.http
                    .serve(req, |req| recordings_delete::handle(app, &recordings, req))
                    .await
            }
            "tts-delete" => {
                let jobs = app.tts_reads().unwrap();
                let copies = app.vendor_copies(false, true).unwrap();
                app.http
                    .serve(req, |req| tts_delete::handle(app, &jobs, &copies, req))
                    .await
            }
            "tts-get" => {
                let jobs = app.tts_reads().unwrap();
                app.http
                    .serve(req, |req| tts_get::handle(app, &jobs, req))
                    .await
            }
            "me-delete" => {
                let deletions = app
                    .account_deletion_requests(self.stack.sqs.clone())
                    .unwrap();
                app.http
                    .serve(req, |req| me_delete::handle(app, &deletions, req))
                    .await
            }
            "me" => app.http.serve(req, |req| me::handle(app, req)).await,
            "export-create" => {
                let exports = app.exports(Some(self.stack.sqs.clone())).unwrap();
                app.http
                    .serve(req, |req| export_create::handle(app, &exports, req))
                    .await
            }
            "export-get" => {
                let exports = app.exports(None).unwrap();
                app.http
                    .serve(req, |req| export_get::handle(app, &exports, req))
                    .await
            }
            other => panic!("no function {other}"),
        };
        Answer::from_response(response.unwrap())
    }

    /// Receives every message on the account queue and delivers each through the worker's
    /// Lambda handler; returns the bodies delivered.
    async fn drain(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .stack
                .sqs
                .receive_message()
                .queue_url(&self.route.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = received.messages();
            if messages.is_empty() {
                return bodies;
            }
            for m in messages {
                let body = m.body().unwrap();
                let failures = self.deliver(body, 1).await;
                assert!(failures.is_empty(), "the worker failed {body}");
                bodies.push(serde_json::from_str(body).unwrap());
                self.stack
                    .sqs
                    .delete_message()
                    .queue_url(&self.route.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn deliver(&self, body: &str, receive_count: u32) -> Vec<String> {
        self.deliver_to(&self.worker, body, receive_count).await
    }

    async fn deliver_to(
        &self,
        worker: &AccountWorker,
        body: &str,
        receive_count: u32,
    ) -> Vec<String> {
        let event = events::sqs_delivery(body, receive_count, &self.route.queue_arn);
        let mut context = lambda_runtime::Context::default();
        context.deadline = shared::platform::lambda::now_ms() + 120_000;
        match account_worker::handle(worker, lambda_runtime::LambdaEvent::new(event, context)).await
        {
            Ok(r) => r
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    async fn sweep(&self) -> shared::domain::lifecycle::SweepReport {
        let mut event = events::scheduled();
        event.context.deadline = shared::platform::lambda::now_ms() + 60_000;
        lifecycle_sweeper::handle(&self.sweeper, event)
            .await
            .unwrap()
    }

    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.storage.list_keys(prefix).await.unwrap()
    }
}

fn delete_recording(token: &str, id: Uuid) -> Event {
    Event::new("DELETE", &format!("/api/recordings/{id}"))
        .path_param("id", &id.to_string())
        .header("authorization", &bearer(token))
}

fn delete_tts(token: &str, id: Uuid) -> Event {
    Event::new("DELETE", &format!("/api/tts/{id}"))
        .path_param("id", &id.to_string())
        .header("authorization", &bearer(token))
}

#[tokio::test]
async fn deleting_a_recording_deletes_its_transcripts_at_assemblyai() {
    let c = ctx().await;
    let (user, token) = c.stack.db.session("rec-del@example.com", 3600).await;
    let (id, key) = c.recording(user, &["tr-aaa-111", "tr-bbb-222"]).await;
    // One answers with the redacted transcript, the other was already gone (404): both are done.
    expect_transcript_delete(vendor(&c), "tr-aaa-111", 1).await;
    Mock::given(method("DELETE"))
        .and(path("/v2/transcript/tr-bbb-222"))
        .and(header("authorization", AAI_KEY))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": "Transcript not found"})),
        )
        .expect(1)
        .mount(vendor(&c))
        .await;

    // Another user's recording is a 404 and reaches no vendor.
    let (_, other) = c.stack.db.session("rec-other@example.com", 3600).await;
    c.serve(delete_recording(&other, id), "recordings-delete")
        .await
        .assert_problem(404, "not-found");

    let answer = c
        .serve(delete_recording(&token, id), "recordings-delete")
        .await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    vendor(&c).verify().await;
    assert_eq!(
        c.query_i64("SELECT count(*) FROM recordings WHERE id = $1", &[&id])
            .await,
        0
    );
    assert_eq!(
        c.query_i64(
            "SELECT count(*) FROM transcriptions WHERE recording_id = $1",
            &[&id]
        )
        .await,
        0
    );
    assert!(c.storage.head(&key).await.unwrap().is_none());
    assert_eq!(
        c.query_i64(
            "SELECT count(*) FROM vendor_deletions WHERE vendor = 'assemblyai' AND kind = 'transcript'
             AND subject_user_id = $1 AND done_at IS NOT NULL AND attempts = 1",
            &[&user]
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_vendor_that_is_down_does_not_block_the_204_and_the_sweeper_retries_until_it_confirms() {
    let c = ctx().await;
    let (user, token) = c.stack.db.session("down@example.com", 3600).await;
    let (id, _) = c.recording(user, &["tr-down-1"]).await;
    Mock::given(method("DELETE"))
        .and(path("/v2/transcript/tr-down-1"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "Service unavailable"})),
        )
        .mount(vendor(&c))
        .await;

    let answer = c
        .serve(delete_recording(&token, id), "recordings-delete")
        .await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(
        c.query_i64("SELECT count(*) FROM recordings WHERE id = $1", &[&id])
            .await,
        0
    );
    let row = c
        .stack
        .db
        .client
        .query_one(
            "SELECT attempts, last_error, done_at IS NULL,
                    extract(epoch FROM next_attempt_at - now())::float8
             FROM vendor_deletions WHERE object_id = 'tr-down-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(
        row.get::<_, String>(1).contains("503"),
        "{}",
        row.get::<_, String>(1)
    );
    assert!(row.get::<_, bool>(2), "still pending");
    let wait: f64 = row.get(3);
    assert!(
        (50.0..=61.0).contains(&wait),
        "backs off a minute, got {wait}"
    );

    // Not due yet: the sweeper leaves it alone.
    let report = c.sweep().await;
    assert_eq!(
        report.vendor_deletions.deleted + report.vendor_deletions.deferred,
        0
    );

    // Due, still down: a second failure doubles the wait.
    c.stack
        .db
        .client
        .execute("UPDATE vendor_deletions SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    let report = c.sweep().await;
    assert_eq!(report.vendor_deletions.deferred, 1);
    let (attempts, wait): (i32, f64) = {
        let r = c
            .stack
            .db
            .client
            .query_one(
                "SELECT attempts, extract(epoch FROM next_attempt_at - now())::float8 FROM vendor_deletions",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(attempts, 2);
    assert!((110.0..=121.0).contains(&wait), "two minutes, got {wait}");

    // AssemblyAI is back: the next due sweep deletes it with exactly the documented request.
    vendor(&c).reset().await;
    expect_transcript_delete(vendor(&c), "tr-down-1", 1).await;
    c.stack
        .db
        .client
        .execute("UPDATE vendor_deletions SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    let report = c.sweep().await;
    assert_eq!(report.vendor_deletions.deleted, 1);
    vendor(&c).verify().await;
    assert_eq!(
        c.query_i64("SELECT count(*) FROM vendor_deletions WHERE done_at IS NOT NULL AND last_error IS NULL", &[]).await,
        1
    );
    // Confirmed: never tried again.
    c.stack
        .db
        .client
        .execute("UPDATE vendor_deletions SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    let report = c.sweep().await;
    assert_eq!(report.vendor_deletions.deleted, 0);
}

#[tokio::test]
async fn deleting_speech_removes_the_audio_and_the_elevenlabs_history_item() {
    let c = ctx().await;
    let (user, token) = c.stack.db.session("tts-del@example.com", 3600).await;
    let (id, key) = c.speech(user, Some("HIST0123abc"), 0.0).await;
    expect_history_delete(vendor(&c), "HIST0123abc", 1).await;

    let (_, other) = c.stack.db.session("tts-other@example.com", 3600).await;
    c.serve(delete_tts(&other, id), "tts-delete")
        .await
        .assert_problem(404, "not-found");

    let answer = c.serve(delete_tts(&token, id), "tts-delete").await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    vendor(&c).verify().await;
    assert!(c.storage.head(&key).await.unwrap().is_none());
    assert_eq!(
        c.query_i64("SELECT count(*) FROM tts_jobs WHERE id = $1", &[&id])
            .await,
        0
    );
    assert_eq!(
        c.query_i64(
            "SELECT count(*) FROM vendor_deletions WHERE done_at IS NOT NULL",
            &[]
        )
        .await,
        2,
        "the R2 object and the history item"
    );
    c.serve(delete_tts(&token, id), "tts-delete")
        .await
        .assert_problem(404, "not-found");

    // A job being synthesized is refused: its audio is not stored yet.
    let busy = Uuid::now_v7();
    c.stack
        .db
        .client
        .execute(
            "INSERT INTO tts_jobs (id, owner_id, status, text, characters, voice_id, model_id, output_format, synth_started_at)
             VALUES ($1, $2, 'processing', 'hello', 5, '21m00Tcm4TlvDq8ikWAM', 'eleven_multilingual_v2', 'mp3_44100_128', now())",
            &[&busy, &user],
        )
        .await
        .unwrap();
    c.serve(delete_tts(&token, busy), "tts-delete")
        .await
        .assert_problem(409, "conflict");
    assert_eq!(
        c.query_i64("SELECT count(*) FROM tts_jobs WHERE id = $1", &[&busy])
            .await,
        1
    );
}

#[tokio::test]
async fn the_tts_worker_records_the_history_item_elevenlabs_names() {
    let c = ctx().await;
    let (user, _) = c.stack.db.session("hist@example.com", 3600).await;
    let id = Uuid::now_v7();
    c.stack
        .db
        .client
        .execute(
            "INSERT INTO tts_jobs (id, owner_id, status, text, characters, voice_id, model_id, output_format)
             VALUES ($1, $2, 'queued', 'Hello there', 11, '21m00Tcm4TlvDq8ikWAM', 'eleven_multilingual_v2', 'mp3_44100_128')",
            &[&id, &user],
        )
        .await
        .unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"))
        .and(header("xi-api-key", EL_KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "audio/mpeg")
                .insert_header("request-id", "req_1")
                .insert_header("history-item-id", "VW7ZFg8Cq3hA")
                .set_body_bytes(vec![0xFF, 0xFB, 0x90, 0x00, 0x00]),
        )
        .expect(1)
        .mount(vendor(&c))
        .await;
    let worker = app(&c).tts_worker(c.stack.sqs.clone()).unwrap();
    let job = shared::domain::speech::jobs::TtsJob { tts_id: id };
    let delivery = shared::platform::queue::Delivery {
        message_id: Some("m-1".into()),
        receive_count: 1,
    };
    worker
        .process(
            &job,
            &delivery,
            shared::platform::lambda::now_ms() + 120_000,
        )
        .await
        .unwrap();
    let row = c
        .stack
        .db
        .client
        .query_one(
            "SELECT status, vendor_history_item_id FROM tts_jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("VW7ZFg8Cq3hA")
    );
}

#[tokio::test]
async fn speech_past_its_retention_expires_and_its_get_says_so() {
    let c = ctx().await;
    let (user, token) = c.stack.db.session("expire@example.com", 3600).await;
    let (old, old_key) = c.speech(user, Some("HISTold1"), 31.0).await;
    let (fresh, fresh_key) = c.speech(user, Some("HISTnew1"), 1.0).await;
    expect_history_delete(vendor(&c), "HISTold1", 1).await;

    let report = c.sweep().await;
    assert_eq!(report.speech_expired, 1);
    vendor(&c).verify().await;
    assert!(c.storage.head(&old_key).await.unwrap().is_none());
    assert!(c.storage.head(&fresh_key).await.unwrap().is_some());

    let get = |id: Uuid| {
        Event::new("GET", &format!("/api/tts/{id}"))
            .path_param("id", &id.to_string())
            .header("authorization", &bearer(&token))
    };
    let expired = c.serve(get(old), "tts-get").await;
    assert_eq!(expired.status, 200);
    assert_eq!(expired.body["tts"]["status"], "completed");
    assert_eq!(expired.body["tts"]["expired"], true);
    assert_eq!(expired.body["tts"]["audio_url"], Value::Null);
    let live = c.serve(get(fresh), "tts-get").await;
    assert_eq!(live.body["tts"]["expired"], false);
    assert!(live.body["tts"]["audio_url"].is_string());

    // Expiry happens once.
    assert_eq!(c.sweep().await.speech_expired, 0);
}

#[tokio::test]
async fn every_table_that_references_users_is_deleted_or_unassigned_by_an_account_deletion() {
    let c = ctx().await;
    let rows = c
        .stack
        .db
        .client
        .query(
            "SELECT DISTINCT tc.table_name::text FROM information_schema.table_constraints tc
             JOIN information_schema.constraint_column_usage ccu
               ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema
             WHERE tc.constraint_type = 'FOREIGN KEY' AND ccu.table_name = 'users'",
            &[],
        )
        .await
        .unwrap();
    let listed: Vec<&str> = OWNED_TABLES
        .iter()
        .chain(UNASSIGNED_ON_DELETION)
        .map(|t| t.table)
        .collect();
    assert!(rows.len() >= 6, "the schema has its user tables");
    for row in rows {
        let table: String = row.get(0);
        assert!(
            listed.contains(&table.as_str()),
            "{table} references users but is not in OWNED_TABLES or UNASSIGNED_ON_DELETION"
        );
    }
}

/// Everything a user can own, for the account deletion tests. Returns the object keys.
async fn populate(c: &Ctx, user: i32, email: &str, tag: &str) -> Vec<String> {
    let (_, rec_key) = c.recording(user, &[&format!("tr-{tag}")]).await;
    let (_, tts_key) = c.speech(user, Some(&format!("HIST{tag}")), 0.0).await;
    // An object no row names (an upload retried after a refusal).
    let stray = format!("users/{user}/recordings/stray-{tag}.wav");
    c.storage
        .put(&stray, vec![1, 2, 3].into(), "audio/wav")
        .await
        .unwrap();
    let db = &c.stack.db.client;
    db.execute(
        r#"INSERT INTO accounts ("userId", type, provider, "providerAccountId", access_token)
           VALUES ($1, 'oauth', 'github', $2, 'gho_secret')"#,
        &[&user, &format!("gh-{tag}")],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO verification_token (identifier, expires, token) VALUES ($1, now() + interval '1 hour', $2)",
        &[&email, &format!("vt-{tag}")],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO idempotency_records (scope, key_hash, status, payload_hash, response, expires_at)
         VALUES ($1, '\\x01', 'COMPLETED', '\\x02', '{\"body\":{\"file_name\":\"call.wav\"}}', now() + interval '1 day')",
        &[&format!("recordings-upload:{user}")],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO data_exports (id, owner_id, status) VALUES ($1, $2, 'queued')",
        &[&Uuid::now_v7(), &user],
    )
    .await
    .unwrap();
    vec![rec_key, tts_key, stray]
}

async fn left_of(c: &Ctx, user: i32, email: &str) -> Vec<String> {
    let mut left = Vec::new();
    for owned in OWNED_TABLES {
        let n = c
            .query_i64(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} = $1",
                    owned.table, owned.owner_column
                ),
                &[&user],
            )
            .await;
        if n > 0 {
            left.push(format!("{}: {n}", owned.table));
        }
    }
    for (name, sql) in [
        ("users", "SELECT count(*) FROM users WHERE id = $1"),
        (
            "idempotency_records",
            "SELECT count(*) FROM idempotency_records WHERE scope LIKE '%:' || $1::int4::text",
        ),
    ] {
        if c.query_i64(sql, &[&user]).await > 0 {
            left.push(name.to_owned());
        }
    }
    if c.query_i64(
        "SELECT count(*) FROM verification_token WHERE identifier = $1",
        &[&email],
    )
    .await
        > 0
    {
        left.push("verification_token".into());
    }
    left.extend(c.keys_under(&format!("users/{user}/")).await);
    left
}

#[tokio::test]
async fn deleting_an_account_removes_every_row_object_and_vendor_copy_and_ends_sessions_at_once() {
    let c = ctx().await;
    let email = "gone@example.com";
    let (user, token) = c.stack.db.session(email, 3600).await;
    let (bob, bob_token) = c.stack.db.session("bob-stays@example.com", 3600).await;
    populate(&c, user, email, "alice").await;
    let bob_keys = populate(&c, bob, "bob-stays@example.com", "bob").await;
    expect_transcript_delete(vendor(&c), "tr-alice", 1).await;
    expect_history_delete(vendor(&c), "HISTalice", 1).await;

    // A cookie request without an allowed Origin is refused like every write.
    let cookie = format!("authjs.session-token={token}");
    let refused = c
        .serve(Event::new("DELETE", "/api/me").cookie(&cookie), "me-delete")
        .await;
    refused.assert_problem(403, "forbidden");
    assert_eq!(c.stack.db.session_count(&token).await, 1);

    let accepted = c
        .serve(
            Event::new("DELETE", "/api/me")
                .cookie(&cookie)
                .header("origin", ORIGIN),
            "me-delete",
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body, json!({"deletion": {"status": "queued"}}));
    assert!(accepted.header("set-cookie").unwrap().contains("Max-Age=0"));
    // Sessions end at once, before any job runs.
    assert_eq!(c.stack.db.session_count(&token).await, 0);
    let after = c
        .serve(
            Event::new("GET", "/api/me").header("authorization", &bearer(&token)),
            "me",
        )
        .await;
    after.assert_problem(401, "unauthenticated");

    let status = AccountDeletions::reader(app(&c).db.clone());
    let queued = status.status(UserId::new(user)).await.unwrap();
    assert_eq!(queued.tombstone.as_ref().unwrap().status, "queued");

    let delivered = c.drain().await;
    assert_eq!(
        delivered,
        vec![json!({"job": "delete_account", "user_id": user})]
    );
    vendor(&c).verify().await;
    assert_eq!(left_of(&c, user, email).await, Vec::<String>::new());

    let done = status.status(UserId::new(user)).await.unwrap();
    let tombstone = done.tombstone.unwrap();
    assert_eq!(tombstone.status, "completed");
    assert_eq!(tombstone.report["objects_deleted"], 3);
    assert_eq!(tombstone.report["vendor_copies"]["found"], 2);
    assert!(!done.user_row && done.rows_left.is_empty());
    assert_eq!(done.vendor_copies_pending, 0);
    // The tombstone holds no personal data: no email anywhere in it.
    assert!(
        !serde_json::to_string(&tombstone.report)
            .unwrap()
            .contains("gone@")
    );

    // Another user is untouched.
    assert!(left_of(&c, bob, "bob-stays@example.com").await.len() > 5);
    for key in bob_keys {
        assert!(c.storage.head(&key).await.unwrap().is_some(), "{key}");
    }
    let bob_me = c
        .serve(
            Event::new("GET", "/api/me").header("authorization", &bearer(&bob_token)),
            "me",
        )
        .await;
    assert_eq!(bob_me.status, 200);

    // A duplicate delivery does nothing (no vendor call twice: the mocks expect exactly one).
    let again = c
        .deliver(
            &json!({"job": "delete_account", "user_id": user}).to_string(),
            2,
        )
        .await;
    assert!(again.is_empty());
    vendor(&c).verify().await;
    // A job for a user nobody asked to delete touches nothing.
    assert!(
        c.deliver(
            &json!({"job": "delete_account", "user_id": bob}).to_string(),
            1
        )
        .await
        .is_empty()
    );
    assert_eq!(
        c.query_i64("SELECT count(*) FROM users WHERE id = $1", &[&bob])
            .await,
        1
    );
    // A message that is not a job is refused (reported as a failure), touching nothing.
    let bad = c
        .deliver(r#"{"job":"delete_account","user_id":"1 OR 1=1"}"#, 1)
        .await;
    assert_eq!(bad.len(), 1);
}

#[tokio::test]
async fn an_account_deletion_interrupted_halfway_finishes_on_the_next_delivery() {
    let c = ctx().await;
    let email = "halfway@example.com";
    let (user, token) = c.stack.db.session(email, 3600).await;
    populate(&c, user, email, "half").await;
    // AssemblyAI is down for the whole run; ElevenLabs answers.
    Mock::given(method("DELETE"))
        .and(path("/v2/transcript/tr-half"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": "boom"})))
        .mount(vendor(&c))
        .await;
    expect_history_delete(vendor(&c), "HISThalf", 1).await;
    let accepted = c
        .serve(
            Event::new("DELETE", "/api/me").header("authorization", &bearer(&token)),
            "me-delete",
        )
        .await;
    assert_eq!(accepted.status, 202);

    // First run: R2 is unreachable, so the run stops after recording the vendor copies.
    let dead = App::from_settings(
        "account-worker",
        c.stack.db.settings(&[
            (
                "R2_ENDPOINT",
                &format!("http://127.0.0.1:{}", parley_tests::free_port()),
            ),
            ("R2_BUCKET_NAME", "gone"),
            ("R2_ACCESS_KEY_ID", "x"),
            ("R2_SECRET_ACCESS_KEY", "y"),
            ("ACCOUNT_QUEUE_URL", &c.route.queue_url),
            ("ASSEMBLYAI_API_KEY", AAI_KEY),
            ("ASSEMBLYAI_BASE_URL", &vendor(&c).uri()),
            ("ELEVENLABS_API_KEY", EL_KEY),
            ("ELEVENLABS_BASE_URL", &vendor(&c).uri()),
        ]),
    );
    let dead_worker = dead.account_worker(c.stack.sqs.clone()).unwrap();
    let body = json!({"job": "delete_account", "user_id": user}).to_string();
    assert_eq!(
        c.deliver_to(&dead_worker, &body, 1).await.len(),
        1,
        "retried"
    );
    let status = AccountDeletions::reader(app(&c).db.clone());
    let halfway = status.status(UserId::new(user)).await.unwrap();
    let tombstone = halfway.tombstone.unwrap();
    assert_eq!(tombstone.status, "running");
    assert!(tombstone.last_error.unwrap().contains("objects"));
    assert!(halfway.user_row, "rows are kept until the objects are gone");
    assert_eq!(
        halfway.vendor_copies_pending, 2,
        "copies recorded before any row goes"
    );

    // The redelivery finishes; AssemblyAI still down leaves its copy to the sweeper.
    assert!(c.deliver(&body, 2).await.is_empty());
    assert_eq!(left_of(&c, user, email).await, Vec::<String>::new());
    let done = status.status(UserId::new(user)).await.unwrap();
    assert_eq!(done.tombstone.unwrap().status, "completed");
    assert_eq!(done.vendor_copies_pending, 1);

    // AssemblyAI comes back; the sweeper finishes the last copy.
    vendor(&c).reset().await;
    expect_transcript_delete(vendor(&c), "tr-half", 1).await;
    c.stack
        .db
        .client
        .execute("UPDATE vendor_deletions SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(c.sweep().await.vendor_deletions.deleted, 1);
    vendor(&c).verify().await;
    assert_eq!(
        status
            .status(UserId::new(user))
            .await
            .unwrap()
            .vendor_copies_pending,
        0
    );
}

#[tokio::test]
async fn an_open_tombstone_whose_message_was_lost_is_sent_again_by_the_sweeper() {
    let c = ctx().await;
    let (user, _) = c.stack.db.session("lost@example.com", 3600).await;
    c.stack
        .db
        .client
        .execute(
            "INSERT INTO account_deletions (user_id, status, requested_at, updated_at)
             VALUES ($1, 'queued', now() - interval '5 minutes', now() - interval '5 minutes')",
            &[&user],
        )
        .await
        .unwrap();
    assert_eq!(c.sweep().await.account_deletions_resent, 1);
    assert_eq!(
        c.drain().await,
        vec![json!({"job": "delete_account", "user_id": user})]
    );
    assert_eq!(
        c.query_i64("SELECT count(*) FROM users WHERE id = $1", &[&user])
            .await,
        0
    );
    assert_eq!(c.sweep().await.account_deletions_resent, 0);
}

#[tokio::test]
async fn an_export_is_one_json_document_with_everything_and_fresh_links() {
    let c = ctx().await;
    let email = "export@example.com";
    let (user, token) = c.stack.db.session(email, 3600).await;
    populate(&c, user, email, "exp").await;
    let (other_user, other) = c.stack.db.session("export-other@example.com", 3600).await;
    c.recording(other_user, &["tr-other"]).await;

    let created = c
        .serve(
            Event::new("POST", "/api/me/export").header("authorization", &bearer(&token)),
            "export-create",
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["export"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["export"]["status"], "queued");
    assert_eq!(
        created.header("location"),
        Some(format!("/api/me/export/{id}").as_str())
    );
    let get = |token: &str| {
        Event::new("GET", &format!("/api/me/export/{id}"))
            .path_param("id", &id)
            .header("authorization", &bearer(token))
    };
    assert_eq!(
        c.serve(get(&token), "export-get").await.body["export"]["download_url"],
        Value::Null
    );
    c.serve(get(&other), "export-get")
        .await
        .assert_problem(404, "not-found");

    assert_eq!(
        c.drain().await,
        vec![json!({"job": "export", "export_id": id})]
    );
    let got = c.serve(get(&token), "export-get").await;
    assert_eq!(got.status, 200);
    let export = &got.body["export"];
    assert_eq!(export["status"], "completed");
    let expires = time::OffsetDateTime::parse(
        export["download_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((3590..=3600).contains(&left), "valid one hour, {left}");

    let document: Value = reqwest::get(export["download_url"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["format"], "parley-export/1");
    let sections = &document["sections"];
    assert_eq!(sections["profile"]["user"]["email"], email);
    assert_eq!(
        sections["profile"]["sign_in_accounts"][0]["provider"],
        "github"
    );
    let text = document.to_string();
    assert!(!text.contains("gho_secret"), "no OAuth tokens");
    assert!(!text.contains("secret-secret"), "no callback secrets");
    assert!(!text.contains("tr-other"), "nothing of another user");
    let recordings = sections["recordings"].as_array().unwrap();
    assert_eq!(recordings.len(), 1);
    assert!(recordings[0].get("object_key").is_none());
    let audio = reqwest::get(recordings[0]["download_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert!(shared::platform::audio::matches(
        "wav",
        &audio.bytes().await.unwrap()
    ));
    assert_eq!(sections["transcriptions"][0]["text"], "hello from the call");
    assert_eq!(sections["speech_jobs"][0]["expired"], false);
    assert!(sections["speech_jobs"][0]["audio_url"].is_string());

    // Past EXPORT_RETENTION_HOURS the document is removed and the link withdrawn.
    c.stack
        .db
        .client
        .execute("UPDATE data_exports SET completed_at = now() - interval '2 days' WHERE status = 'completed'", &[])
        .await
        .unwrap();
    assert_eq!(c.sweep().await.exports_expired, 1);
    let expired = c.serve(get(&token), "export-get").await;
    assert_eq!(expired.body["export"]["expired"], true);
    assert_eq!(expired.body["export"]["download_url"], Value::Null);
    assert!(
        c.keys_under(&format!("users/{user}/exports/"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_vendor_deletion_table_keeps_kinds_this_build_does_not_know_pending() {
    let c = ctx().await;
    // A kind another release added (billing, say): left pending, never marked done or misread.
    c.stack
        .db
        .client
        .execute(
            "INSERT INTO vendor_deletions (vendor, kind, object_id, subject_user_id) VALUES ('stripe', 'customer', 'cus-1', 1)",
            &[],
        )
        .await
        .unwrap();
    let report = c.sweep().await;
    assert_eq!(
        report.vendor_deletions.deleted + report.vendor_deletions.deferred,
        0
    );
    assert_eq!(
        c.query_i64(
            "SELECT count(*) FROM vendor_deletions WHERE done_at IS NULL",
            &[]
        )
        .await,
        1
    );
}
