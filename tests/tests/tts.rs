//! Speech jobs against real PostgreSQL, moto_server (S3 + SQS) and wiremock playing ElevenLabs,
//! asserting the exact request ElevenLabs documents (path, query, headers, JSON body).

use std::time::Duration;

use parley_tests::{Answer, Event, Moto, TestDb, TestStack, bearer, events};
use serde_json::{Value, json};
use shared::App;
use shared::domain::speech::OutputFormat;
use shared::domain::speech::jobs::TtsJob;
use shared::domain::speech::jobs::{Advance, SYNTH_SCOPE, TtsJobs, TtsWorker};
use shared::local::Route;
use shared::platform::idempotency::Claim;
use shared::platform::queue::Delivery;
use shared::platform::storage::Storage;
use uuid::Uuid;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_el_test_0123456789abcdef";
const VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

struct Ctx {
    db: TestDb,
    app: App,
    jobs: TtsJobs,
    worker: TtsWorker,
    route: Route,
    vendor: MockServer,
    _moto: Moto,
}

async fn ctx(extra: &[(&'static str, &str)]) -> Ctx {
    let TestStack {
        db,
        app,
        sqs,
        queue,
        vendor,
        moto,
        ..
    } = TestStack::builder("tts")
        .queue("tts", "tts-worker", "TTS_QUEUE_URL")
        .vendor(&["ELEVENLABS_BASE_URL"])
        .env(&[("ELEVENLABS_API_KEY", KEY)])
        .env(extra)
        .build()
        .await;
    let route = queue.expect("built with a queue");
    // These tests are about speech, not allowances (tests/tests/billing.rs): 40,000-character
    // requests must not meet the free plan's 10,000.
    db.client
        .execute(
            "UPDATE plans SET speech_characters = 1000000000 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    let jobs = app.tts_jobs(sqs.clone()).unwrap();
    let worker = app.tts_worker(sqs.clone()).unwrap();
    Ctx {
        db,
        app,
        jobs,
        worker,
        route,
        vendor,
        _moto: moto,
    }
}

impl Ctx {
    async fn create(&self, token: &str, body: Value, key: Option<&str>) -> Answer {
        let mut event = Event::new("POST", "/api/tts")
            .header("authorization", &bearer(token))
            .header("content-type", "application/json")
            .body(&body.to_string());
        if let Some(key) = key {
            event = event.header("idempotency-key", key);
        }
        let req = event.request();
        Answer::from_response(
            self.app
                .http
                .serve(req, |req| tts_create::handle(&self.app, &self.jobs, req))
                .await
                .unwrap(),
        )
    }

    async fn get(&self, token: &str, id: &str) -> Answer {
        let req = Event::new("GET", &format!("/api/tts/{id}"))
            .path_param("id", id)
            .header("authorization", &bearer(token))
            .request();
        Answer::from_response(
            self.app
                .http
                .serve(req, |req| tts_get::handle(&self.app, &self.jobs, req))
                .await
                .unwrap(),
        )
    }

    /// Delivers one SQS record for job `id` through the worker's Lambda handler.
    async fn deliver(&self, id: &str, receive_count: u32) -> Vec<String> {
        self.deliver_by(
            id,
            receive_count,
            shared::platform::lambda::now_ms() + 120_000,
        )
        .await
    }

    /// A delivery whose Lambda deadline is `deadline_ms`.
    async fn deliver_by(&self, id: &str, receive_count: u32, deadline_ms: u64) -> Vec<String> {
        let event = events::sqs_delivery(
            &json!({"tts_id": id}).to_string(),
            receive_count,
            &self.route.queue_arn,
        );
        let message_id = event.records[0].message_id.clone().unwrap_or_default();
        let mut context = lambda_runtime::Context::default();
        context.deadline = deadline_ms;
        match tts_worker::handle(
            &self.worker,
            lambda_runtime::LambdaEvent::new(event, context),
        )
        .await
        {
            Ok(r) => r
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(_) => vec![message_id],
        }
    }

    async fn queued(&self, token: &str, body: Value) -> String {
        let created = self.create(token, body, None).await;
        assert_eq!(created.status, 202, "{}", created.body);
        created.body["tts"]["id"].as_str().unwrap().to_owned()
    }

    /// Runs the worker on job `id` directly, with a chosen deadline and the first delivery.
    async fn process(&self, id: &str, deadline_ms: u64) -> Result<Advance, String> {
        let job = TtsJob {
            tts_id: id.parse().unwrap(),
        };
        let delivery = Delivery {
            message_id: Some(Uuid::new_v4().to_string()),
            receive_count: 1,
        };
        self.worker
            .process(&job, &delivery, deadline_ms)
            .await
            .map_err(|e| e.0)
    }

    /// `(status, synth_started_at IS NOT NULL, error, object_key)` straight from the table.
    async fn row(&self, id: &str) -> (String, bool, Option<String>, Option<String>) {
        let r = self
            .db
            .client
            .query_one(
                "SELECT status, synth_started_at IS NOT NULL, error, object_key
                     FROM tts_jobs WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    }

    /// The state a delivery leaves when it dies after its checkpoint: `processing`, synthesis started.
    async fn checkpointed(&self, id: &str, age: &str) {
        self.db
            .client
            .execute(
                "UPDATE tts_jobs SET status = 'processing', synth_started_at = now() - $2::text::interval,
                                     updated_at = now() - $2::text::interval
                 WHERE id = $1::text::uuid",
                &[&id, &age],
            )
            .await
            .unwrap();
    }

    fn storage(&self) -> Storage {
        Storage::new(self.app.settings.storage.as_ref().unwrap())
    }

    async fn vendor_calls(&self) -> usize {
        self.vendor.received_requests().await.unwrap().len()
    }
}

fn speech_body() -> Value {
    json!({
        "text": "Your call is important to us.",
        "voice_id": VOICE,
        "model_id": "eleven_flash_v2_5",
        "output_format": "wav_16000",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1}
    })
}

async fn mount_speech(vendor: &MockServer, audio: &[u8], times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .and(query_param("output_format", "wav_16000"))
        .and(header("xi-api-key", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "text": "Your call is important to us.",
            "model_id": "eleven_flash_v2_5",
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1}
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "audio/wav")
                .insert_header("request-id", "req_9f8e7d")
                .set_body_bytes(audio.to_vec()),
        )
        .expect(times)
        .mount(vendor)
        .await;
}

fn el_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"detail": {"status": code, "message": message}}))
}

