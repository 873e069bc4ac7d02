//! Transcription jobs against real PostgreSQL, moto_server (S3 + SQS) and wiremock playing
//! AssemblyAI, which asserts the exact requests AssemblyAI documents. Handlers get real API
//! Gateway v2 events; the worker gets real SQS events received from the moto queue.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use parley_tests::{Answer, Event, Moto, TestDb, TestStack, bearer, events};
use serde_json::{Value, json};
use shared::App;
use shared::domain::transcriptions::{TranscriptionWorker, Transcriptions};
use shared::local::{self, Route};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "aai-test-key-0123456789abcdef";
const BACKEND: &str = "https://api.parley.test";

struct Ctx {
    db: TestDb,
    app: App,
    transcriptions: Transcriptions,
    worker: TranscriptionWorker,
    sqs: aws_sdk_sqs::Client,
    route: Route,
    vendor: MockServer,
    bucket: String,
    _moto: Moto,
}

async fn ctx() -> Ctx {
    ctx_with(&[]).await
}

async fn ctx_with(extra: &[(&'static str, &str)]) -> Ctx {
    let TestStack {
        db,
        app,
        sqs,
        queue,
        vendor,
        bucket,
        moto,
    } = TestStack::builder("transcriptions")
        .queue("t", "transcription-worker", "TRANSCRIPTION_QUEUE_URL")
        .vendor(&["ASSEMBLYAI_BASE_URL", "ASSEMBLYAI_STREAMING_BASE_URL"])
        .env(&[
            ("ASSEMBLYAI_API_KEY", KEY),
            ("BACKEND_URL", BACKEND),
            ("VENDOR_TIMEOUT_MS", "1000"),
        ])
        .env(extra)
        .build()
        .await;
    let route = queue.expect("built with a queue");
    let transcriptions = app.transcriptions(sqs.clone()).unwrap();
    let worker = app.transcription_worker(sqs.clone()).unwrap();
    Ctx {
        db,
        app,
        transcriptions,
        worker,
        sqs,
        route,
        vendor,
        bucket,
        _moto: moto,
    }
}

fn far_deadline() -> u64 {
    shared::platform::lambda::now_ms() + 60_000
}

/// AssemblyAI's documented create body, with the presigned audio URL checked by shape.
struct CreateBody {
    expected: Value,
    audio_prefix: String,
}

impl Match for CreateBody {
    fn matches(&self, request: &Request) -> bool {
        let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
            return false;
        };
        let Some(audio) = body
            .as_object_mut()
            .and_then(|o| o.remove("audio_url"))
            .and_then(|v| v.as_str().map(str::to_owned))
        else {
            return false;
        };
        audio.starts_with(&self.audio_prefix)
            && audio.contains("X-Amz-Expires=86400")
            && audio.contains("X-Amz-Signature=")
            && body == self.expected
    }
}

fn transcript(id: &str, status: &str, webhook_url: &str) -> Value {
    let mut t = json!({
        "id": id,
        "status": status,
        "audio_url": "https://r2.example/x.wav",
        "webhook_url": webhook_url,
        "webhook_auth": true,
        "webhook_auth_header_name": "X-Parley-Webhook-Secret",
        "language_code": "en_us",
        "text": null, "words": null, "utterances": null, "confidence": null, "audio_duration": null
    });
    if status == "completed" {
        t["text"] = json!("Hello there. General Kenobi.");
        t["words"] = json!([
            {"text": "Hello", "start": 240, "end": 560, "confidence": 0.98, "speaker": "A"},
            {"text": "there.", "start": 560, "end": 900, "confidence": 0.97, "speaker": "A"},
            {"text": "General", "start": 1200, "end": 1600, "confidence": 0.95, "speaker": "B"},
            {"text": "Kenobi.", "start": 1600, "end": 2100, "confidence": 0.91, "speaker": "B"}
        ]);
        t["utterances"] = json!([
            {"speaker": "A", "text": "Hello there.", "start": 240, "end": 900, "confidence": 0.975, "words": []},
            {"speaker": "B", "text": "General Kenobi.", "start": 1200, "end": 2100, "confidence": 0.93, "words": []}
        ]);
        t["confidence"] = json!(0.9525);
        t["audio_duration"] = json!(2.5);
    }
    if status == "error" {
        t["error"] = json!("Download error, unable to download https://r2.example/x.wav");
    }
    t
}

impl Ctx {
    /// A user with a session and a `ready` recording (the recordings flow is tested elsewhere).
    async fn user_with_recording(&self, email: &str) -> (String, Uuid) {
        let (user, token) = self.db.session(email, 3600).await;
        let id = Uuid::now_v7();
        self.db
            .client
            .execute(
                "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes, size_bytes, duration_seconds)
                 VALUES ($1, $2, $3, 'ready', 'audio/wav', 44, 44, 2.5)",
                &[&id, &user, &format!("users/{user}/recordings/{id}.wav")],
            )
            .await
            .unwrap();
        (token, id)
    }

    async fn call(&self, function: &str, event: Event) -> Answer {
        let req = event.request();
        let app = &self.app;
        let t = &self.transcriptions;
        let response = match function {
            "create" => {
                app.http
                    .serve(req, |req| transcriptions_create::handle(app, t, req))
                    .await
            }
            "list" => {
                app.http
                    .serve(req, |req| transcriptions_list::handle(app, t, req))
                    .await
            }
            "get" => {
                app.http
                    .serve(req, |req| transcriptions_get::handle(app, t, req))
                    .await
            }
            "webhook" => {
                let queue =
                    shared::platform::queue::JobQueue::new(self.sqs.clone(), &self.route.queue_url);
                let signer = app.callback_signer().unwrap();
                app.http
                    .serve(req, |req| {
                        assemblyai_webhook::handle(app, &queue, &signer, req)
                    })
                    .await
            }
            "token" => {
                let aai = app.assemblyai().unwrap();
                app.http
                    .serve(req, |req| realtime_token::handle(app, &aai, req))
                    .await
            }
            other => panic!("no function {other}"),
        };
        Answer::from_response(response.unwrap())
    }

    async fn create(&self, token: &str, recording: Uuid, body: Value, key: Option<&str>) -> Answer {
        let mut event = Event::new(
            "POST",
            &format!("/api/recordings/{recording}/transcriptions"),
        )
        .path_param("id", &recording.to_string())
        .header("authorization", &bearer(token))
        .header("content-type", "application/json")
        .body(&body.to_string());
        if let Some(key) = key {
            event = event.header("idempotency-key", key);
        }
        self.call("create", event).await
    }

    /// Creates a transcription with default options and returns its id.
    async fn queued(&self, token: &str, recording: Uuid) -> String {
        let created = self.create(token, recording, json!({}), None).await;
        assert_eq!(created.status, 202, "{}", created.body);
        created.body["transcription"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn get(&self, token: &str, id: &str) -> Answer {
        self.call(
            "get",
            Event::new("GET", &format!("/api/transcriptions/{id}"))
                .path_param("id", id)
                .header("authorization", &bearer(token)),
        )
        .await
    }

    async fn webhook(&self, id: &str, secret: Option<&str>, body: Value) -> Answer {
        let mut event = Event::new("POST", "/webhooks/assemblyai")
            .query(&format!("transcription_id={id}"))
            .header("content-type", "application/json")
            .body(&body.to_string());
        if let Some(secret) = secret {
            event = event.header("x-parley-webhook-secret", secret);
        }
        self.call("webhook", event).await
    }

    /// Receives what is on the queue and runs the worker on it as Lambda would, deleting what
    /// succeeded (what the event source mapping does). Returns the failed message ids.
    async fn drain(&self, deadline_ms: u64) -> (usize, Vec<String>) {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.route.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages().to_vec();
        if messages.is_empty() {
            return (0, Vec::new());
        }
        let event: SqsEvent =
            serde_json::from_value(local::sqs_event(&messages, &self.route.queue_arn)).unwrap();
        let failed = self.run_worker(event, deadline_ms).await;
        for m in &messages {
            if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.route.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        (messages.len(), failed)
    }

    /// Drains until the queue is empty: SQS may hand over fewer messages than it holds.
    /// Delivers until the queue holds nothing, in flight included: a delivery that failed leaves
    /// its message invisible for the queue's visibility timeout (1 s), and on a busy machine a
    /// receive can come back empty while one is. A message that keeps failing reaches the DLQ.
    async fn drain_all(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.drain(far_deadline()).await.0 > 0 {
                continue;
            }
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.route.queue_url)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                .send()
                .await
                .unwrap();
            let waiting: u64 = attributes
                .attributes()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum();
            if waiting == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the queue still holds {waiting} message(s)"
            );
        }
    }

    /// Runs the worker's Lambda handler; a whole-batch error reports every record as failed.
    async fn run_worker(&self, event: SqsEvent, deadline_ms: u64) -> Vec<String> {
        let ids: Vec<String> = event
            .records
            .iter()
            .map(|r| r.message_id.clone().unwrap())
            .collect();
        let mut context = lambda_runtime::Context::default();
        context.deadline = deadline_ms;
        match transcription_worker::handle(
            &self.worker,
            lambda_runtime::LambdaEvent::new(event, context),
        )
        .await
        {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(_) => ids,
        }
    }

    /// One SQS record delivering `body` for the `receive_count`th time.
    async fn deliver(&self, body: &Value, receive_count: u32) -> Vec<String> {
        let event = events::sqs_delivery(&body.to_string(), receive_count, &self.route.queue_arn);
        self.run_worker(event, far_deadline()).await
    }

    async fn row(&self, id: &str) -> tokio_postgres::Row {
        self.db
            .client
            .query_one(
                "SELECT status, vendor_transcript_id, error, message_sent_at IS NOT NULL, webhook_secret,
                        submit_started_at IS NOT NULL
                 FROM transcriptions WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
    }

    async fn secret(&self, id: &str) -> String {
        self.row(id).await.get(4)
    }

    async fn queue_depth(&self) -> usize {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.route.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        out.attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<usize>().unwrap())
            .sum()
    }

    /// The callback URL the worker gives AssemblyAI: the job id and its MAC.
    fn webhook_url(&self, id: &str) -> String {
        let sig = self
            .app
            .callback_signer()
            .unwrap()
            .sign(Uuid::parse_str(id).unwrap());
        format!("{BACKEND}/webhooks/assemblyai?transcription_id={id}&sig={sig}")
    }

    async fn mount_create(
        &self,
        id: &str,
        secret: &str,
        vendor_id: &str,
        options: Value,
        times: u64,
    ) {
        let mut expected = json!({
            "webhook_url": self.webhook_url(id),
            "webhook_auth_header_name": "X-Parley-Webhook-Secret",
            "webhook_auth_header_value": secret,
        });
        for (k, v) in options.as_object().unwrap() {
            expected[k] = v.clone();
        }
        Mock::given(method("POST"))
            .and(path("/v2/transcript"))
            .and(header("authorization", KEY))
            .and(header("content-type", "application/json"))
            .and(CreateBody {
                expected,
                audio_prefix: format!("{}/{}/users/", self._moto.endpoint, self.bucket),
            })
            .respond_with(ResponseTemplate::new(200).set_body_json(transcript(
                vendor_id,
                "queued",
                &self.webhook_url(id),
            )))
            .expect(times)
            .mount(&self.vendor)
            .await;
    }

    async fn mount_get(&self, id: &str, vendor_id: &str, status: &str) {
        Mock::given(method("GET"))
            .and(path(format!("/v2/transcript/{vendor_id}")))
            .and(header("authorization", KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(transcript(
                vendor_id,
                status,
                &self.webhook_url(id),
            )))
            .mount(&self.vendor)
            .await;
    }
}

#[tokio::test]
async fn a_transcription_goes_from_request_to_stored_transcript() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("ada@example.com").await;
    let created = c
        .create(
            &token,
            recording,
            json!({"language_code": "en_us", "speaker_labels": true, "speakers_expected": 2}),
            Some("req-1"),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let t = &created.body["transcription"];
    assert_eq!(t["status"], "queued");
    assert_eq!(t["recording_id"], recording.to_string());
    let id = t["id"].as_str().unwrap().to_owned();
    assert!(
        t.get("webhook_secret").is_none(),
        "the secret is never shown"
    );
    let row = c.row(&id).await;
    assert!(row.get::<_, bool>(3), "the message was sent and marked");
    let secret = c.secret(&id).await;
    assert!(secret.len() >= 43, "a 256-bit secret");

    let vendor_id = "5552493-16d8-42d8-8feb-c2a16b56f6e8";
    c.mount_create(
        &id,
        &secret,
        vendor_id,
        json!({"language_code": "en_us", "speaker_labels": true, "speakers_expected": 2}),
        1,
    )
    .await;
    let (n, failed) = c.drain(far_deadline()).await;
    assert_eq!((n, failed.len()), (1, 0));
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "processing");
    assert_eq!(row.get::<_, Option<&str>>(1), Some(vendor_id));
    assert_eq!(
        c.get(&token, &id).await.body["transcription"]["status"],
        "processing"
    );

    // AssemblyAI calls back; the webhook answers 200 and hands the job to the queue.
    c.mount_get(&id, vendor_id, "completed").await;
    let hook = c
        .webhook(
            &id,
            Some(&secret),
            json!({"transcript_id": vendor_id, "status": "completed"}),
        )
        .await;
    assert_eq!(hook.status, 200, "{}", hook.body);
    let (n, failed) = c.drain(far_deadline()).await;
    assert_eq!((n, failed.len()), (1, 0));

    let got = c.get(&token, &id).await;
    assert_eq!(got.status, 200);
    let t = &got.body["transcription"];
    assert_eq!(t["status"], "completed");
    assert_eq!(t["text"], "Hello there. General Kenobi.");
    assert_eq!(t["language_code"], "en_us");
    assert_eq!(t["audio_duration_seconds"], 2.5);
    // AssemblyAI's figure (2.5 s, rounded up) settled what the file's size held.
    assert_eq!(c.db.usage(&token, "transcription_seconds").await, (3, 0));
    assert_eq!(t["confidence"], 0.9525);
    assert_eq!(t["error"], Value::Null);
    assert_eq!(
        t["utterances"],
        json!([
            {"speaker": "A", "text": "Hello there.", "start": 240, "end": 900, "confidence": 0.975},
            {"speaker": "B", "text": "General Kenobi.", "start": 1200, "end": 2100, "confidence": 0.93}
        ])
    );
    assert_eq!(t["words"].as_array().unwrap().len(), 4);
    assert_eq!(
        t["words"][2],
        json!({"text": "General", "start": 1200, "end": 1600, "confidence": 0.95, "speaker": "B"})
    );

    // The recording lists it.
    let list = c
        .call(
            "list",
            Event::new(
                "GET",
                &format!("/api/recordings/{recording}/transcriptions"),
            )
            .path_param("id", &recording.to_string())
            .header("authorization", &bearer(&token)),
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"][0]["id"], id);
    assert_eq!(list.body["items"][0]["status"], "completed");
    assert!(list.body["items"][0].get("words").is_none());

    // A duplicate callback changes nothing and queues nothing.
    let again = c
        .webhook(
            &id,
            Some(&secret),
            json!({"transcript_id": vendor_id, "status": "completed"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(c.queue_depth().await, 0);
    // A duplicate delivery of any earlier message changes nothing either.
    assert!(
        c.deliver(&json!({"transcription_id": id}), 2)
            .await
            .is_empty()
    );
    assert_eq!(c.get(&token, &id).await.body, got.body);
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_duplicate_delivery_submits_once() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("dup@example.com").await;
    let id = c.queued(&token, recording).await;
    let secret = c.secret(&id).await;
    c.mount_create(&id, &secret, "tr-dup-1", json!({}), 1).await;
    let job = json!({"transcription_id": id});
    // Two deliveries at once (SQS at-least-once), then a redrive from the DLQ later.
    let (a, b) = tokio::join!(c.deliver(&job, 1), c.deliver(&job, 1));
    assert!(
        a.is_empty() || b.is_empty(),
        "one of the racing deliveries submits"
    );
    let redrive = c.deliver(&job, 1).await;
    assert!(redrive.is_empty());
    assert_eq!(c.row(&id).await.get::<_, Option<&str>>(1), Some("tr-dup-1"));
    c.vendor.verify().await;
}

#[tokio::test]
async fn forged_callbacks_change_nothing() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("forge@example.com").await;
    let id = c.queued(&token, recording).await;
    c.drain_without_vendor().await;
    let before = c.queue_depth().await;
    let body = json!({"transcript_id": "evil", "status": "completed"});
    c.webhook(&id, None, body.clone())
        .await
        .assert_problem(401, "invalid-callback-credentials");
    c.webhook(&id, Some("not-the-secret"), body.clone())
        .await
        .assert_problem(401, "invalid-callback-credentials");
    let secret = c.secret(&id).await;
    // The right secret for another job's id, and an id that does not exist.
    c.webhook(&Uuid::new_v4().to_string(), Some(&secret), body.clone())
        .await
        .assert_problem(401, "invalid-callback-credentials");
    let no_id = c
        .call(
            "webhook",
            Event::new("POST", "/webhooks/assemblyai")
                .header("content-type", "application/json")
                .header("x-parley-webhook-secret", &secret)
                .body(&body.to_string()),
        )
        .await;
    no_id.assert_problem(401, "invalid-callback-credentials");
    assert_eq!(c.queue_depth().await, before, "nothing was queued");
    assert_eq!(c.row(&id).await.get::<_, &str>(0), "queued");
    assert!(c.vendor.received_requests().await.unwrap().is_empty());
}

impl Ctx {
    /// Empties the queue without running the worker.
    async fn drain_without_vendor(&self) {
        self.sqs
            .purge_queue()
            .queue_url(&self.route.queue_url)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_throttled_submission_is_retried_after_retry_after() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("throttle@example.com").await;
    let id = c.queued(&token, recording).await;
    let secret = c.secret(&id).await;
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": "Too many requests"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&c.vendor)
        .await;
    c.mount_create(&id, &secret, "tr-429", json!({}), 1).await;
    let started = std::time::Instant::now();
    assert!(
        c.deliver(&json!({"transcription_id": id}), 1)
            .await
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(c.row(&id).await.get::<_, Option<&str>>(1), Some("tr-429"));
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_vendor_failing_forever_ends_failed_and_the_message_goes_to_the_dlq() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("down@example.com").await;
    let id = c.queued(&token, recording).await;
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": "Internal server error"})),
        )
        .mount(&c.vendor)
        .await;
    let job = json!({"transcription_id": id});
    for receive in 1..5 {
        let failed = c.deliver(&job, receive).await;
        assert_eq!(failed.len(), 1, "delivery {receive} is left for redelivery");
        let row = c.row(&id).await;
        assert_eq!(row.get::<_, &str>(0), "queued");
        assert!(
            !row.get::<_, bool>(5),
            "the checkpoint is undone: nothing was submitted"
        );
    }
    // The last delivery the queue allows: the job ends failed, and the message still fails (DLQ).
    let failed = c.deliver(&job, 5).await;
    assert_eq!(failed.len(), 1);
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "failed");
    // Only the code is stored; the vendor's words went to the log line.
    let error: String = row.get(2);
    assert_eq!(error, "vendor_unavailable");
    let got = c.get(&token, &id).await;
    assert_eq!(got.body["transcription"]["status"], "failed");
    assert_eq!(
        got.body["transcription"]["error"],
        json!({"code": "vendor_unavailable",
               "message": "the vendor stayed unavailable through every retry; request the job again later"})
    );
    assert!(!got.body.to_string().contains("Internal server error"));
}

#[tokio::test]
async fn the_queue_moves_a_message_to_the_dlq_after_five_receives() {
    // The real redrive, not our counting: moto enforces the queue's maxReceiveCount.
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("dlq@example.com").await;
    let id = c.queued(&token, recording).await;
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": "Service unavailable"})),
        )
        .mount(&c.vendor)
        .await;
    for _ in 0..5 {
        let (n, failed) = c.drain(far_deadline()).await;
        assert_eq!((n, failed.len()), (1, 1));
        tokio::time::sleep(Duration::from_millis(1100)).await; // visibility timeout is 1 s
    }
    assert_eq!(c.drain(far_deadline()).await.0, 0, "the queue is empty");
    let dlq_url = c.route.queue_url.replace(
        c.route.queue_url.rsplit('/').next().unwrap(),
        &format!("{}-dlq", c.route.queue_url.rsplit('/').next().unwrap()),
    );
    let dead = c
        .sqs
        .receive_message()
        .queue_url(dlq_url)
        .send()
        .await
        .unwrap();
    assert_eq!(dead.messages().len(), 1);
    assert!(dead.messages()[0].body().unwrap().contains(&id));
    assert_eq!(c.row(&id).await.get::<_, &str>(0), "failed");
}

#[tokio::test]
async fn a_vendor_error_status_fails_the_job_with_its_message() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("err@example.com").await;
    let id = c.queued(&token, recording).await;
    let secret = c.secret(&id).await;
    c.mount_create(&id, &secret, "tr-err", json!({}), 1).await;
    c.mount_get(&id, "tr-err", "error").await;
    assert!(
        c.deliver(&json!({"transcription_id": id}), 1)
            .await
            .is_empty()
    );
    assert_eq!(
        c.webhook(
            &id,
            Some(&secret),
            json!({"transcript_id": "tr-err", "status": "error"})
        )
        .await
        .status,
        200
    );
    c.drain(far_deadline()).await;
    let t = c.get(&token, &id).await.body["transcription"].clone();
    assert_eq!(t["status"], "failed");
    // AssemblyAI's message names a URL: it stays in the logs, the owner gets the fixed code.
    assert_eq!(t["error"]["code"], "audio_unreadable");
    assert_eq!(t["error"]["message"], "the audio could not be read");
    assert!(!t.to_string().contains("r2.example"), "{t}");
    assert_eq!(t["text"], Value::Null);
    // Nothing was transcribed, so the seconds held for it went back.
    assert_eq!(c.db.usage(&token, "transcription_seconds").await, (0, 0));
}

#[tokio::test]
async fn a_refused_submission_fails_at_once_with_a_fixed_code() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("bad@example.com").await;
    let id = c.queued(&token, recording).await;
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": "language_code is not supported"})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    assert!(
        c.deliver(&json!({"transcription_id": id}), 1)
            .await
            .is_empty(),
        "no retry for a 400"
    );
    let t = c.get(&token, &id).await.body["transcription"].clone();
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "vendor_rejected");
    assert!(
        !t.to_string().contains("language_code is not supported"),
        "{t}"
    );
    c.vendor.verify().await;
}

