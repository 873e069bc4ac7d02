//! Stripe billing against real PostgreSQL, moto (the billing queue) and wiremock playing Stripe,
//! asserting the exact form bodies and headers Stripe's API takes: checkout and the customer it
//! reuses, the portal, the signed webhook (rotation, duplicates, forgeries), the worker applying
//! events in any order, `Stripe-Should-Retry`, and cancellation at account deletion.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parley_tests::{Answer, Event, TestStack, bearer, dead_database_url, settings_with};
use serde_json::{Value, json};
use shared::App;
use shared::domain::UserId;
use shared::domain::billing::stripe::{BillingJob, BillingWorker, Outcome, cancel_subscriptions};
use shared::platform::lambda::now_ms;
use shared::platform::queue::Delivery;
use shared::vendors::stripe::client::{Cancelled, Stripe, StripeRetry};
use shared::vendors::stripe::config::API_VERSION;
use shared::vendors::stripe::signature;
use uuid::Uuid;
use wiremock::matchers::{body_string, header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk_test_parleyWiremockKey";
const APP_URL: &str = "https://app.example.com";
const PRICE: &str = "price_1ProMonthly";
const OLD_SECRET: &str = "whsec_old_endpoint_secret";
const NEW_SECRET: &str = "whsec_new_endpoint_secret";

async fn stack() -> TestStack {
    let stack = TestStack::builder("billing")
        .queue("billing", "billing-worker", "BILLING_QUEUE_URL")
        .vendor(&["STRIPE_BASE_URL"])
        .env(&[
            ("STRIPE_SECRET_KEY", KEY),
            ("APP_URL", APP_URL),
            (
                "STRIPE_WEBHOOK_SECRET",
                &format!("{NEW_SECRET}, {OLD_SECRET}"),
            ),
            // The account worker is built in one test; only its sweeper sends.
            (
                "ACCOUNT_QUEUE_URL",
                "http://127.0.0.1:1/123456789012/account-unused",
            ),
        ])
        .build()
        .await;
    stack
        .db
        .client
        .execute(
            "INSERT INTO plans (name, stripe_price_id, transcription_seconds, speech_characters,
                                translation_characters, realtime_seconds, call_minutes, storage_bytes)
             VALUES ('pro', $1, 36000, 500000, 1000000, 18000, 600, 53687091200)",
            &[&PRICE],
        )
        .await
        .unwrap();
    stack
}

/// A Stripe POST exactly as the API takes it: the key, the pinned version, a form body, a key.
fn stripe_post(route: &str, body: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(route))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("stripe-version", API_VERSION))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(header_exists("idempotency-key"))
        .and(body_string(body))
}

fn stripe_get(route: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(route))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("stripe-version", API_VERSION))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn checkout_body(customer: &str, user: i32) -> String {
    format!(
        "mode=subscription&line_items[0][price]={PRICE}&line_items[0][quantity]=1&customer={customer}\
         &client_reference_id={user}&success_url={}&cancel_url={}\
         &subscription_data[metadata][user_id]={user}",
        enc("https://app.example.com/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
        enc("https://app.example.com/billing?checkout=cancelled"),
    )
}

fn session_answer(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": id, "object": "checkout.session", "mode": "subscription", "status": "open",
        "url": format!("https://checkout.stripe.com/c/pay/{id}")
    }))
}

fn subscription(id: &str, customer: &str, status: &str, user: Option<i32>) -> Value {
    let metadata = match user {
        Some(u) => json!({"user_id": u.to_string()}),
        None => json!({}),
    };
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": false, "metadata": metadata,
        "items": {"object": "list", "data": [{
            "id": "si_1", "object": "subscription_item",
            "price": {"id": PRICE, "object": "price"}, "quantity": 1,
            "current_period_start": 1_795_000_000, "current_period_end": 1_797_592_000
        }]}
    })
}

async fn serve(s: &TestStack, function: &str, event: Event) -> Answer {
    let app = &s.app;
    let req = event.request();
    let response = match function {
        "billing-checkout" => {
            let billing = app.stripe_billing().unwrap();
            app.http
                .serve(req, |req| billing_checkout::handle(app, &billing, req))
                .await
        }
        "billing-portal" => {
            let billing = app.stripe_billing().unwrap();
            app.http
                .serve(req, |req| billing_portal::handle(app, &billing, req))
                .await
        }
        "stripe-webhook" => {
            let receiver = app.stripe_receiver(s.sqs.clone()).unwrap();
            app.http
                .serve(req, |req| stripe_webhook::handle(&receiver, req))
                .await
        }
        other => panic!("no function {other}"),
    };
    Answer::from_response(response.unwrap())
}

fn checkout(token: &str, body: &str) -> Event {
    Event::new("POST", "/api/billing/checkout")
        .header("authorization", &bearer(token))
        .header("content-type", "application/json")
        .body(body)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": API_VERSION, "created": now(),
        "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": kind
    })
    .to_string()
}