#[tokio::test]
async fn speech_is_synthesized_stored_and_downloadable_byte_for_byte() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("speak@example.com", 3600).await;
    let audio = shared::platform::audio::tone_wav(0.4, 16_000);
    mount_speech(&c.vendor, &audio, 1).await;
    let created = c.create(&token, speech_body(), Some("tts-1")).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let t = &created.body["tts"];
    assert_eq!(t["status"], "queued");
    assert_eq!(t["characters"], 29);
    let id = t["id"].as_str().unwrap().to_owned();

    assert!(c.deliver(&id, 1).await.is_empty());
    let got = c.get(&token, &id).await;
    assert_eq!(got.status, 200);
    let t = &got.body["tts"];
    assert_eq!(t["status"], "completed", "{}", got.body);
    assert_eq!(t["content_type"], "audio/wav");
    assert_eq!(t["size_bytes"], audio.len());
    assert_eq!(t["error"], Value::Null);
    let url = t["audio_url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/users/{user}/tts/{id}.wav")),
        "{url}"
    );
    // A download link, like recordings': the file is saved as speech-<id>.wav.
    let disposition =
        format!("attachment; filename=\"speech-{id}.wav\"; filename*=UTF-8''speech-{id}.wav");
    let query: Vec<(String, String)> = reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert!(
        query.contains(&(
            "response-content-disposition".to_owned(),
            disposition.clone()
        )),
        "{url}"
    );
    let downloaded = reqwest::get(url).await.unwrap();
    assert_eq!(downloaded.headers()["content-type"], "audio/wav");
    assert_eq!(
        downloaded.headers()["content-disposition"],
        disposition.as_str()
    );
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), audio);
    let row =
        c.db.client
            .query_one(
                "SELECT text, vendor_request_id FROM tts_jobs WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0),
        None,
        "the text is not kept"
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("req_9f8e7d")
    );

    // The same request again under the same key is the same job; a redelivery pays nothing.
    let replay = c.create(&token, speech_body(), Some("tts-1")).await;
    assert_eq!(replay.body["tts"]["id"], id.as_str());
    assert!(c.deliver(&id, 2).await.is_empty());
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_duplicate_delivery_pays_once() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("dup-tts@example.com", 3600).await;
    mount_speech(
        &c.vendor,
        &shared::platform::audio::tone_wav(0.2, 16_000),
        1,
    )
    .await;
    let id = c.queued(&token, speech_body()).await;
    let (a, b) = tokio::join!(c.deliver(&id, 1), c.deliver(&id, 1));
    assert!(a.is_empty() || b.is_empty());
    c.deliver(&id, 1).await;
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "completed");
    c.vendor.verify().await;
}