#[tokio::test]
async fn the_deadline_cut_off_leaves_records_untouched() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("late@example.com").await;
    for _ in 0..3 {
        c.create(&token, recording, json!({}), None).await;
    }
    // 5 s left, and a record needs 20 s: nothing starts, every record is reported.
    let (n, failed) = c.drain(shared::platform::lambda::now_ms() + 5_000).await;
    assert_eq!((n, failed.len()), (3, 3));
    assert!(c.vendor.received_requests().await.unwrap().is_empty());
    let statuses =
        c.db.client
            .query("SELECT status FROM transcriptions", &[])
            .await
            .unwrap();
    assert!(statuses.iter().all(|r| r.get::<_, &str>(0) == "queued"));
}

#[tokio::test]
async fn the_reconciler_recovers_a_missed_callback_and_an_unsent_job() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("recon@example.com").await;
    let id = c.queued(&token, recording).await;
    let secret = c.secret(&id).await;
    c.mount_create(&id, &secret, "tr-quiet", json!({}), 1).await;
    c.drain(far_deadline()).await;
    c.mount_get(&id, "tr-quiet", "completed").await;

    // Not yet overdue: the reconciler leaves it alone.
    let report = c.worker.reconcile(100).await.unwrap();
    assert_eq!(report.polled, 0);
    // No callback ever came; ten minutes later the reconciler asks AssemblyAI.
    c.db.client
        .execute(
            "UPDATE transcriptions SET checked_at = now() - interval '11 minutes' WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let report = c.worker.reconcile(100).await.unwrap();
    assert_eq!(report.polled, 1);
    c.drain(far_deadline()).await;
    assert_eq!(
        c.get(&token, &id).await.body["transcription"]["status"],
        "completed"
    );
    // Polled once per window, not on every run.
    assert_eq!(c.worker.reconcile(100).await.unwrap().polled, 0);
}

