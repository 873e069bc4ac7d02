//! Translation against real PostgreSQL, moto (SQS) and one wiremock server playing both DeepL and
//! OpenAI, asserting the exact requests each documents: DeepL first, OpenAI on 456, exhausted
//! retries or a pair DeepL lacks, the breaker, batching and alignment on a long transcript, and
//! the job routes (idempotent creation, owner only). The end-to-end run on the sandbox is last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parley_tests::{Answer, Api, Event, Moto, TestDb, TestStack, authjs, bearer, events};
use serde_json::{Map, Value, json};
use shared::App;
use shared::domain::translations::Translator;
use shared::domain::translations::jobs::{TranslationJobs, TranslationWorker};
use shared::local::Route;
use uuid::Uuid;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const DEEPL_KEY: &str = "0f1e2d3c-test-deepl-key:fx";
const OPENAI_KEY: &str = "sk-proj-test-openai-key-0123456789";
const BOTH: &[(&str, &str)] = &[("DEEPL_API_KEY", DEEPL_KEY), ("OPENAI_API_KEY", OPENAI_KEY)];

struct Ctx {
    db: TestDb,
    app: App,
    translator: Translator,
    jobs: TranslationJobs,
    worker: TranslationWorker,
    route: Route,
    vendor: MockServer,
    _moto: Moto,
}

async fn ctx(env: &[(&'static str, &str)]) -> Ctx {
    let TestStack {
        db,
        app,
        sqs,
        queue,
        vendor,
        moto,
        ..
    } = TestStack::builder("translations")
        .queue("tr", "translation-worker", "TRANSLATION_QUEUE_URL")
        .vendor(&["DEEPL_BASE_URL", "OPENAI_BASE_URL"])
        .env(&[("VENDOR_TIMEOUT_MS", "2000")])
        .env(env)
        .build()
        .await;
    let translator = app.translator().unwrap();
    let jobs = app.translation_jobs(sqs.clone()).unwrap();
    let worker = app.translation_worker().unwrap();
    mount_languages(&vendor).await;
    Ctx {
        db,
        app,
        translator,
        jobs,
        worker,
        route: queue.expect("built with a queue"),
        vendor,
        _moto: moto,
    }
}

/// DeepL's `/v2/languages`, without Vietnamese (which only OpenAI translates here).
async fn mount_languages(vendor: &MockServer) {
    for (kind, list) in [
        (
            "source",
            json!([{"language":"DE","name":"German"},{"language":"EN","name":"English"},
                   {"language":"FR","name":"French"},{"language":"PT","name":"Portuguese"}]),
        ),
        (
            "target",
            json!([{"language":"DE","name":"German","supports_formality":true},
                   {"language":"EN-GB","name":"English (British)","supports_formality":false},
                   {"language":"EN-US","name":"English (American)","supports_formality":false},
                   {"language":"FR","name":"French","supports_formality":true},
                   {"language":"PT-BR","name":"Portuguese (Brazilian)","supports_formality":true},
                   {"language":"PT-PT","name":"Portuguese (European)","supports_formality":true}]),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path("/v2/languages"))
            .and(query_param("type", kind))
            .and(header(
                "authorization",
                format!("DeepL-Auth-Key {DEEPL_KEY}"),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(list))
            .mount(vendor)
            .await;
    }
}

fn deepl_translate() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/v2/translate"))
        .and(header(
            "authorization",
            format!("DeepL-Auth-Key {DEEPL_KEY}"),
        ))
        .and(header("content-type", "application/json"))
}

fn openai_chat() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(header("authorization", format!("Bearer {OPENAI_KEY}")))
        .and(header("content-type", "application/json"))
}

fn completion(content: &str, finish_reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_795_316_400,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                     "finish_reason": finish_reason, "logprobs": null}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}
    }))
}

/// OpenAI's documented body for one plain translation.
fn openai_body(system: &str, user: &str) -> Value {
    json!({
        "model": "gpt-4.1-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_completion_tokens": 4096,
        "temperature": 0
    })
}

fn deepl_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "message": message }))
}

/// DeepL echoing `DE:<text>` for each text, in order; after `fail_after` calls it answers 503.
struct DeepLEcho {
    calls: Arc<AtomicUsize>,
    fail_after: usize,
}

impl Respond for DeepLEcho {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_after {
            return deepl_error(503, "Service Unavailable");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let translations: Vec<Value> = body["text"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let t = t.as_str().unwrap();
                json!({"detected_source_language": "EN", "text": format!("DE:{t}"),
                       "billed_characters": t.chars().count()})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "translations": translations }))
    }
}

/// OpenAI echoing `OA:<text>`; a structured request gets every key back. The first
/// `length_first` calls end with `finish_reason: "length"`.
struct OpenAiEcho {
    calls: Arc<AtomicUsize>,
    length_first: usize,
}

impl Respond for OpenAiEcho {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.length_first {
            return completion("Truncat", "length");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let user = body["messages"][1]["content"].as_str().unwrap();
        if body["response_format"]["type"] == "json_schema" {
            let object: Map<String, Value> = serde_json::from_str(user).unwrap();
            let out: Map<String, Value> = object
                .into_iter()
                .map(|(k, v)| (k, json!(format!("OA:{}", v.as_str().unwrap()))))
                .collect();
            completion(&Value::Object(out).to_string(), "stop")
        } else {
            completion(&format!("OA:{user}"), "stop")
        }
    }
}