/// The exact request every attempt of [`speech_body`] must be.
async fn assert_every_call_is_the_documented_request(vendor: &MockServer) {
    for r in vendor.received_requests().await.unwrap() {
        assert_eq!(r.url.path(), format!("/v1/text-to-speech/{VOICE}"));
        assert_eq!(r.url.query(), Some("output_format=wav_16000"));
        assert_eq!(r.headers["xi-api-key"], KEY);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["text"], "Your call is important to us.");
    }
}

#[tokio::test]
async fn a_full_plan_is_waited_out_past_the_retry_limit_in_one_delivery() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("full-plan@example.com", 3600).await;
    // Six refusals: more attempts than backoff allows (five), so only the slot wait can get past them.
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(el_error(
            429,
            "too_many_concurrent_requests",
            "Too many concurrent requests.",
        ))
        .up_to_n_times(6)
        .expect(6)
        .with_priority(1)
        .mount(&c.vendor)
        .await;
    mount_speech(
        &c.vendor,
        &shared::platform::audio::tone_wav(0.2, 16_000),
        1,
    )
    .await;
    let id = c.queued(&token, speech_body()).await;
    assert!(c.deliver(&id, 1).await.is_empty(), "one delivery finishes");
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "completed");
    assert_eq!(c.vendor_calls().await, 7);
    assert_every_call_is_the_documented_request(&c.vendor).await;
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_busy_system_is_backed_off_a_bounded_number_of_times_then_redelivered() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("busy@example.com", 3600).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(el_error(429, "system_busy", "The system is busy."))
        .up_to_n_times(5)
        .expect(5)
        .with_priority(1)
        .mount(&c.vendor)
        .await;
    mount_speech(
        &c.vendor,
        &shared::platform::audio::tone_wav(0.2, 16_000),
        1,
    )
    .await;
    let id = c.queued(&token, speech_body()).await;
    // Five backed-off attempts, then the delivery gives the job back: nothing was paid.
    assert_eq!(c.deliver(&id, 1).await.len(), 1);
    assert_eq!(c.vendor_calls().await, 5);
    assert_eq!(c.row(&id).await, ("queued".to_owned(), false, None, None));
    assert!(c.deliver(&id, 2).await.is_empty());
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "completed");
    assert_eq!(c.vendor_calls().await, 6);
    assert_every_call_is_the_documented_request(&c.vendor).await;
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_synthesis_is_not_started_without_time_to_finish() {
    // An attempt may take 100 s (+10 s to store), and the delivery has 65 s: enough for the batch
    // runner to start the record (60 s), not for a paid attempt.
    let c = ctx(&[("ELEVENLABS_TIMEOUT_MS", "100000")]).await;
    let (_, token) = c.db.session("late@example.com", 3600).await;
    let id = c.queued(&token, speech_body()).await;
    let soon = || shared::platform::lambda::now_ms() + 65_000;
    assert_eq!(
        c.deliver_by(&id, 1, soon()).await.len(),
        1,
        "left for redelivery"
    );
    assert_eq!(c.row(&id).await, ("queued".to_owned(), false, None, None));
    // On the last delivery the job fails, saying no request was made.
    assert_eq!(c.deliver_by(&id, 5, soon()).await.len(), 1);
    let (status, _, error, _) = c.row(&id).await;
    assert_eq!(status, "failed");
    // The cause ("not started … nothing was sent") is in the log line; the row holds the code.
    assert_eq!(error.as_deref(), Some("vendor_unavailable"));
    assert_eq!(c.vendor_calls().await, 0);
}