#[tokio::test]
async fn a_job_whose_message_was_never_sent_is_sent_by_the_reconciler() {
    // The queue URL points at a queue that does not exist, so the API's send fails.
    let c = ctx().await;
    let mut settings = c.app.settings.clone();
    settings.queues.transcriptions = Some(format!("{}-missing", c.route.queue_url));
    let broken = App::from_settings("transcriptions", settings);
    let transcriptions = broken.transcriptions(c.sqs.clone()).unwrap();
    let (token, recording) = c.user_with_recording("outbox@example.com").await;
    let req = Event::new(
        "POST",
        &format!("/api/recordings/{recording}/transcriptions"),
    )
    .path_param("id", &recording.to_string())
    .header("authorization", &bearer(&token))
    .request();
    let answer = Answer::from_response(
        broken
            .http
            .serve(req, |req| {
                transcriptions_create::handle(&broken, &transcriptions, req)
            })
            .await
            .unwrap(),
    );
    assert_eq!(
        answer.status, 202,
        "the job is accepted: it is in the database"
    );
    let id = answer.body["transcription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!c.row(&id).await.get::<_, bool>(3), "not marked sent");
    assert_eq!(c.queue_depth().await, 0);

    assert_eq!(
        c.worker.reconcile(100).await.unwrap().resent,
        0,
        "too fresh"
    );
    c.db.client
        .execute(
            "UPDATE transcriptions SET created_at = now() - interval '2 minutes' WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(c.worker.reconcile(100).await.unwrap().resent, 1);
    assert!(c.row(&id).await.get::<_, bool>(3));
    assert_eq!(c.queue_depth().await, 1);
    assert_eq!(
        c.worker.reconcile(100).await.unwrap().resent,
        0,
        "sent once"
    );
}

#[tokio::test]
async fn a_submission_whose_answer_was_lost_is_never_sent_twice() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("lost@example.com").await;
    let id = c.queued(&token, recording).await;
    // AssemblyAI creates the job but its answer never arrives in time (VENDOR_TIMEOUT_MS = 1000).
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(transcript("tr-lost", "queued", &c.webhook_url(&id)))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    let job = json!({"transcription_id": id});
    assert!(c.deliver(&job, 1).await.is_empty());
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "processing");
    assert_eq!(row.get::<_, Option<&str>>(1), None);
    // Redelivered: still no second submission.
    assert!(c.deliver(&job, 2).await.is_empty());

    // A callback naming some other job's transcript is not adopted.
    Mock::given(method("GET"))
        .and(path("/v2/transcript/tr-other"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transcript(
            "tr-other",
            "completed",
            &c.webhook_url(&Uuid::new_v4().to_string()),
        )))
        .mount(&c.vendor)
        .await;
    let secret = c.secret(&id).await;
    c.webhook(
        &id,
        Some(&secret),
        json!({"transcript_id": "tr-other", "status": "completed"}),
    )
    .await;
    c.drain_all().await;
    assert_eq!(c.row(&id).await.get::<_, Option<&str>>(1), None);

    // AssemblyAI's own callback arrives: checked against AssemblyAI, adopted and completed.
    c.mount_get(&id, "tr-lost", "completed").await;
    c.webhook(
        &id,
        Some(&secret),
        json!({"transcript_id": "tr-lost", "status": "completed"}),
    )
    .await;
    c.drain_all().await;
    let t = c.get(&token, &id).await.body["transcription"].clone();
    assert_eq!(t["status"], "completed");
    assert_eq!(c.row(&id).await.get::<_, Option<&str>>(1), Some("tr-lost"));
    c.vendor.verify().await;
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_mismatches_and_in_progress() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("idem@example.com").await;
    let first = c
        .create(
            &token,
            recording,
            json!({"language_code": "es"}),
            Some("k-1"),
        )
        .await;
    assert_eq!(first.status, 202);
    let replay = c
        .create(
            &token,
            recording,
            json!({"language_code": "es"}),
            Some("k-1"),
        )
        .await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    let count: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM transcriptions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 1, "one job, one message");
    c.create(
        &token,
        recording,
        json!({"language_code": "fr"}),
        Some("k-1"),
    )
    .await
    .assert_problem(422, "validation-failed");
    // The same key and body on another recording is another request, not a new job.
    let (_, other) = c.user_with_recording("idem-other@example.com").await;
    c.db.client
        .execute(
            r#"UPDATE recordings SET owner_id = (SELECT "userId" FROM sessions WHERE "sessionToken" = $1)
               WHERE id = $2"#,
            &[&token, &other],
        )
        .await
        .unwrap();
    c.create(&token, other, json!({"language_code": "es"}), Some("k-1"))
        .await
        .assert_problem(422, "validation-failed");
    // A request still in progress under the key.
    let user: i32 =
        c.db.client
            .query_one(
                r#"SELECT "userId" FROM sessions WHERE "sessionToken" = $1"#,
                &[&token],
            )
            .await
            .unwrap()
            .get(0);
    let scope = format!("transcriptions-create:{user}");
    c.app
        .idempotency
        .claim(
            &scope,
            "k-2",
            &json!({"recording_id": recording, "body": {}}),
            far_deadline(),
        )
        .await
        .unwrap();
    c.create(&token, recording, json!({}), Some("k-2"))
        .await
        .assert_problem(409, "conflict");
    // Its in-progress record expires at the holder's deadline, and then the key works.
    c.db.client
        .execute("UPDATE idempotency_records SET in_progress_until = now() - interval '1 second' WHERE status = 'INPROGRESS'", &[])
        .await
        .unwrap();
    assert_eq!(
        c.create(&token, recording, json!({}), Some("k-2"))
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn every_route_answers_its_owner_only() {
    let c = ctx().await;
    let (alice, recording) = c.user_with_recording("alice@example.com").await;
    let (mallory, _) = c.user_with_recording("mallory@example.com").await;
    let id = c.create(&alice, recording, json!({}), None).await.body["transcription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // No session anywhere.
    let anon = |m: &'static str, p: &str| Event::new(m, p).path_param("id", &recording.to_string());
    c.call("create", anon("POST", "/x"))
        .await
        .assert_problem(401, "unauthenticated");
    c.call("list", anon("GET", "/x"))
        .await
        .assert_problem(401, "unauthenticated");
    c.call("get", Event::new("GET", "/x").path_param("id", &id))
        .await
        .assert_problem(401, "unauthenticated");
    c.call(
        "token",
        Event::new("POST", "/api/transcription/realtime-token"),
    )
    .await
    .assert_problem(401, "unauthenticated");

    // Someone else's ids are 404, never 403.
    c.create(&mallory, recording, json!({}), None)
        .await
        .assert_problem(404, "not-found");
    c.get(&mallory, &id).await.assert_problem(404, "not-found");
    c.call(
        "list",
        Event::new("GET", "/x")
            .path_param("id", &recording.to_string())
            .header("authorization", &bearer(&mallory)),
    )
    .await
    .assert_problem(404, "not-found");
    c.get(&alice, "not-a-uuid")
        .await
        .assert_problem(404, "not-found");

    // Only a ready recording can be transcribed; bad options name their field.
    c.db.client
        .execute(
            "UPDATE recordings SET status = 'pending_upload' WHERE id = $1",
            &[&recording],
        )
        .await
        .unwrap();
    c.create(&alice, recording, json!({}), None)
        .await
        .assert_problem(409, "conflict");
    let bad = c
        .create(&alice, recording, json!({"speakers_expected": 3}), None)
        .await;
    bad.assert_problem(422, "validation-failed");
    assert_eq!(bad.body["errors"][0]["field"], "speakers_expected");
    let unknown = c
        .create(&alice, recording, json!({"language": "en"}), None)
        .await;
    unknown.assert_problem(422, "validation-failed");
    assert_eq!(unknown.body["errors"][0]["field"], "language");
}

#[tokio::test]
async fn realtime_tokens_come_from_assemblyai_and_never_carry_the_key() {
    let c = ctx().await;
    let (token, _) = c.user_with_recording("live@example.com").await;
    Mock::given(method("GET"))
        .and(path("/v3/token"))
        .and(query_param("expires_in_seconds", "120"))
        .and(query_param("max_session_duration_seconds", "600"))
        .and(header("authorization", KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token": "tok_abc", "expires_in_seconds": 120})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    let call = |body: Value| {
        Event::new("POST", "/api/transcription/realtime-token")
            .header("authorization", &bearer(&token))
            .header("content-type", "application/json")
            .body(&body.to_string())
    };
    let answer = c
        .call("token", call(json!({"expires_in_seconds": 120})))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"token": "tok_abc", "expires_in_seconds": 120, "max_session_duration_seconds": 600})
    );
    // The session's length is committed at once: Parley never sees it end.
    assert_eq!(c.db.usage(&token, "realtime_seconds").await, (600, 0));
    assert!(!answer.body.to_string().contains(KEY));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    for bad in [
        json!({"expires_in_seconds": 601}),
        json!({"expires_in_seconds": 0}),
    ] {
        let a = c.call("token", call(bad)).await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["errors"][0]["field"], "expires_in_seconds");
    }
    // The hostile client's `[600]`: a body is an object, never a struct read from an array.
    let array = c.call("token", call(json!([600]))).await;
    array.assert_problem(422, "validation-failed");
    assert_eq!(array.body["errors"][0]["field"], "body");
    c.vendor.verify().await;

    // A refused key is a 502 that names no key; an outage is a 503.
    c.vendor.reset().await;
    Mock::given(method("GET"))
        .and(path("/v3/token"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": format!("Invalid API key {KEY}")})),
        )
        .mount(&c.vendor)
        .await;
    let refused = c.call("token", call(json!({}))).await;
    refused.assert_problem(502, "vendor-error");
    assert!(!refused.body.to_string().contains(KEY));
    c.vendor.reset().await;
    Mock::given(method("GET"))
        .and(path("/v3/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&c.vendor)
        .await;
    c.call("token", call(json!({})))
        .await
        .assert_problem(503, "service-unavailable");
}

#[tokio::test]
async fn a_gateway_error_on_submission_is_never_resubmitted() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("gateway@example.com").await;
    let id = c.queued(&token, recording).await;
    // A 502 comes from a proxy that gave up: AssemblyAI behind it may have created the job.
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .expect(1)
        .mount(&c.vendor)
        .await;
    let job = json!({"transcription_id": id});
    assert!(c.deliver(&job, 1).await.is_empty());
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "processing");
    assert!(
        row.get::<_, bool>(5),
        "the checkpoint stays: it may have been paid"
    );
    assert!(c.deliver(&job, 2).await.is_empty());
    // It had been created: its callback completes the job.
    c.mount_get(&id, "tr-behind-gateway", "completed").await;
    let secret = c.secret(&id).await;
    let answer = c
        .webhook(
            &id,
            Some(&secret),
            json!({"transcript_id": "tr-behind-gateway", "status": "completed"}),
        )
        .await;
    assert_eq!(answer.status, 200);
    // The queue also holds the create's own message.
    c.drain_all().await;
    assert_eq!(
        c.get(&token, &id).await.body["transcription"]["status"],
        "completed"
    );
    c.vendor.verify().await;
}