impl Ctx {
    async fn call(&self, function: &str, event: Event) -> Answer {
        let req = event.request();
        let app = &self.app;
        let response = match function {
            "translations-create" => {
                app.http
                    .serve(req, |r| {
                        translations_create::handle(app, &self.translator, r)
                    })
                    .await
            }
            "transcription-translations-create" => {
                app.http
                    .serve(req, |r| {
                        transcription_translations_create::handle(
                            app,
                            &self.jobs,
                            &self.translator,
                            r,
                        )
                    })
                    .await
            }
            "translations-get" => {
                app.http
                    .serve(req, |r| translations_get::handle(app, &self.jobs, r))
                    .await
            }
            "transcription-translations-list" => {
                app.http
                    .serve(req, |r| {
                        transcription_translations_list::handle(app, &self.jobs, r)
                    })
                    .await
            }
            other => panic!("no function {other}"),
        };
        Answer::from_response(response.unwrap())
    }

    async fn translate(&self, token: &str, body: Value) -> Answer {
        self.call(
            "translations-create",
            Event::new("POST", "/api/translations")
                .header("authorization", &bearer(token))
                .header("content-type", "application/json")
                .body(&body.to_string()),
        )
        .await
    }

    async fn create_job(
        &self,
        token: &str,
        transcription: Uuid,
        body: Value,
        key: Option<&str>,
    ) -> Answer {
        let id = transcription.to_string();
        let mut event = Event::new("POST", &format!("/api/transcriptions/{id}/translations"))
            .path_param("id", &id)
            .header("authorization", &bearer(token))
            .header("content-type", "application/json")
            .body(&body.to_string());
        if let Some(key) = key {
            event = event.header("idempotency-key", key);
        }
        self.call("transcription-translations-create", event).await
    }

    async fn get(&self, token: &str, id: &str) -> Answer {
        self.call(
            "translations-get",
            Event::new("GET", &format!("/api/translations/{id}"))
                .path_param("id", id)
                .header("authorization", &bearer(token)),
        )
        .await
    }

    async fn list(&self, token: &str, transcription: Uuid, query: &str) -> Answer {
        let id = transcription.to_string();
        self.call(
            "transcription-translations-list",
            Event::new("GET", &format!("/api/transcriptions/{id}/translations"))
                .path_param("id", &id)
                .query(query)
                .header("authorization", &bearer(token)),
        )
        .await
    }

    /// One SQS delivery of job `id` through the worker's Lambda handler; the failed message ids.
    async fn deliver(&self, id: &str, receive_count: u32) -> Vec<String> {
        let event = events::sqs_delivery(
            &json!({"translation_id": id}).to_string(),
            receive_count,
            &self.route.queue_arn,
        );
        let mut context = lambda_runtime::Context::default();
        context.deadline = shared::platform::lambda::now_ms() + 120_000;
        let message_id = event.records[0].message_id.clone().unwrap_or_default();
        match translation_worker::handle(
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

    /// A completed transcription owned by `owner` with these utterances and text.
    async fn transcript(&self, owner: i32, utterances: Value, text: &str) -> Uuid {
        self.transcript_with_status(owner, utterances, text, "completed")
            .await
    }

    async fn transcript_with_status(
        &self,
        owner: i32,
        utterances: Value,
        text: &str,
        status: &str,
    ) -> Uuid {
        let recording = Uuid::now_v7();
        self.db
            .client
            .execute(
                "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes)
                 VALUES ($1::text::uuid, $2, 'recordings/' || $1, 'ready', 'audio/wav', 1000)",
                &[&recording.to_string(), &owner],
            )
            .await
            .unwrap();
        let id = Uuid::now_v7();
        let completed = status == "completed";
        self.db
            .client
            .execute(
                "INSERT INTO transcriptions (id, owner_id, recording_id, status, webhook_secret, text, utterances, completed_at)
                 VALUES ($1::text::uuid, $2, $3::text::uuid, $4, repeat('s', 32),
                         CASE WHEN $6 THEN $5 END, CASE WHEN $6 THEN $7::jsonb END, CASE WHEN $6 THEN now() END)",
                &[&id.to_string(), &owner, &recording.to_string(), &status, &text, &completed, &utterances],
            )
            .await
            .unwrap();
        id
    }

    async fn requests_to(&self, p: &str) -> Vec<Value> {
        self.vendor
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == p)
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}

fn utterances(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"speaker": if i % 2 == 0 { "A" } else { "B" }, "text": format!("Utterance number {i}."),
                       "start": i * 1000, "end": i * 1000 + 900, "confidence": 0.9})
            })
            .collect(),
    )
}