#[tokio::test]
async fn no_attempt_starts_after_a_slot_wait_that_leaves_too_little_time() {
    // An attempt needs its 1 s timeout plus 10 s for storing; a slot wait is at least 750 ms.
    let c = ctx(&[("ELEVENLABS_TIMEOUT_MS", "1000")]).await;
    let (_, token) = c.db.session("slot-late@example.com", 3600).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(el_error(
            429,
            "too_many_concurrent_requests",
            "Too many concurrent requests.",
        ))
        .mount(&c.vendor)
        .await;
    let id = c.queued(&token, speech_body()).await;
    // 11.74 s: the first attempt fits, and no second one can after any slot wait.
    let retry = c
        .process(&id, shared::platform::lambda::now_ms() + 11_740)
        .await
        .unwrap_err();
    assert!(retry.contains("429"), "{retry}");
    assert_eq!(c.vendor_calls().await, 1);
    assert_eq!(c.row(&id).await, ("queued".to_owned(), false, None, None));
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_job_with_the_vendor_message() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("nope@example.com", 3600).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(el_error(
            404,
            "voice_not_found",
            "A voice with the voice_id was not found.",
        ))
        .expect(1)
        .mount(&c.vendor)
        .await;
    let id = c.queued(&token, speech_body()).await;
    assert!(c.deliver(&id, 1).await.is_empty(), "no retry for a 4xx");
    let t = c.get(&token, &id).await.body["tts"].clone();
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "vendor_rejected");
    assert!(!t.to_string().contains("voice_id was not found"), "{t}");
    assert_eq!(t["audio_url"], Value::Null);
    c.vendor.verify().await;
}

#[tokio::test]
async fn an_outage_ends_failed_on_the_last_delivery() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("outage@example.com", 3600).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(el_error(503, "service_unavailable", "Service unavailable"))
        .mount(&c.vendor)
        .await;
    let id = c.queued(&token, speech_body()).await;
    assert_eq!(c.deliver(&id, 1).await.len(), 1);
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "queued");
    assert_eq!(
        c.deliver(&id, 5).await.len(),
        1,
        "the message goes on to the DLQ"
    );
    let t = c.get(&token, &id).await.body["tts"].clone();
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "vendor_unavailable");
    assert!(!t.to_string().contains("Service unavailable"), "{t}");
}

#[tokio::test]
async fn an_interrupted_synthesis_is_never_paid_twice() {
    let c = ctx(&[("ELEVENLABS_TIMEOUT_MS", "1000")]).await;
    let (_, token) = c.db.session("slow@example.com", 3600).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "audio/wav")
                .set_body_bytes(shared::platform::audio::tone_wav(0.2, 16_000))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    let id = c.queued(&token, speech_body()).await;
    assert!(c.deliver(&id, 1).await.is_empty());
    assert!(c.deliver(&id, 2).await.is_empty());
    let t = c.get(&token, &id).await.body["tts"].clone();
    assert_eq!(t["status"], "failed");
    // A timeout after the request left may have been billed: not repeated, reported as interrupted.
    assert_eq!(t["error"]["code"], "interrupted");
    assert!(!t.to_string().contains("did not answer"), "{t}");
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_delivery_that_died_after_its_checkpoint_is_failed_as_interrupted() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("crashed@example.com", 3600).await;
    let id = c.queued(&token, speech_body()).await;
    // The dead delivery's checkpoint, and its lease, which ran out at its deadline.
    c.checkpointed(&id, "3 minutes").await;
    let lease = c
        .app
        .idempotency
        .claim(SYNTH_SCOPE, &id, &json!({ "tts_id": id }), 0)
        .await
        .unwrap();
    assert!(matches!(lease, Claim::Acquired(_)));
    c.db.client
        .execute(
            "UPDATE idempotency_records SET in_progress_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert!(c.deliver(&id, 2).await.is_empty());
    let (status, started, error, key) = c.row(&id).await;
    assert_eq!((status.as_str(), started, key), ("failed", true, None));
    assert_eq!(error.as_deref(), Some("interrupted"));
    assert_eq!(c.vendor_calls().await, 0, "never paid twice");
    // Later deliveries find it final.
    assert!(c.deliver(&id, 3).await.is_empty());
    assert_eq!(c.vendor_calls().await, 0);
}