#[tokio::test]
async fn a_callback_that_cannot_be_queued_gets_a_503_never_a_4xx() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("outage@example.com").await;
    let id = c.queued(&token, recording).await;
    let secret = c.secret(&id).await;
    let callback = json!({"transcript_id": "tr-1", "status": "completed"});
    c.sqs
        .delete_queue()
        .queue_url(&c.route.queue_url)
        .send()
        .await
        .unwrap();
    let answer = c.webhook(&id, Some(&secret), callback.clone()).await;
    answer.assert_problem(503, "service-unavailable");
    assert_eq!(c.row(&id).await.get::<_, &str>(0), "queued");

    // The database down: still a 503, so AssemblyAI keeps retrying.
    let down = ctx_with(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/parley")]).await;
    let answer = down.webhook(&id, Some(&secret), callback).await;
    answer.assert_problem(503, "service-unavailable");
}

#[tokio::test]
async fn a_recording_deleted_before_submission_never_reaches_the_vendor() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("deleted@example.com").await;
    let id = c.queued(&token, recording).await;
    // Mark-then-delete: the row says deleted while the object may still be in R2.
    c.db.client
        .execute(
            "UPDATE recordings SET status = 'deleted' WHERE id = $1",
            &[&recording],
        )
        .await
        .unwrap();
    Mock::given(method("POST"))
        .and(path("/v2/transcript"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&c.vendor)
        .await;
    assert!(
        c.deliver(&json!({"transcription_id": id}), 1)
            .await
            .is_empty()
    );
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "failed");
    assert!(row.get::<_, &str>(2).contains("deleted"));
    c.vendor.verify().await;
}