fn webhook(body: &str, signature_header: &str) -> Event {
    Event::new("POST", "/webhooks/stripe")
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", signature_header)
        .body(body)
}

fn signed(body: &str, secrets: &[&str]) -> Event {
    webhook(body, &signature::header(secrets, now(), body.as_bytes()))
}

async fn count(s: &TestStack, sql: &str) -> i64 {
    s.db.client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Delivers `body` through the real receiver and returns the stored event's id.
async fn store(s: &TestStack, body: &str) -> Uuid {
    let answer = serve(s, "stripe-webhook", signed(body, &[NEW_SECRET])).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let event_id = serde_json::from_str::<Value>(body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.db.client
        .query_one(
            "SELECT id FROM webhook_events WHERE vendor = 'stripe' AND event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn apply(
    worker: &BillingWorker,
    id: Uuid,
    receive_count: u32,
) -> Result<Outcome, shared::domain::jobs::Retry> {
    worker
        .process(
            &BillingJob::Event(id),
            &Delivery {
                message_id: Some(id.to_string()),
                receive_count,
            },
            now_ms() + 30_000,
        )
        .await
}

async fn stored_subscription(s: &TestStack, id: &str) -> Option<(String, Option<bool>, String)> {
    s.db.client
        .query_opt(
            "SELECT status, past_due_since IS NOT NULL, stripe_price_id FROM subscriptions
              WHERE stripe_subscription_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

async fn link(s: &TestStack, user: i32, customer: &str) {
    s.db.client
        .execute(
            "INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)",
            &[&user, &customer],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn checkout_creates_one_customer_then_reuses_it_with_the_documented_session_body() {
    let s = stack().await;
    let (user, token) = s.db.session("buyer+1@example.com", 3600).await;
    stripe_post(
        "/v1/customers",
        &format!("email=buyer%2B1%40example.com&metadata[user_id]={user}"),
    )
    .respond_with(
        ResponseTemplate::new(200).set_body_json(json!({"id": "cus_Buyer1", "object": "customer"})),
    )
    .expect(1)
    .mount(&s.vendor)
    .await;
    stripe_post("/v1/checkout/sessions", &checkout_body("cus_Buyer1", user))
        .respond_with(session_answer("cs_test_a1"))
        .expect(2)
        .mount(&s.vendor)
        .await;

    let first = serve(
        &s,
        "billing-checkout",
        checkout(&token, r#"{"plan":"pro"}"#),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        first.body,
        json!({"url": "https://checkout.stripe.com/c/pay/cs_test_a1"})
    );
    // The customer is stored, and a second checkout reuses it (the customer mock expects one call).
    let second = serve(
        &s,
        "billing-checkout",
        checkout(&token, r#"{"plan":"pro"}"#),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM billing_customers WHERE stripe_customer_id = 'cus_Buyer1'"
        )
        .await,
        1
    );
    s.vendor.verify().await;

    // Every POST carried an Idempotency-Key derived from the call: the same checkout twice in a
    // minute reuses it; the customer's names the user.
    let requests = s.vendor.received_requests().await.unwrap();
    let key = |r: &Request| {
        r.headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(key(&requests[0]).starts_with(&format!("parley-customer-{user}-")));
    assert!(key(&requests[1]).starts_with(&format!("parley-checkout-{user}-")));
    assert!(requests.iter().all(|r| key(r).len() <= 255));
    // The body never names both a customer and an email.
    for r in &requests[1..] {
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.contains("customer=cus_Buyer1") && !body.contains("customer_email"));
    }
}

/// Answers each customer creation with a new id, as Stripe would for two different keys.
struct NewCustomerEachTime(Arc<AtomicUsize>);

impl Respond for NewCustomerEachTime {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200)
            .set_delay(Duration::from_millis(200))
            .set_body_json(json!({"id": format!("cus_Race{n}"), "object": "customer"}))
    }
}

#[tokio::test]
async fn concurrent_checkouts_never_store_two_customers() {
    let s = stack().await;
    let (user, token) = s.db.session("racer@example.com", 3600).await;
    let created = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(NewCustomerEachTime(created.clone()))
        .mount(&s.vendor)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(session_answer("cs_test_race"))
        .mount(&s.vendor)
        .await;
    let (a, b) = tokio::join!(
        serve(
            &s,
            "billing-checkout",
            checkout(&token, r#"{"plan":"pro"}"#)
        ),
        serve(
            &s,
            "billing-checkout",
            checkout(&token, r#"{"plan":"pro"}"#)
        ),
    );
    assert_eq!((a.status, b.status), (201, 201), "{} {}", a.body, b.body);
    let stored: String =
        s.db.client
            .query_one(
                "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap()
            .get(0);
    let requests = s.vendor.received_requests().await.unwrap();
    let customers: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1/customers")
        .collect();
    // Both creations sent the same key, so Stripe would have made one customer; and even when it
    // answered with two, both sessions went to the one stored first.
    if customers.len() == 2 {
        assert_eq!(
            customers[0].headers.get("idempotency-key"),
            customers[1].headers.get("idempotency-key")
        );
    }
    let sessions: Vec<String> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1/checkout/sessions")
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions
            .iter()
            .all(|b| b.contains(&format!("customer={stored}&"))),
        "{sessions:?}"
    );
    assert_eq!(count(&s, "SELECT count(*) FROM billing_customers").await, 1);
}

#[tokio::test]
async fn checkout_refuses_plans_not_for_sale_and_existing_subscribers_without_calling_stripe() {
    let s = stack().await;
    let (user, token) = s.db.session("picky@example.com", 3600).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&s.vendor)
        .await;
    for (body, message) in [
        (
            r#"{"plan":"free"}"#,
            "this plan is not sold (it has no Stripe price)",
        ),
        (r#"{"plan":"enterprise"}"#, "no such plan"),
        (
            r#"{"plan":"Pro Plan"}"#,
            "must be a plan name (lower-case letters, digits, - and _; at most 32)",
        ),
    ] {
        let answer = serve(&s, "billing-checkout", checkout(&token, body)).await;
        answer.assert_problem(422, "validation-failed");
        assert_eq!(
            answer.body["errors"],
            json!([{"field": "plan", "message": message}]),
            "{body}"
        );
    }
    serve(
        &s,
        "billing-checkout",
        checkout(&token, r#"{"plan":"pro","extra":1}"#),
    )
    .await
    .assert_problem(422, "validation-failed");
    serve(&s, "billing-checkout", checkout(&token, r#"{}"#))
        .await
        .assert_problem(422, "validation-failed");
    serve(&s, "billing-checkout", checkout(&token, "not json"))
        .await
        .assert_problem(400, "malformed-request");
    serve(
        &s,
        "billing-checkout",
        Event::new("POST", "/api/billing/checkout")
            .header("content-type", "application/json")
            .body(r#"{"plan":"pro"}"#),
    )
    .await
    .assert_problem(401, "unauthenticated");

    // Someone who already pays changes plans in the portal instead of buying a second subscription.
    link(&s, user, "cus_Subscriber").await;
    s.db.client
        .execute(
            "INSERT INTO subscriptions (stripe_subscription_id, user_id, stripe_customer_id,
                                        stripe_price_id, status, fetched_at)
             VALUES ('sub_Existing', $1, 'cus_Subscriber', $2, 'active', now())",
            &[&user, &PRICE],
        )
        .await
        .unwrap();
    let again = serve(
        &s,
        "billing-checkout",
        checkout(&token, r#"{"plan":"pro"}"#),
    )
    .await;
    again.assert_problem(409, "conflict");
    assert!(again.body["detail"].as_str().unwrap().contains("portal"));
    s.vendor.verify().await;
}

#[tokio::test]
async fn the_portal_needs_a_customer_and_comes_back_to_the_app() {
    let s = stack().await;
    let (user, token) = s.db.session("portal@example.com", 3600).await;
    let portal =
        || Event::new("POST", "/api/billing/portal").header("authorization", &bearer(&token));
    let none = serve(&s, "billing-portal", portal()).await;
    none.assert_problem(409, "conflict");
    assert!(
        none.body["detail"]
            .as_str()
            .unwrap()
            .contains("subscribe first")
    );

    link(&s, user, "cus_Portal1").await;
    stripe_post(
        "/v1/billing_portal/sessions",
        &format!(
            "customer=cus_Portal1&return_url={}",
            enc("https://app.example.com/billing")
        ),
    )
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "id": "bps_1Portal", "object": "billing_portal.session", "customer": "cus_Portal1",
        "return_url": "https://app.example.com/billing",
        "url": "https://billing.stripe.com/p/session/test_YWNjdA"
    })))
    .expect(1)
    .mount(&s.vendor)
    .await;
    let answer = serve(&s, "billing-portal", portal()).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"url": "https://billing.stripe.com/p/session/test_YWNjdA"})
    );
    // `{}` is the same request; anything else is not.
    serve(
        &s,
        "billing-portal",
        portal()
            .header("content-type", "application/json")
            .body(r#"{"customer":"cus_x"}"#),
    )
    .await
    .assert_problem(422, "validation-failed");
    s.vendor.verify().await;
    let requests = s.vendor.received_requests().await.unwrap();
    let key = requests[0].headers.get("idempotency-key").unwrap();
    assert!(
        key.to_str()
            .unwrap()
            .starts_with(&format!("parley-portal-{user}-"))
    );
}

#[tokio::test]
async fn the_webhook_takes_either_secret_during_rotation_stores_once_and_enqueues() {
    let s = stack().await;
    let body = event(
        "evt_1Rotation",
        "customer.subscription.updated",
        subscription("sub_R1", "cus_R1", "active", None),
    );
    // Stripe signs with both secrets while one is rolled; Parley holds both.
    for secrets in [&[NEW_SECRET][..], &[OLD_SECRET], &[OLD_SECRET, NEW_SECRET]] {
        let answer = serve(&s, "stripe-webhook", signed(&body, secrets)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let first = serve(
        &s,
        "stripe-webhook",
        signed(
            &event("evt_1Other", "invoice.paid", json!({"id": "in_1"})),
            &[OLD_SECRET],
        ),
    )
    .await;
    assert_eq!(first.body, json!({"received": true, "duplicate": false}));
    let again = serve(&s, "stripe-webhook", signed(&body, &[NEW_SECRET])).await;
    assert_eq!(again.body, json!({"received": true, "duplicate": true}));
    assert_eq!(
        count(&s, "SELECT count(*) FROM webhook_events WHERE vendor = 'stripe' AND event_id = 'evt_1Rotation'").await,
        1
    );
    // One message per stored event, naming Parley's id only.
    let queue = s.queue.as_ref().unwrap();
    let received = s
        .sqs
        .receive_message()
        .queue_url(&queue.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<Value> = received
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let ids: Vec<Uuid> =
        s.db.client
            .query("SELECT id FROM webhook_events ORDER BY received_at", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    for id in ids {
        assert!(
            bodies.contains(&json!({"event": id.to_string()})),
            "{bodies:?}"
        );
    }
}

#[tokio::test]
async fn forged_stale_and_thin_events_are_refused_before_any_database_query() {
    let s = stack().await;
    let body = event(
        "evt_1Forged",
        "customer.subscription.deleted",
        subscription("sub_F1", "cus_F1", "canceled", None),
    );
    let cases = [
        (
            signed(&body, &["whsec_someone_elses_secret"]),
            401,
            "invalid-callback-credentials",
        ),
        (
            webhook(
                &body,
                &signature::header(&[NEW_SECRET], now() - 301, body.as_bytes()),
            ),
            401,
            "invalid-callback-credentials",
        ),
        (
            webhook(
                &body,
                &format!(
                    "t={},v0={}",
                    now(),
                    signature::signature(NEW_SECRET, now(), body.as_bytes())
                ),
            ),
            401,
            "invalid-callback-credentials",
        ),
        (
            webhook(&body, "garbage"),
            401,
            "invalid-callback-credentials",
        ),
        (
            Event::new("POST", "/webhooks/stripe")
                .header("content-type", "application/json")
                .body(&body),
            401,
            "invalid-callback-credentials",
        ),
    ];
    // The same receiver on a database that is down: a refusal that needed the database would be a 503.
    let dead = App::from_settings(
        "stripe-webhook",
        settings_with(
            &dead_database_url(),
            &[
                ("STRIPE_WEBHOOK_SECRET", NEW_SECRET),
                ("BILLING_QUEUE_URL", &s.queue.as_ref().unwrap().queue_url),
            ],
        ),
    );
    let receiver = dead.stripe_receiver(s.sqs.clone()).unwrap();
    for (request, status, slug) in cases {
        let json = request.to_json();
        for app in [&s.app, &dead] {
            let req = lambda_http::request::from_str(&json.to_string()).unwrap();
            let response = if std::ptr::eq(app, &dead) {
                app.http
                    .serve(req, |req| stripe_webhook::handle(&receiver, req))
                    .await
            } else {
                let live = app.stripe_receiver(s.sqs.clone()).unwrap();
                app.http
                    .serve(req, |req| stripe_webhook::handle(&live, req))
                    .await
            };
            Answer::from_response(response.unwrap()).assert_problem(status, slug);
        }
    }
    // A thin (v2) notification, correctly signed, is refused as the SDKs refuse it.
    let thin = json!({"id": "evt_test_65R9", "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered", "created": "2026-09-17T06:20:52.246Z"}).to_string();
    let answer = serve(&s, "stripe-webhook", signed(&thin, &[NEW_SECRET])).await;
    answer.assert_problem(400, "malformed-request");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("thin event")
    );
    // A genuine event is what the dead database would have been asked about.
    let genuine = signed(&body, &[NEW_SECRET]).to_json();
    let req = lambda_http::request::from_str(&genuine.to_string()).unwrap();
    let response = dead
        .http
        .serve(req, |req| stripe_webhook::handle(&receiver, req))
        .await;
    Answer::from_response(response.unwrap()).assert_problem(503, "service-unavailable");

    assert_eq!(count(&s, "SELECT count(*) FROM webhook_events").await, 0);
    let received = s
        .sqs
        .receive_message()
        .queue_url(&s.queue.as_ref().unwrap().queue_url)
        .send()
        .await
        .unwrap();
    assert!(received.messages().is_empty());
}

async fn answer_subscription(vendor: &MockServer, sub: Value) {
    vendor.reset().await;
    let id = sub["id"].as_str().unwrap().to_owned();
    stripe_get(&format!("/v1/subscriptions/{id}"))
        .respond_with(ResponseTemplate::new(200).set_body_json(sub))
        .mount(vendor)
        .await;
}

#[tokio::test]
async fn events_out_of_order_and_repeated_end_in_the_state_stripe_has_now() {
    let s = stack().await;
    let (user, _) = s.db.session("ordered@example.com", 3600).await;
    link(&s, user, "cus_Order1").await;
    let worker = s.app.billing_worker().unwrap();
    let created = store(
        &s,
        &event(
            "evt_1Created",
            "customer.subscription.created",
            subscription("sub_Order1", "cus_Order1", "active", Some(user)),
        ),
    )
    .await;
    let updated = store(
        &s,
        &event(
            "evt_1Updated",
            "customer.subscription.updated",
            subscription("sub_Order1", "cus_Order1", "active", Some(user)),
        ),
    )
    .await;
    let deleted = store(
        &s,
        &event(
            "evt_1Deleted",
            "customer.subscription.deleted",
            subscription("sub_Order1", "cus_Order1", "canceled", Some(user)),
        ),
    )
    .await;

    // Stripe has it active: `created` applies.
    answer_subscription(
        &s.vendor,
        subscription("sub_Order1", "cus_Order1", "active", Some(user)),
    )
    .await;
    let outcome = apply(&worker, created, 1).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Synced {
            subscription: "sub_Order1".into(),
            status: "active".into()
        }
    );
    assert_eq!(
        stored_subscription(&s, "sub_Order1").await,
        Some(("active".into(), Some(false), PRICE.into()))
    );

    // Then it is cancelled; `deleted` arrives before the older `updated`.
    answer_subscription(
        &s.vendor,
        subscription("sub_Order1", "cus_Order1", "canceled", Some(user)),
    )
    .await;
    apply(&worker, deleted, 1).await.unwrap();
    assert_eq!(
        stored_subscription(&s, "sub_Order1").await.unwrap().0,
        "canceled"
    );
    // The older `updated` (its snapshot says active) re-fetches: Stripe says canceled, so it stays.
    let late = apply(&worker, updated, 1).await.unwrap();
    assert_eq!(
        late,
        Outcome::Synced {
            subscription: "sub_Order1".into(),
            status: "canceled".into()
        }
    );
    assert_eq!(
        stored_subscription(&s, "sub_Order1").await.unwrap().0,
        "canceled"
    );
    // A redelivery of a processed event changes nothing and asks Stripe nothing.
    s.vendor.reset().await;
    assert_eq!(
        apply(&worker, deleted, 2).await.unwrap(),
        Outcome::Ignored("already processed")
    );
    assert!(s.vendor.received_requests().await.unwrap().is_empty());

    // A read older than the stored one never overwrites it (two workers racing).
    let older: shared::vendors::stripe::wire::Subscription = serde_json::from_value(subscription(
        "sub_Order1",
        "cus_Order1",
        "active",
        Some(user),
    ))
    .unwrap();
    let stale_read = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let written =
        shared::domain::billing::stripe::write(&s.app.db, &older, UserId::new(user), stale_read)
            .await
            .unwrap();
    assert_eq!(written, None);
    assert_eq!(
        stored_subscription(&s, "sub_Order1").await.unwrap().0,
        "canceled"
    );
    // Every event is processed and owned by the user (account deletion removes their bodies).
    assert_eq!(
        count(&s, &format!("SELECT count(*) FROM webhook_events WHERE status = 'processed' AND owner_id = {user}")).await,
        3
    );
}

#[tokio::test]
async fn a_failed_payment_marks_past_due_since_and_a_paid_invoice_clears_it() {
    let s = stack().await;
    let (user, _) = s.db.session("late@example.com", 3600).await;
    link(&s, user, "cus_Late1").await;
    let worker = s.app.billing_worker().unwrap();
    // Current API versions name the subscription under `parent`; older ones at the top level.
    let failed = store(&s, &event("evt_1Failed", "invoice.payment_failed", json!({
        "id": "in_1Late", "object": "invoice", "customer": "cus_Late1", "status": "open",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_Late1"}}
    }))).await;
    let failed_again = store(&s, &event("evt_1FailedAgain", "invoice.payment_failed", json!({
        "id": "in_2Late", "object": "invoice", "customer": "cus_Late1", "subscription": "sub_Late1"
    }))).await;
    let paid = store(&s, &event("evt_1Paid", "invoice.paid", json!({
        "id": "in_3Late", "object": "invoice", "customer": "cus_Late1",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_Late1"}}
    }))).await;
    let one_off = store(
        &s,
        &event(
            "evt_1OneOff",
            "invoice.paid",
            json!({"id": "in_4", "object": "invoice", "parent": null}),
        ),
    )
    .await;

    answer_subscription(
        &s.vendor,
        subscription("sub_Late1", "cus_Late1", "past_due", None),
    )
    .await;
    apply(&worker, failed, 1).await.unwrap();
    let since = || async {
        s.db.client
            .query_one("SELECT past_due_since FROM subscriptions WHERE stripe_subscription_id = 'sub_Late1'", &[])
            .await
            .unwrap()
            .get::<_, Option<time::OffsetDateTime>>(0)
    };
    let first = since()
        .await
        .expect("past_due_since is set on entering past_due");
    tokio::time::sleep(Duration::from_millis(20)).await;
    apply(&worker, failed_again, 1).await.unwrap();
    assert_eq!(
        since().await,
        Some(first),
        "the grace period runs from the first time"
    );

    answer_subscription(
        &s.vendor,
        subscription("sub_Late1", "cus_Late1", "active", None),
    )
    .await;
    apply(&worker, paid, 1).await.unwrap();
    assert_eq!(
        stored_subscription(&s, "sub_Late1").await,
        Some(("active".into(), Some(false), PRICE.into()))
    );
    assert_eq!(
        apply(&worker, one_off, 1).await.unwrap(),
        Outcome::Ignored("an invoice of no subscription")
    );
}

#[tokio::test]
async fn a_completed_checkout_links_the_customer_and_strangers_and_other_types_are_acknowledged() {
    let s = stack().await;
    let (user, _) = s.db.session("new-customer@example.com", 3600).await;
    let worker = s.app.billing_worker().unwrap();
    let completed = store(&s, &event("evt_1Completed", "checkout.session.completed", json!({
        "id": "cs_test_done", "object": "checkout.session", "mode": "subscription", "status": "complete",
        "payment_status": "paid", "client_reference_id": user.to_string(), "customer": "cus_New1",
        "subscription": "sub_New1"
    }))).await;
    // The subscription's metadata is not needed: the session names the user.
    answer_subscription(
        &s.vendor,
        subscription("sub_New1", "cus_New1", "active", None),
    )
    .await;
    apply(&worker, completed, 1).await.unwrap();
    assert_eq!(
        count(&s, &format!("SELECT count(*) FROM billing_customers WHERE user_id = {user} AND stripe_customer_id = 'cus_New1'")).await,
        1
    );
    assert_eq!(
        stored_subscription(&s, "sub_New1").await.unwrap().0,
        "active"
    );

    // A customer no checkout of ours made, without our metadata: logged and acknowledged.
    let stranger = store(
        &s,
        &event(
            "evt_1Stranger",
            "customer.subscription.created",
            json!({"id": "sub_Stranger1"}),
        ),
    )
    .await;
    answer_subscription(
        &s.vendor,
        subscription("sub_Stranger1", "cus_Stranger1", "active", None),
    )
    .await;
    assert_eq!(
        apply(&worker, stranger, 1).await.unwrap(),
        Outcome::Ignored("a customer Parley does not know")
    );
    assert!(stored_subscription(&s, "sub_Stranger1").await.is_none());
    // A subscription made elsewhere for a Parley user (metadata user_id) is linked and stored.
    let (other, _) = s.db.session("dashboard-made@example.com", 3600).await;
    let tagged = store(
        &s,
        &event(
            "evt_1Tagged",
            "customer.subscription.created",
            json!({"id": "sub_Tagged1"}),
        ),
    )
    .await;
    answer_subscription(
        &s.vendor,
        subscription("sub_Tagged1", "cus_Tagged1", "trialing", Some(other)),
    )
    .await;
    apply(&worker, tagged, 1).await.unwrap();
    assert_eq!(
        stored_subscription(&s, "sub_Tagged1").await.unwrap().0,
        "trialing"
    );
    // Types Parley does not use are acknowledged without a call.
    s.vendor.reset().await;
    let other_type = store(
        &s,
        &event("evt_1Coupon", "coupon.created", json!({"id": "co_1"})),
    )
    .await;
    assert_eq!(
        apply(&worker, other_type, 1).await.unwrap(),
        Outcome::Ignored("an event type Parley does not use")
    );
    assert!(s.vendor.received_requests().await.unwrap().is_empty());
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM webhook_events WHERE status <> 'processed'"
        )
        .await,
        0
    );
}

fn fast(stripe: Stripe) -> Stripe {
    stripe.with_retry(StripeRetry {
        max_attempts: 3,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    })
}

#[tokio::test]
async fn stripe_should_retry_decides_and_the_status_rules_apply_without_it() {
    let s = stack().await;
    let stripe = fast(s.app.stripe().unwrap());
    let deadline = now_ms() + 20_000;
    // `false` on a 503: never repeated.
    stripe_get("/v1/subscriptions/sub_NoRetry")
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("stripe-should-retry", "false")
                .set_body_json(json!({"error": {"type": "api_error", "message": "try later"}})),
        )
        .expect(1)
        .mount(&s.vendor)
        .await;
    let e = stripe
        .subscription("sub_NoRetry", deadline)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    // `true` on a 400: repeated, and the second answer is taken.
    stripe_get("/v1/subscriptions/sub_Retry")
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("stripe-should-retry", "true")
                .set_body_json(
                    json!({"error": {"type": "invalid_request_error", "message": "lock_timeout"}}),
                ),
        )
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&s.vendor)
        .await;
    stripe_get("/v1/subscriptions/sub_Retry")
        .respond_with(ResponseTemplate::new(200).set_body_json(subscription(
            "sub_Retry",
            "cus_R",
            "active",
            None,
        )))
        .expect(1)
        .with_priority(2)
        .mount(&s.vendor)
        .await;
    assert_eq!(
        stripe
            .subscription("sub_Retry", deadline)
            .await
            .unwrap()
            .unwrap()
            .status,
        "active"
    );
    // Without the header: a 409 is repeated (up to three attempts), a 429 and a 402 are not.
    stripe_get("/v1/subscriptions/sub_Conflict")
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "busy"}})))
        .expect(3)
        .mount(&s.vendor)
        .await;
    assert_eq!(
        stripe
            .subscription("sub_Conflict", deadline)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    stripe_get("/v1/subscriptions/sub_Throttled")
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "slow down"}})))
        .expect(1)
        .mount(&s.vendor)
        .await;
    assert_eq!(
        stripe
            .subscription("sub_Throttled", deadline)
            .await
            .unwrap_err()
            .status(),
        Some(429)
    );
    // A retried POST sends the same Idempotency-Key every time.
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "oops"}})),
        )
        .expect(3)
        .mount(&s.vendor)
        .await;
    assert!(
        stripe
            .create_customer(Some("a@example.com"), "7", "customer-7", deadline)
            .await
            .is_err()
    );
    // No attempt starts past the deadline.
    let spent = stripe
        .subscription("sub_NoRetry", now_ms() + 1_000)
        .await
        .unwrap_err();
    assert!(
        spent.to_string().contains("did not answer in time"),
        "{spent}"
    );
    s.vendor.verify().await;
    let keys: Vec<String> = s
        .vendor
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/customers")
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    // A 404 on a read is "no such subscription", not an error.
    assert!(
        stripe
            .subscription("sub_Missing", deadline)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_event_stripe_cannot_confirm_is_retried_then_recorded_as_failed() {
    let s = stack().await;
    let (user, _) = s.db.session("flaky@example.com", 3600).await;
    link(&s, user, "cus_Flaky1").await;
    let worker = BillingWorker {
        stripe: fast(s.app.stripe().unwrap()),
        ..s.app.billing_worker().unwrap()
    };
    let id = store(
        &s,
        &event(
            "evt_1Flaky",
            "customer.subscription.updated",
            json!({"id": "sub_Flaky1"}),
        ),
    )
    .await;
    stripe_get("/v1/subscriptions/sub_Flaky1")
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "down"}})),
        )
        .mount(&s.vendor)
        .await;
    assert!(apply(&worker, id, 1).await.is_err());
    let row =
        s.db.client
            .query_one(
                "SELECT status, last_error FROM webhook_events WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
    assert_eq!(row.get::<_, String>(0), "received");
    assert!(row.get::<_, String>(1).contains("Stripe answered 500"));
    // The last delivery records the failure, and still fails (the message goes to the DLQ).
    assert!(apply(&worker, id, 5).await.is_err());
    let status: String =
        s.db.client
            .query_one("SELECT status FROM webhook_events WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
    assert_eq!(status, "failed");
    // Once Stripe answers, a redrive applies it.
    answer_subscription(
        &s.vendor,
        subscription("sub_Flaky1", "cus_Flaky1", "active", None),
    )
    .await;
    apply(&worker, id, 1).await.unwrap();
    assert_eq!(
        stored_subscription(&s, "sub_Flaky1").await.unwrap().0,
        "active"
    );
}

#[tokio::test]
async fn account_deletion_cancels_every_live_subscription_at_stripe() {
    let s = stack().await;
    let (user, _) = s.db.session("leaving@example.com", 3600).await;
    link(&s, user, "cus_Leaving1").await;
    for (id, status) in [
        ("sub_Live1", "active"),
        ("sub_Gone1", "past_due"),
        ("sub_Old1", "canceled"),
    ] {
        s.db.client
            .execute(
                "INSERT INTO subscriptions (stripe_subscription_id, user_id, stripe_customer_id,
                                            stripe_price_id, status, fetched_at)
                 VALUES ($1, $2, 'cus_Leaving1', $3, $4, now())",
                &[&id, &user, &PRICE, &status],
            )
            .await
            .unwrap();
    }
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_Live1"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("stripe-version", API_VERSION))
        .respond_with(ResponseTemplate::new(200).set_body_json(subscription(
            "sub_Live1",
            "cus_Leaving1",
            "canceled",
            None,
        )))
        .expect(1)
        .mount(&s.vendor)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_Gone1"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription: 'sub_Gone1'"}})))
        .expect(1)
        .mount(&s.vendor)
        .await;
    let stripe = s.app.stripe().unwrap();
    assert_eq!(
        stripe
            .cancel_subscription("sub_Gone1", now_ms() + 10_000)
            .await
            .unwrap(),
        Cancelled::AlreadyGone
    );
    s.vendor.reset().await;
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_Live1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(subscription(
            "sub_Live1",
            "cus_Leaving1",
            "canceled",
            None,
        )))
        .expect(1)
        .mount(&s.vendor)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/subscriptions/sub_Gone1"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription"}})))
        .expect(1)
        .mount(&s.vendor)
        .await;

    // Through the account worker's whole deletion: one cancellation counted, one already gone,
    // the cancelled one never asked about.
    s.db.client
        .execute(
            "INSERT INTO account_deletions (user_id, status) VALUES ($1, 'queued')",
            &[&user],
        )
        .await
        .unwrap();
    let worker = s.app.account_worker(s.sqs.clone()).unwrap();
    let outcome = worker
        .deletions
        .run(UserId::new(user), now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        shared::domain::lifecycle::account::Outcome::Completed
    );
    s.vendor.verify().await;
    let report: Value =
        s.db.client
            .query_one(
                "SELECT report FROM account_deletions WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(report["subscriptions_cancelled"], 1);
    assert_eq!(
        count(
            &s,
            &format!("SELECT count(*) FROM subscriptions WHERE user_id = {user}")
        )
        .await,
        0
    );

    // Without a Stripe key, a user who still has a live subscription is not deleted yet.
    let (keyless_user, _) = s.db.session("keyless@example.com", 3600).await;
    s.db.client
        .execute(
            "INSERT INTO subscriptions (stripe_subscription_id, user_id, stripe_customer_id,
                                        stripe_price_id, status, fetched_at)
             VALUES ('sub_Keyless1', $1, 'cus_Keyless1', $2, 'active', now())",
            &[&keyless_user, &PRICE],
        )
        .await
        .unwrap();
    let refused = cancel_subscriptions(
        &s.app.db,
        None,
        UserId::new(keyless_user),
        now_ms() + 10_000,
    )
    .await
    .unwrap_err();
    assert!(refused.0.contains("STRIPE_SECRET_KEY"), "{}", refused.0);
}