#[tokio::test]
async fn audio_stored_before_a_lost_update_completes_the_job_without_paying_again() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("recover@example.com", 3600).await;
    let id = c.queued(&token, speech_body()).await;
    // A delivery stored the audio at the job's key and died before recording it, two hours ago.
    c.checkpointed(&id, "2 hours").await;
    let audio = shared::platform::audio::tone_wav(0.3, 16_000);
    let key = format!("users/{user}/tts/{id}.wav");
    assert_eq!(
        key,
        shared::domain::speech::jobs::audio_key(
            shared::domain::UserId::new(user),
            id.parse().unwrap(),
            OutputFormat::parse("wav_16000").unwrap()
        )
    );
    assert!(
        c.storage()
            .put_new(&key, audio.clone().into(), "audio/wav")
            .await
            .unwrap()
    );
    // Its message is gone with it; the reconciler sends a new one.
    assert_eq!(c.worker.reconcile(10).await.unwrap(), 1);
    assert!(c.deliver(&id, 1).await.is_empty());
    let t = c.get(&token, &id).await.body["tts"].clone();
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["size_bytes"], audio.len());
    assert_eq!(t["content_type"], "audio/wav");
    assert_eq!(t["error"], Value::Null);
    let downloaded = reqwest::get(t["audio_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), audio);
    assert_eq!(c.vendor_calls().await, 0, "the audio was paid for once");
}

/// Answers with audio only after the job was failed elsewhere, as if another writer settled it first.
struct AfterTheJobFailed {
    db_url: String,
    id: String,
}

impl wiremock::Respond for AfterTheJobFailed {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let (url, id) = (self.db_url.clone(), self.id.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    parley_tests::connect(&url)
                        .await
                        .execute(
                            "UPDATE tts_jobs SET status = 'failed', error = 'settled elsewhere'
                             WHERE id = $1::text::uuid",
                            &[&id],
                        )
                        .await
                        .unwrap();
                })
        })
        .join()
        .unwrap();
        ResponseTemplate::new(200)
            .insert_header("content-type", "audio/wav")
            .set_body_bytes(shared::platform::audio::tone_wav(0.2, 16_000))
    }
}

#[tokio::test]
async fn a_job_settled_elsewhere_is_not_reported_completed() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("settled@example.com", 3600).await;
    let id = c.queued(&token, speech_body()).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/text-to-speech/{VOICE}")))
        .respond_with(AfterTheJobFailed {
            db_url: c.db.url.clone(),
            id: id.clone(),
        })
        .expect(1)
        .mount(&c.vendor)
        .await;
    let outcome = c
        .process(&id, shared::platform::lambda::now_ms() + 120_000)
        .await;
    assert_eq!(outcome, Ok(Advance::AlreadyFinal));
    let (status, _, error, key) = c.row(&id).await;
    assert_eq!(
        (status.as_str(), error.as_deref(), key),
        ("failed", Some("settled elsewhere"), None)
    );
    c.vendor.verify().await;
}