#[tokio::test]
async fn the_last_delivery_leaves_a_job_another_delivery_is_submitting() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("racing@example.com").await;
    let id = c.queued(&token, recording).await;
    let held = c
        .app
        .idempotency
        .claim(
            "transcription-worker:submit",
            &id,
            &json!({"transcription_id": id}),
            far_deadline(),
        )
        .await
        .unwrap();
    assert!(matches!(
        held,
        shared::platform::idempotency::Claim::Acquired(_)
    ));
    let failed = c.deliver(&json!({"transcription_id": id}), 5).await;
    assert_eq!(failed.len(), 1, "left for the DLQ");
    assert_eq!(
        c.row(&id).await.get::<_, &str>(0),
        "queued",
        "the holder may be paying for it right now"
    );
}

#[tokio::test]
async fn the_reconciler_fails_submissions_that_were_never_confirmed() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("abandoned@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = c.queued(&token, recording).await;
        ids.push(id);
    }
    // One waited for a callback, one died before it could even say so; neither was confirmed.
    c.db.client
        .execute(
            "UPDATE transcriptions SET submit_started_at = now() - interval '2 days',
                    status = CASE WHEN id = $1::text::uuid THEN 'processing' ELSE 'queued' END
             WHERE id IN ($1::text::uuid, $2::text::uuid)",
            &[&ids[0], &ids[1]],
        )
        .await
        .unwrap();
    let report = c.worker.reconcile(100).await.unwrap();
    assert_eq!(report.abandoned, 2);
    for id in &ids {
        let t = c.get(&token, id).await.body["transcription"].clone();
        assert_eq!(t["status"], "failed");
        assert_eq!(t["error"]["code"], "interrupted");
    }
    assert_eq!(
        report.resent, 0,
        "a job that may have been paid is never resent"
    );
}