#[tokio::test]
async fn deepl_translates_a_text_with_the_documented_request_and_mapped_codes() {
    let c = ctx(BOTH).await;
    let (_, token) = c.db.session("text@example.com", 3600).await;
    deepl_translate()
        .and(body_json(
            json!({"text": ["Hello, world"], "target_lang": "DE", "source_lang": "EN",
                               "formality": "prefer_more", "show_billed_characters": true}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "EN", "text": "Hallo, Welt", "billed_characters": 12}]})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    // A bare EN or PT target goes to DeepL as its regional variant; formality "less" as prefer_less.
    deepl_translate()
        .and(body_json(
            json!({"text": ["Guten Morgen"], "target_lang": "EN-US",
                               "formality": "prefer_less", "show_billed_characters": true}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "DE", "text": "Good morning", "billed_characters": 12}]})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    deepl_translate()
        .and(body_json(
            json!({"text": ["Bonjour"], "target_lang": "PT-BR", "show_billed_characters": true}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "FR", "text": "Bom dia", "billed_characters": 7}]})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;

    let a = c
        .translate(&token, json!({"text": "Hello, world", "target_lang": "de", "source_lang": "en", "formality": "more"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["translation"],
        json!({"text": "Hallo, Welt", "detected_source_lang": "EN", "target_lang": "DE",
               "provider": "deepl", "billed_characters": 12})
    );
    let a = c
        .translate(
            &token,
            json!({"text": "Guten Morgen", "target_lang": "EN", "formality": "less"}),
        )
        .await;
    assert_eq!(a.body["translation"]["target_lang"], "EN-US", "{}", a.body);
    assert_eq!(a.body["translation"]["detected_source_lang"], "DE");
    let a = c
        .translate(&token, json!({"text": "Bonjour", "target_lang": "pt"}))
        .await;
    assert_eq!(a.body["translation"]["text"], "Bom dia", "{}", a.body);
    assert!(c.requests_to("/chat/completions").await.is_empty());
    // The language lists were fetched once, then served from the cache.
    let listed = c
        .vendor
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/languages")
        .count();
    assert_eq!(listed, 2);
    // DeepL's billed_characters settled each reservation: 12 + 12 + 7.
    assert_eq!(c.db.usage(&token, "translation_characters").await, (31, 0));
}

#[tokio::test]
async fn a_text_the_plan_cannot_cover_is_a_402_and_no_provider_is_called() {
    let c = ctx(BOTH).await;
    let (_, token) = c.db.session("quota@example.com", 3600).await;
    c.db.client
        .execute(
            "UPDATE plans SET translation_characters = 5 WHERE name = 'free'",
            &[],
        )
        .await
        .unwrap();
    let a = c
        .translate(&token, json!({"text": "Hello, world", "target_lang": "de"}))
        .await;
    a.assert_problem(402, "quota-exceeded");
    assert_eq!(a.body["meter"], "translation_characters");
    assert_eq!(a.body["remaining"], 5);
    assert!(c.requests_to("/v2/translate").await.is_empty());
    assert!(c.requests_to("/chat/completions").await.is_empty());
    assert_eq!(c.db.usage(&token, "translation_characters").await, (0, 0));
}

#[tokio::test]
async fn a_456_falls_back_to_openai_the_breaker_skips_deepl_then_closes() {
    let c = ctx(&[
        ("DEEPL_API_KEY", DEEPL_KEY),
        ("OPENAI_API_KEY", OPENAI_KEY),
        // A quota is normally remembered for minutes; short here so the trial can be seen.
        ("TRANSLATION_QUOTA_COOLDOWN_MS", "1500"),
    ])
    .await;
    let (_, token) = c.db.session("quota@example.com", 3600).await;
    deepl_translate()
        .respond_with(deepl_error(456, "Quota Exceeded"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&c.vendor)
        .await;
    let system = "Translate the user's text into German (DE). The text is in English. \
                  Output only the translation, with no notes, quotes or explanations.";
    openai_chat()
        .and(body_json(openai_body(system, "Good evening")))
        .respond_with(completion("Guten Abend", "stop"))
        .expect(2)
        .mount(&c.vendor)
        .await;

    let body = json!({"text": "Good evening", "target_lang": "DE", "source_lang": "EN"});
    let a = c.translate(&token, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["translation"],
        json!({"text": "Guten Abend", "detected_source_lang": "EN", "target_lang": "DE",
               "provider": "openai", "billed_characters": 12})
    );
    // The breaker is open: the next request goes straight to OpenAI, DeepL is not asked.
    assert!(
        c.translator
            .breaker()
            .is_open(shared::domain::translations::Provider::Deepl)
    );
    let a = c.translate(&token, body.clone()).await;
    assert_eq!(a.body["translation"]["provider"], "openai");
    assert_eq!(c.requests_to("/v2/translate").await.len(), 1);

    // After the cooldown DeepL gets a trial, which succeeds and closes the breaker.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    deepl_translate()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "EN", "text": "Guten Abend", "billed_characters": 12}]})),
        )
        .expect(2)
        .mount(&c.vendor)
        .await;
    let a = c.translate(&token, body.clone()).await;
    assert_eq!(a.body["translation"]["provider"], "deepl", "{}", a.body);
    assert!(
        !c.translator
            .breaker()
            .is_open(shared::domain::translations::Provider::Deepl)
    );
    let a = c.translate(&token, body).await;
    assert_eq!(a.body["translation"]["provider"], "deepl");
}

#[tokio::test]
async fn a_429_is_retried_and_then_served_by_deepl() {
    let c = ctx(BOTH).await;
    let (_, token) = c.db.session("throttle@example.com", 3600).await;
    deepl_translate()
        .respond_with(deepl_error(429, "Too many requests"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&c.vendor)
        .await;
    deepl_translate()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "EN", "text": "Danke", "billed_characters": 6}]})),
        )
        .expect(1)
        .mount(&c.vendor)
        .await;
    let a = c
        .translate(&token, json!({"text": "Thanks", "target_lang": "DE"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["translation"]["provider"], "deepl");
    let sent = c.requests_to("/v2/translate").await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the retry is the same request");
    assert!(c.requests_to("/chat/completions").await.is_empty());
}

#[tokio::test]
async fn exhausted_5xx_retries_fall_back_and_without_openai_are_a_503() {
    let c = ctx(&[
        ("DEEPL_API_KEY", DEEPL_KEY),
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("DEEPL_MAX_ATTEMPTS", "3"),
    ])
    .await;
    let (_, token) = c.db.session("outage@example.com", 3600).await;
    deepl_translate()
        .respond_with(deepl_error(503, "Service Unavailable"))
        .expect(3)
        .mount(&c.vendor)
        .await;
    openai_chat()
        .respond_with(OpenAiEcho {
            calls: Arc::default(),
            length_first: 0,
        })
        .expect(1)
        .mount(&c.vendor)
        .await;
    let a = c
        .translate(&token, json!({"text": "Hold on", "target_lang": "FR"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["translation"]["provider"], "openai");
    assert_eq!(a.body["translation"]["text"], "OA:Hold on");

    // DeepL alone: the same outage is a 503 (transient), never a 4xx.
    let only = ctx(&[("DEEPL_API_KEY", DEEPL_KEY), ("DEEPL_MAX_ATTEMPTS", "2")]).await;
    let (_, token) = only.db.session("outage2@example.com", 3600).await;
    deepl_translate()
        .respond_with(deepl_error(503, "Service Unavailable"))
        .expect(2)
        .mount(&only.vendor)
        .await;
    let a = only
        .translate(&token, json!({"text": "Hold on", "target_lang": "FR"}))
        .await;
    a.assert_problem(503, "service-unavailable");
}

#[tokio::test]
async fn a_pair_deepl_lacks_goes_to_openai_and_unknown_codes_are_422() {
    let c = ctx(BOTH).await;
    let (_, token) = c.db.session("pair@example.com", 3600).await;
    let system = "Translate the user's text into Vietnamese (VI). Use a formal register. \
                  Output only the translation, with no notes, quotes or explanations.";
    openai_chat()
        .and(body_json(openai_body(system, "Good morning")))
        .respond_with(completion("Chào buổi sáng", "stop"))
        .expect(1)
        .mount(&c.vendor)
        .await;
    let a = c
        .translate(
            &token,
            json!({"text": "Good morning", "target_lang": "vi", "formality": "prefer_more"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["translation"]["provider"], "openai");
    assert_eq!(a.body["translation"]["target_lang"], "VI");
    assert!(c.requests_to("/v2/translate").await.is_empty());

    for (body, field) in [
        (json!({"text": "x", "target_lang": "XX"}), "target_lang"),
        (
            json!({"text": "x", "target_lang": "DE", "source_lang": "klingon"}),
            "source_lang",
        ),
        (json!({"text": "", "target_lang": "DE"}), "text"),
        (
            json!({"text": "a".repeat(5_001), "target_lang": "DE"}),
            "text",
        ),
        (
            json!({"text": "x", "target_lang": "DE", "formality": "casual"}),
            "formality",
        ),
        (json!({"target_lang": "DE"}), "text"),
        (
            json!({"text": "x", "target_lang": "DE", "glossary_id": "g"}),
            "glossary_id",
        ),
    ] {
        let a = c.translate(&token, body.clone()).await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["errors"][0]["field"], field, "{body}: {}", a.body);
    }
    // No vendor was asked to translate any of them.
    assert_eq!(c.requests_to("/chat/completions").await.len(), 1);
    let a = c
        .translate("not-a-session", json!({"text": "x", "target_lang": "DE"}))
        .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn openai_quota_is_not_retried_and_retry_after_ms_is_honoured() {
    let c = ctx(&[("OPENAI_API_KEY", OPENAI_KEY)]).await;
    let (_, token) = c.db.session("oa@example.com", 3600).await;
    openai_chat()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", "300")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&c.vendor)
        .await;
    openai_chat()
        .respond_with(completion("Bonsoir", "stop"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&c.vendor)
        .await;
    let started = std::time::Instant::now();
    let a = c
        .translate(&token, json!({"text": "Good evening", "target_lang": "FR"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["translation"]["provider"], "openai");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited retry-after-ms"
    );

    openai_chat()
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota", "param": null,
            "code": "insufficient_quota"}})))
        .expect(1)
        .mount(&c.vendor)
        .await;
    let a = c
        .translate(&token, json!({"text": "Good night", "target_lang": "FR"}))
        .await;
    a.assert_problem(502, "vendor-error");
    assert_eq!(
        c.requests_to("/chat/completions").await.len(),
        3,
        "the quota answer was not retried"
    );
}

#[tokio::test]
async fn openai_length_splits_the_text_and_the_batch_and_keeps_alignment() {
    let c = ctx(&[("OPENAI_API_KEY", OPENAI_KEY)]).await;
    let (user, token) = c.db.session("length@example.com", 3600).await;
    let calls = Arc::new(AtomicUsize::new(0));
    openai_chat()
        .respond_with(OpenAiEcho {
            calls: calls.clone(),
            length_first: 1,
        })
        .mount(&c.vendor)
        .await;
    // A text whose translation runs out of room is translated in two halves.
    let text = "This sentence is long enough to be split in two halves at a space.";
    let a = c
        .translate(&token, json!({"text": text, "target_lang": "DE"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let translated = a.body["translation"]["text"].as_str().unwrap();
    assert!(
        translated.starts_with("OA:This sentence") && translated.contains(" OA:"),
        "{translated}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A batch of utterances that runs out of room is split; every segment keeps its place.
    calls.store(0, Ordering::SeqCst);
    let transcription = c.transcript(user, utterances(5), "unused").await;
    let created = c
        .create_job(&token, transcription, json!({"target_lang": "DE"}), None)
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["translation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(c.deliver(&id, 1).await.is_empty());
    let got = c.get(&token, &id).await;
    let t = &got.body["translation"];
    assert_eq!(t["status"], "completed", "{}", got.body);
    assert_eq!(t["provider"], "openai");
    for (i, u) in t["utterances"].as_array().unwrap().iter().enumerate() {
        assert_eq!(u["translated_text"], format!("OA:Utterance number {i}."));
    }
    // One structured call answered `length`, then its two halves (2 and 3 segments) succeeded.
    let sent = c.requests_to("/chat/completions").await;
    let structured: Vec<&Value> = sent
        .iter()
        .filter(|b| b["response_format"]["type"] == "json_schema")
        .collect();
    assert_eq!(structured.len(), 3);
    let schema = &structured[0]["response_format"]["json_schema"];
    assert_eq!(schema["strict"], true);
    assert_eq!(
        schema["schema"]["required"],
        json!(["s0", "s1", "s2", "s3", "s4"])
    );
    assert_eq!(schema["schema"]["additionalProperties"], false);
    assert_eq!(
        structured[1]["response_format"]["json_schema"]["schema"]["required"],
        json!(["s0", "s1"])
    );
}

#[tokio::test]
async fn a_300_utterance_transcript_is_batched_aligned_and_finished_by_openai_when_deepl_fails() {
    let c = ctx(&[
        ("DEEPL_API_KEY", DEEPL_KEY),
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("DEEPL_MAX_ATTEMPTS", "1"),
    ])
    .await;
    let (user, token) = c.db.session("long@example.com", 3600).await;
    // DeepL translates three batches of 50, then goes down; OpenAI finishes the other 150.
    deepl_translate()
        .respond_with(DeepLEcho {
            calls: Arc::default(),
            fail_after: 3,
        })
        .mount(&c.vendor)
        .await;
    openai_chat()
        .respond_with(OpenAiEcho {
            calls: Arc::default(),
            length_first: 0,
        })
        .mount(&c.vendor)
        .await;
    let source = utterances(300);
    let transcription = c.transcript(user, source.clone(), "unused").await;
    let created = c
        .create_job(
            &token,
            transcription,
            json!({"target_lang": "DE", "source_lang": "EN"}),
            Some("long-1"),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.body["translation"]["status"], "queued");
    let id = created.body["translation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(c.deliver(&id, 1).await.is_empty());

    let got = c.get(&token, &id).await;
    let t = &got.body["translation"];
    assert_eq!(t["status"], "completed", "{}", got.body);
    assert_eq!(t["provider"], "mixed");
    assert_eq!(t["target_lang"], "DE");
    let translated = t["utterances"].as_array().unwrap();
    assert_eq!(translated.len(), 300);
    for (i, (u, s)) in translated
        .iter()
        .zip(source.as_array().unwrap())
        .enumerate()
    {
        assert_eq!(u["speaker"], s["speaker"]);
        assert_eq!(u["start"], s["start"]);
        assert_eq!(u["end"], s["end"]);
        assert_eq!(u["text"], s["text"]);
        let (prefix, provider) = if i < 150 {
            ("DE:", "deepl")
        } else {
            ("OA:", "openai")
        };
        assert_eq!(
            u["translated_text"],
            format!("{prefix}Utterance number {i}."),
            "{i}"
        );
        assert_eq!(u["provider"], provider, "{i}");
    }
    let joined: Vec<&str> = translated
        .iter()
        .map(|u| u["translated_text"].as_str().unwrap())
        .collect();
    assert_eq!(t["text"], joined.join(" "));
    // DeepL's billed characters for its half, the source characters for OpenAI's.
    let all: i64 = source
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["text"].as_str().unwrap().chars().count() as i64)
        .sum();
    assert_eq!(t["billed_characters"], all);

    // DeepL got batches of 50 with the neighbouring utterances as context, then one failed batch.
    let deepl = c.requests_to("/v2/translate").await;
    assert_eq!(deepl.len(), 4);
    assert_eq!(deepl[0]["text"].as_array().unwrap().len(), 50);
    assert_eq!(
        deepl[0]["context"],
        "Speaker A: Utterance number 50.\nSpeaker B: Utterance number 51."
    );
    assert_eq!(
        deepl[1]["context"],
        "Speaker A: Utterance number 48.\nSpeaker B: Utterance number 49.\nSpeaker A: Utterance number 100.\nSpeaker B: Utterance number 101."
    );
    assert_eq!(deepl[1]["source_lang"], "EN");
    assert_eq!(deepl[1]["text"][0], "Utterance number 50.");
    // After the failure the breaker keeps DeepL out of the remaining batches.
    let openai = c.requests_to("/chat/completions").await;
    assert!(openai.len() >= 3, "{}", openai.len());
    assert!(openai.iter().all(|b| {
        b["response_format"]["json_schema"]["schema"]["required"]
            .as_array()
            .unwrap()
            .len()
            <= 40
    }));
}

#[tokio::test]
async fn a_transcript_without_utterances_has_its_text_translated() {
    let c = ctx(BOTH).await;
    let (user, token) = c.db.session("plain@example.com", 3600).await;
    deepl_translate()
        .and(body_json(json!({"text": ["Just one block of text."], "target_lang": "EN-GB", "show_billed_characters": true})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"translations": [
            {"detected_source_language": "EN", "text": "Just one block of text.", "billed_characters": 23}]})))
        .expect(1)
        .mount(&c.vendor)
        .await;
    let transcription = c
        .transcript(user, json!([]), "Just one block of text.")
        .await;
    let created = c
        .create_job(&token, transcription, json!({"target_lang": "en-gb"}), None)
        .await;
    let id = created.body["translation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(c.deliver(&id, 1).await.is_empty());
    let t = c.get(&token, &id).await.body["translation"].clone();
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["text"], "Just one block of text.");
    assert_eq!(t["utterances"], json!([]));
    assert_eq!(t["billed_characters"], 23);
    assert_eq!(t["translated_lang"], "EN-GB");
}

#[tokio::test]
async fn job_creation_is_idempotent_owner_only_and_needs_a_completed_transcript() {
    let c = ctx(BOTH).await;
    let (alice, alice_token) = c.db.session("alice-tr@example.com", 3600).await;
    let (_, bob_token) = c.db.session("bob-tr@example.com", 3600).await;
    let transcription = c.transcript(alice, utterances(2), "unused").await;
    let body = json!({"target_lang": "DE"});

    let first = c
        .create_job(&alice_token, transcription, body.clone(), Some("k-1"))
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = c
        .create_job(&alice_token, transcription, body.clone(), Some("k-1"))
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body["translation"]["id"],
        first.body["translation"]["id"]
    );
    let other = c
        .create_job(
            &alice_token,
            transcription,
            json!({"target_lang": "FR"}),
            Some("k-1"),
        )
        .await;
    other.assert_problem(422, "validation-failed");
    assert_eq!(other.body["errors"][0]["field"], "Idempotency-Key");
    let count: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM translations", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 1);

    let id = first.body["translation"]["id"].as_str().unwrap();
    // Someone else's translation and transcription read exactly like missing ones.
    c.get(&bob_token, id).await.assert_problem(404, "not-found");
    c.list(&bob_token, transcription, "")
        .await
        .assert_problem(404, "not-found");
    c.create_job(&bob_token, transcription, body.clone(), None)
        .await
        .assert_problem(404, "not-found");
    c.get(&alice_token, &Uuid::now_v7().to_string())
        .await
        .assert_problem(404, "not-found");

    // A transcription still processing is a 409.
    let pending = c
        .transcript_with_status(alice, json!([]), "", "processing")
        .await;
    let a = c
        .create_job(&alice_token, pending, body.clone(), None)
        .await;
    a.assert_problem(409, "conflict");
    let a = c
        .create_job(
            &alice_token,
            transcription,
            json!({"target_lang": "XX"}),
            None,
        )
        .await;
    a.assert_problem(422, "validation-failed");
    assert_eq!(a.body["errors"][0]["field"], "target_lang");

    // Listing pages newest first with a cursor.
    let second = c
        .create_job(
            &alice_token,
            transcription,
            json!({"target_lang": "FR"}),
            None,
        )
        .await;
    let page = c.list(&alice_token, transcription, "limit=1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body["items"][0]["id"],
        second.body["translation"]["id"]
    );
    assert!(page.body["items"][0].get("utterances").is_none());
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let page = c
        .list(
            &alice_token,
            transcription,
            &format!("limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(page.body["items"][0]["id"], first.body["translation"]["id"]);
    assert!(page.body["next_cursor"].is_null());
}

#[tokio::test]
async fn a_vendor_failing_on_every_delivery_ends_failed_on_the_last_one() {
    let c = ctx(&[("DEEPL_API_KEY", DEEPL_KEY), ("DEEPL_MAX_ATTEMPTS", "1")]).await;
    let (user, token) = c.db.session("dlq@example.com", 3600).await;
    deepl_translate()
        .respond_with(deepl_error(503, "Service Unavailable"))
        .mount(&c.vendor)
        .await;
    let transcription = c.transcript(user, utterances(3), "unused").await;
    let created = c
        .create_job(&token, transcription, json!({"target_lang": "DE"}), None)
        .await;
    let id = created.body["translation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        c.deliver(&id, 1).await.len(),
        1,
        "a transient failure asks for redelivery"
    );
    assert_eq!(
        c.get(&token, &id).await.body["translation"]["status"],
        "processing"
    );
    assert_eq!(c.deliver(&id, 5).await.len(), 1);
    let t = c.get(&token, &id).await.body["translation"].clone();
    assert_eq!(t["status"], "failed");
    // The public error is a fixed code and message; the vendor's words stay in the log.
    assert_eq!(t["error"]["code"], "vendor_unavailable", "{t}");
    assert!(
        !t["error"].to_string().contains("Service Unavailable"),
        "{t}"
    );
    // A settled job is never translated again.
    let before = c.requests_to("/v2/translate").await.len();
    assert!(c.deliver(&id, 6).await.is_empty());
    assert_eq!(c.requests_to("/v2/translate").await.len(), before);
}

#[tokio::test]
async fn the_reconciler_sends_a_job_whose_message_never_left() {
    let c = ctx(BOTH).await;
    let (user, _) = c.db.session("reconcile@example.com", 3600).await;
    let transcription = c.transcript(user, utterances(1), "unused").await;
    c.db
        .client
        .execute(
            "INSERT INTO translations (id, owner_id, transcription_id, status, target_lang, created_at, updated_at)
             VALUES (gen_random_uuid(), $1, $2::text::uuid, 'queued', 'DE', now() - interval '5 minutes', now() - interval '5 minutes')",
            &[&user, &transcription.to_string()],
        )
        .await
        .unwrap();
    let resent = translation_reconciler::handle(&c.jobs, events::scheduled())
        .await
        .unwrap();
    assert_eq!(resent["resent"], 1);
    let sent: Option<time::OffsetDateTime> =
        c.db.client
            .query_one("SELECT message_sent_at FROM translations", &[])
            .await
            .unwrap()
            .get(0);
    assert!(sent.is_some());
    let resent = translation_reconciler::handle(&c.jobs, events::scheduled())
        .await
        .unwrap();
    assert_eq!(resent["resent"], 0);
}

#[tokio::test]
async fn with_no_key_a_translating_function_refuses_to_start() {
    let settings = parley_tests::settings_with("postgres://u@127.0.0.1/x", &[]);
    let app = App::from_settings("translations-create", settings);
    let e = app.translator().unwrap_err();
    assert_eq!(e.problems[0].variable, "DEEPL_API_KEY");
    assert!(e.to_string().contains("OPENAI_API_KEY"));
}

/// The local stack as `cargo xtask dev` runs it with no vendor keys (as in e2e.rs): moto for R2
/// and SQS, the sandbox for every vendor, the real binaries under `cargo lambda watch`, the pump.
struct LocalStack {
    db: TestDb,
    api: Api,
    sqs: aws_sdk_sqs::Client,
    routes: Vec<Route>,
    http: reqwest::Client,
    sandbox: String,
    _moto: Moto,
}

impl LocalStack {
    async fn start() -> LocalStack {
        let db = TestDb::create().await;
        let moto = Moto::start().await;
        let sqs = shared::local::sqs_client(&moto.endpoint);
        let template = xtask::template::Template::load(
            &parley_tests::workspace_root().join("template.yaml"),
            &std::collections::BTreeMap::from([(
                "CorsOrigins".to_owned(),
                "http://localhost:3000".to_owned(),
            )]),
        )
        .unwrap();
        let suffix = &Uuid::new_v4().simple().to_string()[..8];
        let mut routes = Vec::new();
        let mut owned: Vec<(String, String)> = Vec::new();
        for source in &template.queues {
            let mut route = shared::local::ensure_queue(
                &sqs,
                &format!("e2e-{}-{suffix}", source.queue),
                &source.function,
                5,
                source.max_receive_count,
            )
            .await
            .unwrap();
            route.batch_size = source.batch_size;
            for variable in &source.url_variables {
                owned.push((variable.clone(), route.queue_url.clone()));
            }
            routes.push(route);
        }
        let sandbox =
            shared::local::sandbox::start(([127, 0, 0, 1], 0).into(), Duration::from_millis(200))
                .await
                .unwrap();
        let (keyless, names) = shared::local::sandbox_env(&sandbox.base_url, |_| None);
        assert!(
            names.contains(&"DeepL") && names.contains(&"OpenAI"),
            "{names:?}"
        );
        let port = parley_tests::free_port();
        owned.extend(
            moto.bucket_env()
                .await
                .into_iter()
                .chain(keyless)
                .map(|(k, v)| (k.to_owned(), v)),
        );
        owned.extend(
            [
                ("DATABASE_URL", db.url.clone()),
                ("AWS_REGION", shared::local::REGION.to_owned()),
                ("AWS_ACCESS_KEY_ID", "parley-local".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "parley-local-secret".to_owned()),
                ("AWS_ENDPOINT_URL_SQS", moto.endpoint.clone()),
                ("BACKEND_URL", format!("http://127.0.0.1:{port}")),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let env: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let api = Api::start_on(port, &env).await;
        LocalStack {
            db,
            api,
            sqs,
            routes,
            http: reqwest::Client::new(),
            sandbox: sandbox.base_url,
            _moto: moto,
        }
    }

    async fn post(&self, cookie: &str, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.api.url(path))
            .header("cookie", cookie)
            .header("origin", "http://localhost:3000")
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Pumps every queue until `GET path` shows `resource` completed or failed (three minutes at most).
    async fn settled(&self, cookie: &str, path: &str, resource: &str) -> Value {
        let http = shared::platform::http_client::http_client(Duration::from_secs(900));
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let got: Value = self
                .http
                .get(self.api.url(path))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if got[resource]["status"] == "completed" || got[resource]["status"] == "failed" {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "not settled: {got}");
            for route in &self.routes {
                shared::local::pump_once(&self.sqs, &http, &self.api.invoke_base, route, 1)
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn with_no_keys_the_sandbox_records_transcribes_and_translates_with_the_fallback_shown() {
    let stack = LocalStack::start().await;
    let user = authjs(
        &stack.db.url,
        &["create-session", "--email", "translate-sandbox@example.com"],
    );
    let cookie = format!(
        "authjs.session-token={}",
        user["session_token"].as_str().unwrap()
    );
    // Record, then transcribe.
    let recording = stack
        .api
        .ready_recording(
            &stack.http,
            &cookie,
            &shared::platform::audio::silent_wav(3.0, 16000),
        )
        .await;
    let (status, created) = stack
        .post(
            &cookie,
            &format!("/api/recordings/{recording}/transcriptions"),
            json!({"speaker_labels": true, "speakers_expected": 2}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let transcription = created["transcription"]["id"].as_str().unwrap().to_owned();
    let got = stack
        .settled(
            &cookie,
            &format!("/api/transcriptions/{transcription}"),
            "transcription",
        )
        .await;
    assert_eq!(got["transcription"]["status"], "completed", "{got}");
    let source = got["transcription"]["utterances"]
        .as_array()
        .unwrap()
        .clone();
    assert!(source.len() >= 2, "{got}");

    // Translate the transcript: DeepL (the sandbox) serves it.
    let path = format!("/api/transcriptions/{transcription}/translations");
    let (status, created) = stack
        .post(
            &cookie,
            &path,
            json!({"target_lang": "DE"}),
            Some("e2e-tr-1"),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["translation"]["status"], "queued");
    let (status, replayed) = stack
        .post(
            &cookie,
            &path,
            json!({"target_lang": "DE"}),
            Some("e2e-tr-1"),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(replayed["translation"]["id"], created["translation"]["id"]);
    let id = created["translation"]["id"].as_str().unwrap();
    let got = stack
        .settled(&cookie, &format!("/api/translations/{id}"), "translation")
        .await;
    let t = &got["translation"];
    assert_eq!(t["status"], "completed", "{got}");
    assert_eq!(t["provider"], "deepl");
    let translated = t["utterances"].as_array().unwrap();
    assert_eq!(translated.len(), source.len());
    for (u, s) in translated.iter().zip(&source) {
        assert_eq!(u["speaker"], s["speaker"]);
        assert_eq!(u["start"], s["start"]);
        assert_eq!(
            u["translated_text"],
            format!("[sandbox DeepL → DE] {}", s["text"].as_str().unwrap())
        );
    }

    // DeepL runs out of quota (the sandbox switch): the same requests are served by OpenAI.
    let switched = stack
        .http
        .post(format!("{}/sandbox/deepl/failure", stack.sandbox))
        .json(&json!({"status": 456}))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let (status, text) = stack
        .post(
            &cookie,
            "/api/translations",
            json!({"text": "Thanks for calling.", "target_lang": "DE"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text["translation"]["provider"], "openai");
    assert_eq!(
        text["translation"]["text"],
        "[sandbox OpenAI → German (DE)] Thanks for calling."
    );
    let (status, created) = stack
        .post(&cookie, &path, json!({"target_lang": "FR"}), None)
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["translation"]["id"].as_str().unwrap();
    let got = stack
        .settled(&cookie, &format!("/api/translations/{id}"), "translation")
        .await;
    let t = &got["translation"];
    assert_eq!(t["status"], "completed", "{got}");
    assert_eq!(t["provider"], "openai");
    assert_eq!(t["utterances"].as_array().unwrap().len(), source.len());
    assert!(
        t["utterances"][0]["translated_text"]
            .as_str()
            .unwrap()
            .starts_with("[sandbox OpenAI → French (FR)]"),
        "{got}"
    );

    let list: Value = stack
        .http
        .get(stack.api.url(&path))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["openai", "deepl"]);
}