#[tokio::test]
async fn the_sweeper_sends_unsent_stripe_events_to_the_billing_queue_and_telephony_to_the_call_queue()
 {
    let s = stack().await;
    let calls = shared::local::ensure_queue(
        &s.sqs,
        &format!("calls-{}", &Uuid::new_v4().simple().to_string()[..8]),
        "call-worker",
        1,
        5,
    )
    .await
    .unwrap();
    for (vendor, event_id) in [("stripe", "evt_1Unsent"), ("telnyx", "tx-unsent")] {
        s.db.client
            .execute(
                "INSERT INTO webhook_events (id, vendor, event_id, event_type, body, content_type, received_at)
                 VALUES (gen_random_uuid(), $1, $2, 'x', '\\x7b7d', 'application/json', now() - interval '5 minutes')",
                &[&vendor, &event_id],
            )
            .await
            .unwrap();
    }
    let app = App::from_settings(
        "webhook-events-sweeper",
        settings_with(
            &s.db.url,
            &[
                ("CALL_QUEUE_URL", &calls.queue_url),
                ("BILLING_QUEUE_URL", &s.queue.as_ref().unwrap().queue_url),
            ],
        ),
    );
    let events = app.webhook_events(s.sqs.clone()).unwrap();
    let billing = app.stripe_outbox(s.sqs.clone()).unwrap();
    let report =
        webhook_events_sweeper::handle(&events, &billing, parley_tests::events::scheduled())
            .await
            .unwrap();
    assert_eq!(report["resent"], 1);
    assert_eq!(report["billing_resent"], 1);
    let receive = |url: String| {
        let sqs = s.sqs.clone();
        async move {
            sqs.receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap()
                .messages()
                .iter()
                .map(|m| serde_json::from_str::<Value>(m.body().unwrap()).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let stripe_id: Uuid =
        s.db.client
            .query_one("SELECT id FROM webhook_events WHERE vendor = 'stripe'", &[])
            .await
            .unwrap()
            .get(0);
    let telnyx_id: Uuid =
        s.db.client
            .query_one("SELECT id FROM webhook_events WHERE vendor = 'telnyx'", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        receive(s.queue.as_ref().unwrap().queue_url.clone()).await,
        vec![json!({"event": stripe_id.to_string()})]
    );
    assert_eq!(
        receive(calls.queue_url.clone()).await,
        vec![json!({"event": telnyx_id.to_string()})]
    );
}