impl Ctx {
    /// A callback for job `id` at `/webhooks/assemblyai?transcription_id=<id>[&sig=<sig>]`.
    fn callback_event(&self, id: &str, sig: Option<&str>, secret: &str) -> Event {
        let query = match sig {
            Some(sig) => format!("transcription_id={id}&sig={sig}"),
            None => format!("transcription_id={id}"),
        };
        Event::new("POST", "/webhooks/assemblyai")
            .query(&query)
            .header("content-type", "application/json")
            .header("x-parley-webhook-secret", secret)
            .body(&json!({"transcript_id": "tr-signed", "status": "completed"}).to_string())
    }
}

#[tokio::test]
async fn signed_callback_urls_pass_a_forged_mac_is_refused_and_old_urls_still_work() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("signed@example.com").await;
    let id = c.queued(&token, recording).await;
    c.drain_without_vendor().await;
    let secret = c.secret(&id).await;
    let signer = c.app.callback_signer().unwrap();
    let good = signer.sign(Uuid::parse_str(&id).unwrap());
    let other = signer.sign(Uuid::new_v4());

    // Another job's MAC, even with this job's secret header: refused, nothing queued.
    c.call("webhook", c.callback_event(&id, Some(&other), &secret))
        .await
        .assert_problem(401, "invalid-callback-credentials");
    c.call("webhook", c.callback_event(&id, Some("AAAA"), &secret))
        .await
        .assert_problem(401, "invalid-callback-credentials");
    assert_eq!(c.queue_depth().await, 0);

    // The job's own MAC but a wrong secret header: the per-job check still applies.
    c.call(
        "webhook",
        c.callback_event(&id, Some(&good), "not-the-secret"),
    )
    .await
    .assert_problem(401, "invalid-callback-credentials");

    // The URL the worker gives AssemblyAI is accepted.
    let signed = c
        .call("webhook", c.callback_event(&id, Some(&good), &secret))
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(c.queue_depth().await, 1);

    // A job submitted before URLs were signed calls back without `sig`: today's check admits it.
    let legacy = c
        .call("webhook", c.callback_event(&id, None, &secret))
        .await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert_eq!(c.queue_depth().await, 2);
}