#[tokio::test]
async fn the_last_delivery_leaves_a_job_another_delivery_is_synthesizing() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("held@example.com", 3600).await;
    let id = c.queued(&token, speech_body()).await;
    // A live delivery holds the lease until its deadline, past its checkpoint.
    let holder = c
        .app
        .idempotency
        .claim(
            SYNTH_SCOPE,
            &id,
            &json!({ "tts_id": id }),
            shared::platform::lambda::now_ms() + 120_000,
        )
        .await
        .unwrap();
    assert!(matches!(holder, Claim::Acquired(_)));
    c.checkpointed(&id, "1 second").await;
    assert_eq!(c.deliver(&id, 5).await.len(), 1, "the retry is returned");
    assert_eq!(
        c.row(&id).await,
        ("processing".to_owned(), true, None, None),
        "not failed under the holder"
    );
    assert_eq!(c.vendor_calls().await, 0);
}

#[tokio::test]
async fn every_field_is_validated_and_named() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("valid@example.com", 3600).await;
    let with = |patch: Value| {
        let mut body = json!({"text": "Hello", "voice_id": VOICE});
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (json!({"text": ""}), "text"),
        (json!({"text": "   "}), "text"),
        (json!({"text": "a".repeat(10_001)}), "text"),
        (
            json!({"text": "a".repeat(40_001), "model_id": "eleven_flash_v2_5"}),
            "text",
        ),
        (json!({"text": "Hello\u{0}world"}), "text"),
        (json!({"text": "Hello \u{1b}[31m"}), "text"),
        (json!({"voice_id": "../v1/voices"}), "voice_id"),
        (json!({"voice_id": "abc/def"}), "voice_id"),
        (json!({"voice_id": ""}), "voice_id"),
        (json!({"voice_id": "a".repeat(65)}), "voice_id"),
        (json!({"output_format": "mp3_44100_129"}), "output_format"),
        (json!({"output_format": "flac_44100"}), "output_format"),
        (json!({"model_id": "eleven_v9"}), "model_id"),
        (
            json!({"voice_settings": {"stability": 1.5}}),
            "voice_settings.stability",
        ),
        (
            json!({"voice_settings": {"similarity_boost": -0.1}}),
            "voice_settings.similarity_boost",
        ),
        (
            json!({"voice_settings": {"style": 2}}),
            "voice_settings.style",
        ),
        (
            json!({"voice_settings": {"speed": 2.0}}),
            "voice_settings.speed",
        ),
        (
            json!({"voice_settings": {"speed": 0.69}}),
            "voice_settings.speed",
        ),
        // JSON that parses but does not fit the request names the field too.
        (json!({"speed": 1}), "speed"),
        (json!({"text": 5}), "text"),
    ];
    for (patch, field) in cases {
        let answer = c.create(&token, with(patch.clone()), None).await;
        answer.assert_problem(422, "validation-failed");
        assert_eq!(answer.body["errors"][0]["field"], field, "{patch}");
    }
    let missing = c.create(&token, json!({"voice_id": VOICE}), None).await;
    missing.assert_problem(422, "validation-failed");
    assert_eq!(missing.body["errors"][0]["field"], "text");
    // A NUL names the character rather than failing the insert.
    let nul = c
        .create(&token, with(json!({"text": "Hi\u{0}"})), None)
        .await;
    assert!(
        nul.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("U+0000"),
        "{}",
        nul.body
    );

    // Uncompressed audio is capped by size: 40,000 characters of 44.1 kHz WAV could pass 200 MB.
    let wav = c
        .create(
            &token,
            with(json!({"text": "a".repeat(40_000), "model_id": "eleven_turbo_v2_5", "output_format": "wav_44100"})),
            None,
        )
        .await;
    wav.assert_problem(422, "validation-failed");
    assert_eq!(wav.body["errors"][0]["field"], "text");
    let message = wav.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("wav_44100") && message.contains("at most 28532"),
        "{message}"
    );

    // The limits themselves are accepted, and the default format is mp3_44100_128.
    let ok = c
        .create(
            &token,
            with(json!({"text": "a".repeat(40_000), "model_id": "eleven_turbo_v2_5"})),
            None,
        )
        .await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert_eq!(ok.body["tts"]["output_format"], "mp3_44100_128");
    assert_eq!(ok.body["tts"]["content_type"], "audio/mpeg");
    let wav_at_limit = c
        .create(
            &token,
            with(json!({"text": "a".repeat(28_532), "model_id": "eleven_turbo_v2_5", "output_format": "wav_44100"})),
            None,
        )
        .await;
    assert_eq!(wav_at_limit.status, 202, "{}", wav_at_limit.body);
    let multilingual = c
        .create(&token, with(json!({"text": "a".repeat(10_000)})), None)
        .await;
    assert_eq!(multilingual.status, 202, "{}", multilingual.body);
    assert_eq!(
        multilingual.body["tts"]["model_id"],
        "eleven_multilingual_v2"
    );
    assert_eq!(multilingual.body["tts"]["characters"], 10_000);
    let edges = c
        .create(
            &token,
            with(json!({"text": "Line one,\r\n\tline two.", "voice_id": "a".repeat(64), "voice_settings": {"speed": 0.7}})),
            None,
        )
        .await;
    assert_eq!(edges.status, 202, "{}", edges.body);
    let count: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM tts_jobs", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 4, "nothing invalid was stored");
}

