//! Plans, entitlements and the usage ledger against real PostgreSQL, moto (S3 + SQS) and wiremock
//! vendors: quotas refuse before anything is queued or sent, reservations settle with the vendor's
//! figure, parallel requests at the boundary never overspend, and the operator's caps hold.

use parley_tests::{Answer, Event, TestStack, bearer};
use serde_json::{Value, json};
use shared::App;
use shared::domain::billing::plans::{self, PlanChange};
use shared::domain::billing::{Ledger, Meter, Units, Vendor};
use shared::domain::{Error, UserId};
use shared::local::Route;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const EL_KEY: &str = "sk_el_test_0123456789abcdef";
const AAI_KEY: &str = "aai_test_0123456789abcdef";
const VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

struct Ctx {
    stack: TestStack,
    route: Route,
}

/// A stack for the speech, upload and realtime routes with the free plan's limits set to `limits`.
async fn ctx(limits: &[(Meter, i64)], env: &[(&'static str, &str)]) -> Ctx {
    let stack = TestStack::builder("billing")
        .queue("tts", "tts-worker", "TTS_QUEUE_URL")
        .vendor(&["ELEVENLABS_BASE_URL", "ASSEMBLYAI_STREAMING_BASE_URL"])
        .env(&[
            ("ELEVENLABS_API_KEY", EL_KEY),
            ("ASSEMBLYAI_API_KEY", AAI_KEY),
        ])
        .env(env)
        .build()
        .await;
    let change = PlanChange {
        stripe_price_id: None,
        limits: limits.to_vec(),
    };
    plans::set(&stack.app.db, "free", &change).await.unwrap();
    let route = stack.queue.clone().expect("built with a queue");
    Ctx { stack, route }
}

impl Ctx {
    fn app(&self) -> &App {
        &self.stack.app
    }

    async fn speak(&self, token: &str, text: &str) -> Answer {
        let jobs = self.app().tts_jobs(self.stack.sqs.clone()).unwrap();
        let req = Event::new("POST", "/api/tts")
            .header("authorization", &bearer(token))
            .header("content-type", "application/json")
            .body(&json!({"text": text, "voice_id": VOICE}).to_string())
            .request();
        Answer::from_response(
            self.app()
                .http
                .serve(req, |req| tts_create::handle(self.app(), &jobs, req))
                .await
                .unwrap(),
        )
    }

    async fn upload(&self, token: &str, size: i64) -> Answer {
        let recordings = self.app().recordings().unwrap();
        let req = Event::new("POST", "/api/recordings/uploads")
            .header("authorization", &bearer(token))
            .header("content-type", "application/json")
            .body(&json!({"content_type": "audio/wav", "size_bytes": size}).to_string())
            .request();
        Answer::from_response(
            self.app()
                .http
                .serve(req, |req| {
                    recordings_upload::handle(self.app(), &recordings, req)
                })
                .await
                .unwrap(),
        )
    }

    async fn realtime(&self, token: &str, body: Value) -> Answer {
        let aai = self.app().assemblyai().unwrap();
        let req = Event::new("POST", "/api/transcription/realtime-token")
            .header("authorization", &bearer(token))
            .header("content-type", "application/json")
            .body(&body.to_string())
            .request();
        Answer::from_response(
            self.app()
                .http
                .serve(req, |req| realtime_token::handle(self.app(), &aai, req))
                .await
                .unwrap(),
        )
    }

    async fn billing(&self, token: &str) -> Answer {
        let req = Event::new("GET", "/api/billing")
            .header("authorization", &bearer(token))
            .request();
        Answer::from_response(
            self.app()
                .http
                .serve(req, |req| billing_get::handle(self.app(), req))
                .await
                .unwrap(),
        )
    }

    async fn count(&self, sql: &str) -> i64 {
        self.stack
            .db
            .client
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn queued_messages(&self) -> usize {
        let out = self
            .stack
            .sqs
            .get_queue_attributes()
            .queue_url(&self.route.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        out.attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<usize>().unwrap())
            .sum()
    }
}

fn first_of_next_month() -> String {
    let period = shared::domain::billing::Period::calendar_month(OffsetDateTime::now_utc());
    period
        .end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn speech_over_the_allowance_is_a_402_with_nothing_stored_queued_or_sent() {
    let c = ctx(&[(Meter::SpeechCharacters, 20)], &[]).await;
    let (_, token) = c.stack.db.session("quota@example.com", 3600).await;
    // The vendor must never be called: synthesis happens in the worker, never in the route.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&c.stack.vendor)
        .await;

    let ok = c.speak(&token, "fifteen letters").await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let refused = c.speak(&token, "ten chars!").await;
    refused.assert_problem(402, "quota-exceeded");
    assert_eq!(refused.body["meter"], "speech_characters");
    assert_eq!(refused.body["limit"], 20);
    assert_eq!(refused.body["remaining"], 5);
    assert_eq!(refused.body["resets_at"], first_of_next_month());
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("5 speech_characters left"), "{detail}");

    assert_eq!(c.count("SELECT count(*) FROM tts_jobs").await, 1);
    assert_eq!(
        c.queued_messages().await,
        1,
        "only the accepted job was queued"
    );
    assert_eq!(c.stack.db.usage(&token, "speech_characters").await, (0, 15));
    // What is left still fits.
    assert_eq!(c.speak(&token, "five!").await.status, 202);
    c.stack.vendor.verify().await;
}

#[tokio::test]
async fn fifty_parallel_creates_at_the_boundary_never_overspend() {
    // Rate limits would refuse a script's burst first (tests/tests/rate_limits.rs); here the
    // quota is what is under test.
    let c = ctx(
        &[(Meter::SpeechCharacters, 100)],
        &[
            ("RATE_LIMIT_PAID", "1000/1m"),
            ("RATE_LIMIT_WRITE", "1000/1m"),
            ("DB_POOL_MAX_SIZE", "8"),
        ],
    )
    .await;
    let (_, token) = c.stack.db.session("burst@example.com", 3600).await;
    let answers = futures::future::join_all((0..50).map(|_| c.speak(&token, "four"))).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let refused = answers.iter().filter(|a| a.status == 402).count();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        (accepted, refused),
        (25, 25),
        "100 characters hold 25 of 4: {statuses:?} {:?}",
        answers
            .iter()
            .find(|a| a.status != 202 && a.status != 402)
            .map(|a| &a.body)
    );
    let (used, reserved) = c.stack.db.usage(&token, "speech_characters").await;
    assert_eq!(used + reserved, 100);
    assert_eq!(c.count("SELECT count(*) FROM tts_jobs").await, 25);
    assert_eq!(
        c.count("SELECT count(*) FROM usage_reservations WHERE state = 'reserved'")
            .await,
        25
    );
}

#[tokio::test]
async fn the_operator_cap_refuses_everyone_with_a_503_until_midnight() {
    let c = ctx(&[], &[("ELEVENLABS_DAILY_CHARACTERS_CAP", "12")]).await;
    let (_, ada) = c.stack.db.session("ada@example.com", 3600).await;
    let (_, bob) = c.stack.db.session("bob@example.com", 3600).await;
    assert_eq!(c.speak(&ada, "eight ch").await.status, 202);
    let refused = c.speak(&bob, "five!").await;
    refused.assert_problem(503, "vendor-budget-exhausted");
    assert_eq!(refused.body["vendor"], "elevenlabs");
    let retry: i64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Bob's own allowance was not charged for work that never ran.
    assert_eq!(c.stack.db.usage(&bob, "speech_characters").await, (0, 0));
    assert_eq!(c.count("SELECT count(*) FROM tts_jobs").await, 1);
    assert_eq!(
        c.count("SELECT units FROM vendor_daily_usage WHERE vendor = 'elevenlabs'")
            .await,
        8
    );
    // What is left under the cap still goes through.
    assert_eq!(c.speak(&bob, "four").await.status, 202);
}

#[tokio::test]
async fn uploads_must_fit_in_the_storage_left() {
    let c = ctx(&[(Meter::StorageBytes, 1000)], &[]).await;
    let (_, token) = c.stack.db.session("store@example.com", 3600).await;
    let big = c.upload(&token, 2000).await;
    big.assert_problem(402, "quota-exceeded");
    assert_eq!(big.body["meter"], "storage_bytes");
    assert_eq!(big.body["remaining"], 1000);
    assert_eq!(big.body["resets_at"], Value::Null, "storage never resets");
    assert_eq!(c.upload(&token, 600).await.status, 201);
    let second = c.upload(&token, 600).await;
    second.assert_problem(402, "quota-exceeded");
    assert_eq!(second.body["remaining"], 400);
    assert_eq!(c.count("SELECT count(*) FROM recordings").await, 1);
    assert_eq!(c.stack.db.usage(&token, "storage_bytes").await, (0, 600));
}

#[tokio::test]
async fn realtime_sessions_are_cut_to_what_is_left_and_refused_under_a_minute() {
    let c = ctx(&[(Meter::RealtimeSeconds, 100)], &[]).await;
    let (_, token) = c.stack.db.session("live@example.com", 3600).await;
    Mock::given(method("GET"))
        .and(path("/v3/token"))
        .and(query_param("expires_in_seconds", "60"))
        .and(query_param("max_session_duration_seconds", "100"))
        .and(header("authorization", AAI_KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token": "tok_1", "expires_in_seconds": 60})),
        )
        .expect(1)
        .mount(&c.stack.vendor)
        .await;
    let first = c
        .realtime(&token, json!({"max_session_duration_seconds": 3600}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["max_session_duration_seconds"], 100);
    assert_eq!(c.stack.db.usage(&token, "realtime_seconds").await, (100, 0));
    let none_left = c.realtime(&token, json!({})).await;
    none_left.assert_problem(402, "quota-exceeded");
    assert_eq!(none_left.body["meter"], "realtime_seconds");
    assert_eq!(none_left.body["remaining"], 0);
    c.stack.vendor.verify().await;

    // 59 seconds left is under AssemblyAI's 60-second minimum: refused, nothing minted.
    plans::set(
        &c.stack.app.db,
        "free",
        &PlanChange {
            stripe_price_id: None,
            limits: vec![(Meter::RealtimeSeconds, 159)],
        },
    )
    .await
    .unwrap();
    let short = c.realtime(&token, json!({})).await;
    short.assert_problem(402, "quota-exceeded");
    assert_eq!(short.body["remaining"], 59);
}

async fn user(c: &Ctx, email: &str) -> (UserId, String) {
    let (id, token) = c.stack.db.session(email, 3600).await;
    (UserId::new(id), token)
}

#[tokio::test]
async fn a_vendor_billing_more_than_was_held_closes_the_meter_until_it_resets() {
    let c = ctx(&[(Meter::TranscriptionSeconds, 1000)], &[]).await;
    let (owner, token) = user(&c, "over@example.com").await;
    let ledger = &c.stack.app.ledger;
    let hold = ledger
        .reserve(
            owner,
            Meter::TranscriptionSeconds,
            Units::Exactly(10),
            "transcription:a",
            None,
        )
        .await
        .unwrap();
    assert_eq!(hold.units, 10);
    // Holding the same subject again is the same hold, not a second one.
    let again = ledger
        .reserve(
            owner,
            Meter::TranscriptionSeconds,
            Units::Exactly(10),
            "transcription:a",
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, hold);
    assert_eq!(
        c.stack.db.usage(&token, "transcription_seconds").await,
        (0, 10)
    );
    assert!(
        ledger
            .commit(Meter::TranscriptionSeconds, "transcription:a", 12)
            .await
            .unwrap()
    );
    // A redelivered commit changes nothing.
    assert!(
        !ledger
            .commit(Meter::TranscriptionSeconds, "transcription:a", 12)
            .await
            .unwrap()
    );
    assert_eq!(
        c.stack.db.usage(&token, "transcription_seconds").await,
        (12, 0)
    );
    let Err(Error::QuotaExceeded(q)) = ledger
        .reserve(
            owner,
            Meter::TranscriptionSeconds,
            Units::Exactly(1),
            "transcription:b",
            None,
        )
        .await
    else {
        panic!("an overdrawn meter refuses")
    };
    assert!(q.overdrawn);
    assert_eq!(q.remaining, 988);
    let billing = c.billing(&token).await;
    assert_eq!(
        billing.body["usage"]["transcription_seconds"]["overdrawn"],
        true
    );
}

#[tokio::test]
async fn releases_give_back_and_the_reconciler_settles_what_no_job_settled() {
    let c = ctx(&[(Meter::SpeechCharacters, 50)], &[]).await;
    let (owner, token) = user(&c, "recon@example.com").await;
    let ledger: &Ledger = &c.stack.app.ledger;
    let _held = ledger
        .reserve(
            owner,
            Meter::SpeechCharacters,
            Units::Exactly(30),
            "tts:released",
            None,
        )
        .await
        .unwrap();
    assert!(
        ledger
            .release(Meter::SpeechCharacters, "tts:released")
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .release(Meter::SpeechCharacters, "tts:released")
            .await
            .unwrap()
    );
    assert_eq!(c.stack.db.usage(&token, "speech_characters").await, (0, 0));

    // A job created through the route, completed without its worker settling (a Lambda that died
    // between the two writes), and a hold whose job row never came to be.
    let created = c.speak(&token, "twelve chars").await;
    assert_eq!(created.status, 202);
    let id = created.body["tts"]["id"].as_str().unwrap().to_owned();
    c.stack
        .db
        .client
        .execute(
            "UPDATE tts_jobs SET status = 'completed', object_key = 'k', size_bytes = 1, text = NULL
              WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let _held = ledger
        .reserve(
            owner,
            Meter::SpeechCharacters,
            Units::Exactly(20),
            "tts:00000000-0000-7000-8000-000000000000",
            None,
        )
        .await
        .unwrap();
    // Young holds are left to their jobs.
    assert_eq!(ledger.reconcile(100).await.unwrap().committed, 0);
    c.stack
        .db
        .client
        .execute(
            "UPDATE usage_reservations SET created_at = now() - interval '10 minutes'",
            &[],
        )
        .await
        .unwrap();
    let report = ledger.reconcile(100).await.unwrap();
    assert_eq!((report.committed, report.released), (1, 1));
    assert_eq!(c.stack.db.usage(&token, "speech_characters").await, (12, 0));
    assert_eq!(
        ledger.reconcile(100).await.unwrap().committed,
        0,
        "idempotent"
    );
}

#[tokio::test]
async fn the_operator_cap_is_checked_at_the_ledger_for_every_vendor() {
    let c = ctx(&[], &[("ASSEMBLYAI_DAILY_SECONDS_CAP", "100")]).await;
    let (owner, _) = user(&c, "cap@example.com").await;
    let ledger = &c.stack.app.ledger;
    let _held = ledger
        .reserve(
            owner,
            Meter::TranscriptionSeconds,
            Units::Exactly(90),
            "transcription:x",
            Some(Vendor::AssemblyAi),
        )
        .await
        .unwrap();
    let refused = ledger
        .reserve(
            owner,
            Meter::RealtimeSeconds,
            Units::UpTo {
                at_least: 60,
                at_most: 600,
            },
            "realtime:y",
            Some(Vendor::AssemblyAi),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::BudgetExhausted(Vendor::AssemblyAi))),
        "{refused:?}"
    );
    // A release gives the day's budget back.
    ledger
        .release(Meter::TranscriptionSeconds, "transcription:x")
        .await
        .unwrap();
    let _held = ledger
        .reserve(
            owner,
            Meter::RealtimeSeconds,
            Units::UpTo {
                at_least: 60,
                at_most: 100,
            },
            "realtime:y",
            Some(Vendor::AssemblyAi),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn entitlement_follows_the_subscription_state_by_the_documented_policy() {
    let c = ctx(&[], &[]).await;
    let (owner, token) = user(&c, "sub@example.com").await;
    let pro = plans::set(
        &c.stack.app.db,
        "pro",
        &PlanChange {
            stripe_price_id: Some("price_pro123".into()),
            limits: vec![(Meter::TranscriptionSeconds, 36_000)],
        },
    )
    .await
    .unwrap();
    // A new plan starts from the free plan's limits, except what was given.
    let free = plans::get(&c.stack.app.db, "free").await.unwrap().unwrap();
    assert_eq!(pro.limits.speech_characters, free.limits.speech_characters);
    assert_eq!(pro.limits.transcription_seconds, 36_000);
    // Changing one limit keeps the others and the price.
    let pro = plans::set(
        &c.stack.app.db,
        "pro",
        &PlanChange {
            stripe_price_id: None,
            limits: vec![(Meter::CallMinutes, 900)],
        },
    )
    .await
    .unwrap();
    assert_eq!(pro.stripe_price_id.as_deref(), Some("price_pro123"));
    assert_eq!(
        (pro.limits.call_minutes, pro.limits.transcription_seconds),
        (900, 36_000)
    );
    assert!(matches!(
        plans::set(&c.stack.app.db, "team", &PlanChange::default()).await,
        Err(Error::Invalid(_))
    ));

    let billing = c.billing(&token).await;
    assert_eq!(billing.status, 200, "{}", billing.body);
    assert_eq!(billing.body["plan"], "free");
    assert_eq!(billing.body["status"], Value::Null);
    assert_eq!(
        billing.body["usage"]["transcription_seconds"]["limit"],
        3600
    );
    assert_eq!(
        billing.body["usage"]["storage_bytes"]["resets_at"],
        Value::Null
    );
    for meter in Meter::ALL {
        let m = &billing.body["usage"][meter.as_str()];
        assert_eq!(
            (m["used"].as_i64(), m["reserved"].as_i64()),
            (Some(0), Some(0)),
            "{meter}"
        );
    }

    let set_status = |status: &'static str, past_due_days: Option<i32>| {
        let client = &c.stack.db.client;
        async move {
            client
                .execute(
                    "INSERT INTO subscriptions (stripe_subscription_id, user_id, stripe_customer_id,
                         stripe_price_id, status, current_period_start, current_period_end,
                         past_due_since, fetched_at)
                     VALUES ('sub_1', $1, 'cus_1', 'price_pro123', $2, now() - interval '3 days',
                             now() + interval '27 days',
                             now() - make_interval(days => $3), now())
                     ON CONFLICT (stripe_subscription_id) DO UPDATE SET status = EXCLUDED.status,
                         past_due_since = EXCLUDED.past_due_since",
                    &[&owner.get(), &status, &past_due_days.unwrap_or(0)],
                )
                .await
                .unwrap();
        }
    };
    for (status, days, plan) in [
        ("active", None, "pro"),
        ("trialing", None, "pro"),
        ("past_due", Some(2), "pro"),
        ("past_due", Some(8), "free"),
        ("incomplete", None, "free"),
        ("incomplete_expired", None, "free"),
        ("paused", None, "free"),
        ("canceled", None, "free"),
        ("unpaid", None, "free"),
    ] {
        set_status(status, days).await;
        let b = c.billing(&token).await.body;
        assert_eq!(b["plan"], plan, "{status} {days:?}");
        assert_eq!(b["status"], status);
        if plan == "pro" {
            assert_eq!(b["usage"]["transcription_seconds"]["limit"], 36_000);
            assert!(b["current_period_end"].is_string());
        }
    }
}

#[tokio::test]
async fn calls_start_only_with_minutes_left_and_commit_their_minutes_when_they_end() {
    use shared::domain::calls::numbers::handling_of_number;
    use shared::domain::calls::{OutboundRequest, Provider, minutes};
    let stack = TestStack::builder("billing-calls")
        .queue("calls", "call-worker", "CALL_QUEUE_URL")
        .build()
        .await;
    let db = &stack.db.client;
    let (user, token) = stack.db.session("caller@example.com", 3600).await;
    for (e164, provider) in [("+15550001111", "telnyx"), ("+15550002222", "signalwire")] {
        db.execute(
            "INSERT INTO phone_numbers (id, e164, provider, owner_id) VALUES (gen_random_uuid(), $1, $2, $3)",
            &[&e164, &provider, &user],
        )
        .await
        .unwrap();
    }
    db.execute("UPDATE plans SET call_minutes = 0 WHERE name = 'free'", &[])
        .await
        .unwrap();
    let calls = stack.app.calls(stack.sqs.clone()).unwrap();
    let request = || OutboundRequest {
        from: "+15550001111".into(),
        to: "+15559990000".into(),
    };
    let refused = calls.place(UserId::new(user), request()).await;
    assert!(
        matches!(&refused, Err(Error::QuotaExceeded(q)) if q.meter == Meter::CallMinutes),
        "{refused:?}"
    );
    let count =
        |sql: &'static str| async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) };
    assert_eq!(
        count("SELECT count(*) FROM calls").await,
        0,
        "a refused call is not kept"
    );
    // An inbound SignalWire call to the same user is answered with <Reject/> (no handling).
    let handling = handling_of_number(&stack.app.db, Provider::Signalwire, "+15550002222")
        .await
        .unwrap();
    assert!(handling.is_some());
    let admitted = minutes::admit_inbound_signalwire(&stack.app.ledger, handling.clone(), "CAnone")
        .await
        .unwrap();
    assert!(admitted.is_none());

    db.execute(
        "UPDATE plans SET call_minutes = 90 WHERE name = 'free'",
        &[],
    )
    .await
    .unwrap();
    let placed = calls.place(UserId::new(user), request()).await.unwrap();
    // A call holds what is left, up to an hour; the next inbound call gets the rest.
    assert_eq!(stack.db.usage(&token, "call_minutes").await, (0, 60));
    let admitted = minutes::admit_inbound_signalwire(&stack.app.ledger, handling, "CA2")
        .await
        .unwrap();
    assert!(admitted.is_some());
    assert_eq!(stack.db.usage(&token, "call_minutes").await, (0, 90));
    // The outbound call ends after 61 seconds: two minutes, as carriers round.
    db.execute(
        "UPDATE calls SET status = 'completed', duration_seconds = 61 WHERE id = $1",
        &[&placed.id],
    )
    .await
    .unwrap();
    minutes::settle(&stack.app.ledger, &stack.app.db, placed.id)
        .await
        .unwrap();
    assert_eq!(stack.db.usage(&token, "call_minutes").await, (2, 30));
}

/// `cargo xtask plan set` and `cargo xtask usage`, run as the real binary against a test database.
#[tokio::test]
async fn the_plan_and_usage_commands_change_plans_without_a_deploy() {
    let db = parley_tests::TestDb::create().await;
    let xtask = parley_tests::workspace_root().join("target/debug/xtask");
    assert!(
        xtask.exists(),
        "build the workspace's binaries first (cargo xtask test does)"
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&xtask)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "plan",
        "set",
        "pro",
        "--price",
        "price_cli1",
        "--call-minutes",
        "500",
    ]);
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["stripe_price_id"], "price_cli1");
    assert_eq!(plan["limits"]["call_minutes"], 500);
    assert_eq!(
        plan["limits"]["speech_characters"], 10000,
        "from the free plan"
    );
    let (ok, out, _) = run(&["plan", "set", "pro", "--storage-bytes", "5"]);
    assert!(ok);
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            plan["limits"]["call_minutes"].as_i64(),
            plan["limits"]["storage_bytes"].as_i64()
        ),
        (Some(500), Some(5)),
        "flags not given keep their value"
    );
    let (ok, _, err) = run(&["plan", "set", "team"]);
    assert!(!ok && err.contains("price"), "{err}");
    let (ok, _, err) = run(&["plan", "set", "pro", "--minutes", "5"]);
    assert!(!ok && err.contains("--minutes"), "{err}");

    db.session("cli@example.com", 3600).await;
    let (ok, out, err) = run(&["usage", "cli@example.com"]);
    assert!(ok, "{err}");
    assert!(out.contains("plan free"), "{out}");
    for meter in Meter::ALL {
        assert!(out.contains(meter.as_str()), "{out}");
    }
    let (ok, _, err) = run(&["usage", "nobody@example.com"]);
    assert!(!ok && err.contains("no user"), "{err}");
}