#[tokio::test]
async fn a_forged_callback_is_refused_without_a_database_query() {
    let c = ctx().await;
    // Same queue and keys, but the database is a closed port: any query would be a 503.
    let settings = parley_tests::settings_with(
        &parley_tests::dead_database_url(),
        &[
            ("DB_CONNECT_TIMEOUT_MS", "500"),
            ("DB_ACQUIRE_TIMEOUT_MS", "500"),
            ("TRANSCRIPTION_QUEUE_URL", c.route.queue_url.as_str()),
        ],
    );
    let app = App::from_settings(assemblyai_webhook::FUNCTION, settings);
    let queue = shared::platform::queue::JobQueue::new(c.sqs.clone(), &c.route.queue_url);
    let signer = app.callback_signer().unwrap();
    let call = |event: Event| {
        let (app, queue, signer) = (&app, &queue, &signer);
        async move {
            Answer::from_response(
                app.http
                    .serve(event.request(), |req| {
                        assemblyai_webhook::handle(app, queue, signer, req)
                    })
                    .await
                    .unwrap(),
            )
        }
    };
    let id = Uuid::new_v4().to_string();
    let forged = signer.sign(Uuid::new_v4());
    for sig in [forged.as_str(), "AAAAAAAAAAAAAAAAAAAAAA", "not-base64!"] {
        call(c.callback_event(&id, Some(sig), "any-secret"))
            .await
            .assert_problem(401, "invalid-callback-credentials");
    }
    // The control: a callback that must be looked up does reach the (dead) database.
    call(c.callback_event(&id, None, "any-secret"))
        .await
        .assert_problem(503, "service-unavailable");
    let valid = signer.sign(Uuid::parse_str(&id).unwrap());
    call(c.callback_event(&id, Some(&valid), "any-secret"))
        .await
        .assert_problem(503, "service-unavailable");
    assert_eq!(c.queue_depth().await, 0);
}