#[tokio::test]
async fn an_idempotency_key_refuses_another_body_and_a_repeat_in_progress() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("idem-tts@example.com", 3600).await;
    let first = c.create(&token, speech_body(), Some("say-1")).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let mut other = speech_body();
    other["text"] = json!("Something else entirely.");
    let refused = c.create(&token, other, Some("say-1")).await;
    refused.assert_problem(422, "validation-failed");
    assert_eq!(refused.body["errors"][0]["field"], "Idempotency-Key");

    // While the first request with a key is still running, a repeat is 409.
    let running = c
        .app
        .idempotency
        .claim(
            &format!("tts-create:{user}"),
            "say-2",
            &speech_body(),
            shared::platform::lambda::now_ms() + 60_000,
        )
        .await
        .unwrap();
    assert!(matches!(running, Claim::Acquired(_)));
    c.create(&token, speech_body(), Some("say-2"))
        .await
        .assert_problem(409, "conflict");
    let count: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM tts_jobs", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 1, "one job for the three requests");
}

#[tokio::test]
async fn speech_answers_its_owner_only() {
    let c = ctx(&[]).await;
    let (_, alice) = c.db.session("alice-tts@example.com", 3600).await;
    let (_, mallory) = c.db.session("mallory-tts@example.com", 3600).await;
    let id = c.queued(&alice, speech_body()).await;
    c.get(&mallory, &id).await.assert_problem(404, "not-found");
    c.get(&alice, "nope").await.assert_problem(404, "not-found");
    let anon = Event::new("GET", &format!("/api/tts/{id}"))
        .path_param("id", &id)
        .request();
    Answer::from_response(
        c.app
            .http
            .serve(anon, |req| tts_get::handle(&c.app, &c.jobs, req))
            .await
            .unwrap(),
    )
    .assert_problem(401, "unauthenticated");
    let anon_create = Event::new("POST", "/api/tts")
        .header("content-type", "application/json")
        .body(&speech_body().to_string())
        .request();
    Answer::from_response(
        c.app
            .http
            .serve(anon_create, |req| tts_create::handle(&c.app, &c.jobs, req))
            .await
            .unwrap(),
    )
    .assert_problem(401, "unauthenticated");
    assert_eq!(c.get(&alice, &id).await.status, 200);
}

#[tokio::test]
async fn a_json_array_is_not_a_speech_request() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("array-tts@example.com", 3600).await;
    let answer = c
        .create(&token, json!(["Hello from an array", "abc"]), None)
        .await;
    answer.assert_problem(422, "validation-failed");
    assert_eq!(answer.body["errors"][0]["field"], "body");
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM tts_jobs", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0, "nothing was queued");
}
