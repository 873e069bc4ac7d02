//! Speech jobs against real PostgreSQL, moto_server (S3 + SQS) and wiremock playing ElevenLabs,
//! asserting the exact request vendors.md §2 documents (path, query, headers, JSON body).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use parley_tests::{Answer, Event, Moto, TestDb, borrow};
use serde_json::{Value, json};
use shared::App;
use shared::local::{self, Route};
use shared::tts::jobs::{TtsJobs, TtsWorker};
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

async fn ctx(extra: &[(&str, &str)]) -> Ctx {
    let moto = Moto::start().await;
    let vendor = MockServer::start().await;
    let sqs = local::sqs_client(&moto.endpoint);
    let route = local::ensure_queue(
        &sqs,
        &format!("tts-{}", &Uuid::new_v4().simple().to_string()[..10]),
        "tts-worker",
        1,
        5,
    )
    .await
    .unwrap();
    let db = TestDb::create().await;
    let owned = moto.bucket_env().await;
    let mut env = borrow(&owned);
    let uri = vendor.uri();
    env.extend_from_slice(&[
        ("ELEVENLABS_API_KEY", KEY),
        ("ELEVENLABS_BASE_URL", uri.as_str()),
        ("TTS_QUEUE_URL", route.queue_url.as_str()),
    ]);
    env.extend_from_slice(extra);
    let app = App::from_settings("tts", db.settings(&env));
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
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
        let message_id = Uuid::new_v4().to_string();
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": message_id,
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": json!({"tts_id": id}).to_string(),
            "attributes": {
                "ApproximateReceiveCount": receive_count.to_string(),
                "SentTimestamp": "1795316400000",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1795316400001"
            },
            "messageAttributes": {},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": self.route.queue_arn,
            "awsRegion": "us-east-1"
        }]}))
        .unwrap();
        let mut context = lambda_runtime::Context::default();
        context.deadline = shared::vendor::now_ms() + 120_000;
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
    let audio = shared::audio::tone_wav(0.4, 16_000);
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
    let downloaded = reqwest::get(url).await.unwrap();
    assert_eq!(downloaded.headers()["content-type"], "audio/wav");
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
    mount_speech(&c.vendor, &shared::audio::tone_wav(0.2, 16_000), 1).await;
    let id = c.queued(&token, speech_body()).await;
    let (a, b) = tokio::join!(c.deliver(&id, 1), c.deliver(&id, 1));
    assert!(a.is_empty() || b.is_empty());
    c.deliver(&id, 1).await;
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "completed");
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_full_plan_waits_for_a_slot_and_a_busy_system_backs_off() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("busy@example.com", 3600).await;
    for (code, priority) in [("too_many_concurrent_requests", 1u8), ("system_busy", 2)] {
        Mock::given(method("POST"))
            .and(path(format!("/v1/text-to-speech/{VOICE}")))
            .respond_with(el_error(429, code, "Try again later."))
            .up_to_n_times(1)
            .expect(1)
            .with_priority(priority)
            .mount(&c.vendor)
            .await;
    }
    mount_speech(&c.vendor, &shared::audio::tone_wav(0.2, 16_000), 1).await;
    let id = c.queued(&token, speech_body()).await;
    assert!(c.deliver(&id, 1).await.is_empty());
    assert_eq!(c.get(&token, &id).await.body["tts"]["status"], "completed");
    c.vendor.verify().await;
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
    assert_eq!(
        t["error"],
        "ElevenLabs refused the job (404): A voice with the voice_id was not found."
    );
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
    assert!(t["error"].as_str().unwrap().contains("Service unavailable"));
    assert!(!t["error"].as_str().unwrap().contains(KEY));
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
                .set_body_bytes(shared::audio::tone_wav(0.2, 16_000))
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
    assert!(t["error"].as_str().unwrap().contains("not repeated"), "{t}");
    c.vendor.verify().await;
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
        (json!({"voice_id": "../v1/voices"}), "voice_id"),
        (json!({"voice_id": "abc/def"}), "voice_id"),
        (json!({"voice_id": ""}), "voice_id"),
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
    ];
    for (patch, field) in cases {
        let answer = c.create(&token, with(patch.clone()), None).await;
        answer.assert_problem(422, "validation-failed");
        assert_eq!(answer.body["errors"][0]["field"], field, "{patch}");
    }
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
    c.create(&token, with(json!({"speed": 1})), None)
        .await
        .assert_problem(400, "malformed-request");
    let count: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM tts_jobs", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 1, "nothing invalid was stored");
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