#[tokio::test]
async fn a_job_held_by_another_delivery_stays_queued_on_the_last_delivery() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("race@example.com").await;
    let id = c.queued(&token, recording).await;
    c.drain_without_vendor().await;
    // Another delivery checkpointed the submission and holds its lease: it is talking to AssemblyAI.
    c.db.client
        .execute(
            "UPDATE transcriptions SET submit_started_at = now() WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let held = c
        .app
        .idempotency
        .claim(
            "transcription-worker:submit",
            &id,
            &json!({ "transcription_id": id }),
            far_deadline(),
        )
        .await
        .unwrap();
    assert!(matches!(
        held,
        shared::platform::idempotency::Claim::Acquired(_)
    ));
    // The queue's last delivery (receive count 5) must not fail a job someone else is finishing.
    let failed = c.deliver(&json!({"transcription_id": id}), 5).await;
    assert_eq!(failed.len(), 1, "left for another delivery");
    let row = c.row(&id).await;
    assert_eq!(row.get::<_, &str>(0), "queued");
    assert_eq!(row.get::<_, Option<&str>>(2), None, "no error recorded");
    assert!(c.vendor.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_signed_transcriptions_cursor_with_an_extreme_time_is_a_422() {
    use shared::domain::paging::{Cursors, Position};
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("cursor-t@example.com").await;
    let user: i32 =
        c.db.client
            .query_one(
                "SELECT owner_id FROM recordings WHERE id = $1::text::uuid",
                &[&recording.to_string()],
            )
            .await
            .unwrap()
            .get(0);
    let cursors = Cursors::new(
        c.app.settings.require_cursor_key().unwrap(),
        "transcriptions",
    );
    let cursor = cursors.encode(
        shared::domain::UserId::new(user),
        Position {
            created_at: time::Date::from_calendar_date(-5000, time::Month::January, 1)
                .unwrap()
                .midnight()
                .assume_utc(),
            id: Uuid::now_v7(),
        },
    );
    let answer = c
        .call(
            "list",
            Event::new(
                "GET",
                &format!("/api/recordings/{recording}/transcriptions"),
            )
            .path_param("id", &recording.to_string())
            .query(&format!("cursor={cursor}"))
            .header("authorization", &bearer(&token)),
        )
        .await;
    answer.assert_problem(422, "validation-failed");
    assert_eq!(answer.body["errors"][0]["field"], "cursor");
}

#[tokio::test]
async fn a_transcription_the_plan_cannot_cover_is_a_402_with_nothing_queued_or_sent() {
    let c = ctx().await;
    let (token, recording) = c.user_with_recording("quota@example.com").await;
    c.db.client
        .execute(
            "UPDATE plans SET transcription_seconds = 1 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    let refused = c.create(&token, recording, json!({}), Some("q-1")).await;
    refused.assert_problem(402, "quota-exceeded");
    assert_eq!(refused.body["meter"], "transcription_seconds");
    assert_eq!(refused.body["remaining"], 1);
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM transcriptions", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0);
    assert_eq!(c.queue_depth().await, 0);
    assert_eq!(c.db.usage(&token, "transcription_seconds").await, (0, 0));
    assert!(c.vendor.received_requests().await.unwrap().is_empty());
    // Once the plan allows it, the same request goes through.
    c.db.client
        .execute(
            "UPDATE plans SET transcription_seconds = 3600 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    let ok = c.create(&token, recording, json!({}), Some("q-2")).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
}
