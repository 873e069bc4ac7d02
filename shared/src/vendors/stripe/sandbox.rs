//! Stripe's keyless stand-in (feature `local`): the five API calls Parley makes, with Stripe's
//! auth, pinned version and form encoding checked as Stripe checks them (401 without the key, 400
//! for an unknown parameter, `customer` together with `customer_email`, a missing
//! `Idempotency-Key` or a reused one with other parameters), and a checkout that "pays":
//!
//! `GET {sandbox}/stripe-sandbox/checkout/{cs_id}` (the session's `url`, opened in a browser or
//! with curl) creates the customer and an active subscription, sends correctly signed
//! `checkout.session.completed`, `customer.subscription.created` and `invoice.paid` events to
//! Parley's `/webhooks/stripe`, and redirects to the session's `success_url`. The portal URL shows
//! the customer's subscriptions with a link that cancels them (`customer.subscription.deleted`).
//!
//! Events are signed with the fixed [`SANDBOX_WEBHOOK_SECRET`], which the `local` stage's
//! `STRIPE_WEBHOOK_SECRET` defaults to when no Stripe key is configured.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config::{API_VERSION, SANDBOX_SECRET_KEY, SANDBOX_WEBHOOK_SECRET};
use super::signature;

/// A subscription period in the sandbox: 30 days.
const PERIOD_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Default)]
struct Inner {
    customers: HashMap<String, Value>,
    sessions: HashMap<String, Value>,
    subscriptions: HashMap<String, Value>,
    portal_sessions: HashMap<String, Value>,
    /// Idempotency-Key → (digest of method, path and body; status; answer).
    idempotency: HashMap<String, (String, u16, Value)>,
    /// Every event sent (or attempted), in order.
    events: Vec<Value>,
}

#[derive(Clone)]
pub struct StripeSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Where the sandbox is served: checkout and portal URLs point here.
    base_url: String,
    api_key: String,
    webhook_secret: String,
    /// Parley's public base URL, where events are posted; set once the API is up.
    parley: Arc<OnceLock<String>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for StripeSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSandbox")
            .field("base_url", &self.base_url)
            .field("parley", &self.parley.get())
            .finish()
    }
}

fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (
        status,
        [("request-id", format!("req_{}", new_id_tail()))],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_invalid"),
        message,
    )
}

fn missing(what: &str, id: &str) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {what}: '{id}'"),
    )
}

fn new_id_tail() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", new_id_tail())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1>{body}</body></html>"
        ),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The form as Stripe reads it: every pair, in order, with bracket keys as sent.
fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A refusal to answer with (boxed: a response is large).
type Refusal = Box<Response>;

/// Refuses any key not in `allowed` (Stripe: "Received unknown parameter").
fn only(pairs: &[(String, String)], allowed: &[&str]) -> Result<BTreeMap<String, String>, Refusal> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(Box::new(invalid(&format!(
                "Received unknown parameter: {k}"
            ))));
        }
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(Box::new(invalid(&format!("Received {k} more than once"))));
        }
    }
    Ok(map)
}

impl StripeSandbox {
    /// `base_url` is where this sandbox is served (its checkout and portal links point there).
    pub fn new(base_url: &str) -> StripeSandbox {
        StripeSandbox {
            inner: Arc::default(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: SANDBOX_SECRET_KEY.to_owned(),
            webhook_secret: SANDBOX_WEBHOOK_SECRET.to_owned(),
            parley: Arc::new(OnceLock::new()),
            http: crate::platform::http_client::http_client(Duration::from_secs(60)),
        }
    }

    /// Accepts only this key (tests use one of their own).
    pub fn with_api_key(mut self, key: &str) -> StripeSandbox {
        self.api_key = key.to_owned();
        self
    }

    /// Signs events with this endpoint secret instead of the fixed sandbox one.
    pub fn with_webhook_secret(mut self, secret: &str) -> StripeSandbox {
        self.webhook_secret = secret.to_owned();
        self
    }

    /// Where Parley is: events go to `{parley_base_url}/webhooks/stripe`.
    pub fn attach(&self, parley_base_url: &str) {
        let _ = self
            .parley
            .set(parley_base_url.trim_end_matches('/').to_owned());
    }

    pub fn routes(&self) -> Router {
        Router::new()
            .route("/v1/customers", post(create_customer))
            .route("/v1/checkout/sessions", post(create_checkout_session))
            .route("/v1/billing_portal/sessions", post(create_portal_session))
            .route(
                "/v1/subscriptions/{id}",
                get(get_subscription).delete(cancel_subscription),
            )
            .route("/stripe-sandbox/checkout/{id}", get(pay))
            .route("/stripe-sandbox/portal/{id}", get(portal))
            .route("/stripe-sandbox/portal/{id}/cancel", get(portal_cancel))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// Every event the sandbox sent, in order (tests look at them).
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.lock().subscriptions.get(id).cloned()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.lock().customers.values().cloned().collect()
    }

    /// Changes a subscription as if it happened at Stripe (tests: a failed renewal), without
    /// sending any event.
    pub fn set_subscription_status(&self, id: &str, status: &str) -> bool {
        match self.lock().subscriptions.get_mut(id) {
            Some(sub) => {
                sub["status"] = json!(status);
                true
            }
            None => false,
        }
    }

    /// Stripe's checks on every API request: the key, the pinned version, and for a POST a form
    /// body and an `Idempotency-Key`.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {}", self.api_key) {
            return Err(Box::new(stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "Invalid API Key provided",
            )));
        }
        let version = headers
            .get("stripe-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if version != API_VERSION {
            return Err(Box::new(invalid(&format!(
                "The sandbox serves Stripe-Version {API_VERSION}; got {version:?}"
            ))));
        }
        if method == Method::POST {
            let form_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form_type {
                return Err(Box::new(invalid(
                    "Stripe takes application/x-www-form-urlencoded bodies",
                )));
            }
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if key.is_empty() || key.len() > 255 {
                return Err(Box::new(invalid(
                    "Parley sends an Idempotency-Key (1-255 characters) on every POST",
                )));
            }
        }
        Ok(())
    }

    /// Runs `create` once per `Idempotency-Key`: a repeat with the same request gets the same
    /// answer, one with another request is an `idempotency_error`, as at Stripe.
    fn idempotent(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        create: impl FnOnce(&mut Inner) -> Value,
    ) -> Response {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut hasher = Sha256::new();
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        hasher.update(body);
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut inner = self.lock();
        if let Some((seen, status, answer)) = inner.idempotency.get(&key) {
            if *seen != digest {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
            }
            return (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                [("idempotent-replayed", "true")],
                axum::Json(answer.clone()),
            )
                .into_response();
        }
        let answer = create(&mut inner);
        inner.idempotency.insert(key, (digest, 200, answer.clone()));
        axum::Json(answer).into_response()
    }

    /// Signs and posts one event to Parley, retried a few times as Stripe retries; returns
    /// whether Parley acknowledged it with a 2xx.
    async fn deliver(&self, event_type: &str, object: Value) -> Result<(), String> {
        let event = json!({
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": event_type,
        });
        self.lock().events.push(event.clone());
        let parley = self
            .parley
            .get()
            .ok_or("the sandbox is not attached to a running API yet")?;
        let body = event.to_string();
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let value = signature::header(&[&self.webhook_secret], now(), body.as_bytes());
            let sent = self
                .http
                .post(format!("{parley}/webhooks/stripe"))
                .header("content-type", "application/json; charset=utf-8")
                .header(
                    "user-agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                )
                .header(signature::SIGNATURE_HEADER, value)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("{event_type}: Parley answered {}", r.status()),
                Err(e) => last = format!("{event_type}: {e}"),
            }
        }
        Err(last)
    }
}

fn subscription_json(
    id: &str,
    customer: &str,
    price: &str,
    metadata: &Value,
    invoice: &str,
) -> Value {
    let start = now();
    json!({
        "id": id,
        "object": "subscription",
        "customer": customer,
        "status": "active",
        "cancel_at_period_end": false,
        "cancel_at": null,
        "canceled_at": null,
        "ended_at": null,
        "created": start,
        "latest_invoice": invoice,
        "livemode": false,
        "metadata": metadata,
        "items": {
            "object": "list",
            "data": [{
                "id": new_id("si_"),
                "object": "subscription_item",
                "price": {"id": price, "object": "price"},
                "quantity": 1,
                "subscription": id,
                "current_period_start": start,
                "current_period_end": start + PERIOD_SECONDS,
            }],
            "has_more": false,
        },
    })
}

async fn create_customer(
    State(sandbox): State<StripeSandbox>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = sandbox.check(&method, &headers) {
        return *refusal;
    }
    let fields = match only(&form(&body), &["email", "metadata[user_id]"]) {
        Ok(f) => f,
        Err(refusal) => return *refusal,
    };
    sandbox.idempotent(&headers, "/v1/customers", &body, |inner| {
        let id = new_id("cus_");
        let customer = json!({
            "id": id,
            "object": "customer",
            "email": fields.get("email"),
            "metadata": fields.get("metadata[user_id]").map(|u| json!({"user_id": u})).unwrap_or(json!({})),
            "livemode": false,
        });
        inner.customers.insert(id, customer.clone());
        customer
    })
}

const CHECKOUT_FIELDS: &[&str] = &[
    "mode",
    "line_items[0][price]",
    "line_items[0][quantity]",
    "customer",
    "customer_email",
    "client_reference_id",
    "success_url",
    "cancel_url",
    "subscription_data[metadata][user_id]",
];

async fn create_checkout_session(
    State(sandbox): State<StripeSandbox>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = sandbox.check(&method, &headers) {
        return *refusal;
    }
    let fields = match only(&form(&body), CHECKOUT_FIELDS) {
        Ok(f) => f,
        Err(refusal) => return *refusal,
    };
    if fields.get("mode").map(String::as_str) != Some("subscription") {
        return invalid("The sandbox sells subscriptions: mode must be subscription");
    }
    let Some(price) = fields.get("line_items[0][price]").cloned() else {
        return invalid("Missing required param: line_items[0][price].");
    };
    if fields.get("line_items[0][quantity]").map(String::as_str) != Some("1") {
        return invalid("line_items[0][quantity] must be 1");
    }
    if fields.contains_key("customer") && fields.contains_key("customer_email") {
        return invalid("You may only specify one of these parameters: customer, customer_email.");
    }
    for url in ["success_url", "cancel_url"] {
        if !fields
            .get(url)
            .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
        {
            return invalid(&format!("Missing required param: {url}."));
        }
    }
    if let Some(customer) = fields.get("customer")
        && !sandbox.lock().customers.contains_key(customer)
    {
        return missing("customer", customer);
    }
    let base = sandbox.base_url.clone();
    sandbox.idempotent(&headers, "/v1/checkout/sessions", &body, |inner| {
        let id = format!("cs_test_{}", new_id_tail());
        let session = json!({
            "id": id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "url": format!("{base}/stripe-sandbox/checkout/{id}"),
            "customer": fields.get("customer"),
            "customer_email": fields.get("customer_email"),
            "client_reference_id": fields.get("client_reference_id"),
            "success_url": fields.get("success_url"),
            "cancel_url": fields.get("cancel_url"),
            "subscription": null,
            "invoice": null,
            "metadata": {},
            "expires_at": now() + 24 * 3600,
            "livemode": false,
            // What `subscription_data` asked for; not part of Stripe's session object.
            "_price": price,
            "_subscription_metadata": fields.get("subscription_data[metadata][user_id]")
                .map(|u| json!({"user_id": u})).unwrap_or(json!({})),
        });
        inner.sessions.insert(id, session.clone());
        public_session(&session)
    })
}

/// The session as Stripe shows it (without the sandbox's own bookkeeping).
fn public_session(session: &Value) -> Value {
    let mut shown = session.clone();
    if let Some(map) = shown.as_object_mut() {
        map.retain(|k, _| !k.starts_with('_'));
    }
    shown
}

async fn create_portal_session(
    State(sandbox): State<StripeSandbox>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = sandbox.check(&method, &headers) {
        return *refusal;
    }
    let fields = match only(&form(&body), &["customer", "return_url"]) {
        Ok(f) => f,
        Err(refusal) => return *refusal,
    };
    let Some(customer) = fields.get("customer").cloned() else {
        return invalid("Missing required param: customer.");
    };
    if !sandbox.lock().customers.contains_key(&customer) {
        return missing("customer", &customer);
    }
    let base = sandbox.base_url.clone();
    sandbox.idempotent(&headers, "/v1/billing_portal/sessions", &body, |inner| {
        let id = new_id("bps_");
        let session = json!({
            "id": id,
            "object": "billing_portal.session",
            "customer": customer,
            "return_url": fields.get("return_url"),
            "url": format!("{base}/stripe-sandbox/portal/{id}"),
            "livemode": false,
        });
        inner.portal_sessions.insert(id, session.clone());
        session
    })
}

async fn get_subscription(
    State(sandbox): State<StripeSandbox>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = sandbox.check(&method, &headers) {
        return *refusal;
    }
    match sandbox.subscription(&id) {
        Some(sub) => axum::Json(sub).into_response(),
        None => missing("subscription", &id),
    }
}

async fn cancel_subscription(
    State(sandbox): State<StripeSandbox>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = sandbox.check(&method, &headers) {
        return *refusal;
    }
    match cancel(&sandbox, &id) {
        Some(sub) => {
            // Stripe sends the event after answering; so does the sandbox.
            let me = sandbox.clone();
            let object = sub.clone();
            tokio::spawn(async move {
                if let Err(e) = me.deliver("customer.subscription.deleted", object).await {
                    tracing::warn!(error = %e, "sandbox event not delivered");
                }
            });
            axum::Json(sub).into_response()
        }
        None => missing("subscription", &id),
    }
}

fn cancel(sandbox: &StripeSandbox, id: &str) -> Option<Value> {
    let mut inner = sandbox.lock();
    let sub = inner.subscriptions.get_mut(id)?;
    sub["status"] = json!("canceled");
    sub["canceled_at"] = json!(now());
    sub["ended_at"] = json!(now());
    Some(sub.clone())
}

/// Opening a Checkout Session's URL: the customer pays at once.
async fn pay(State(sandbox): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let paid = {
        let mut inner = sandbox.lock();
        let Some(session) = inner.sessions.get(&id).cloned() else {
            return html(StatusCode::NOT_FOUND, "No such Checkout Session", "");
        };
        if session["status"] != "open" {
            let link = session["success_url"].as_str().unwrap_or_default();
            return html(
                StatusCode::GONE,
                "This Checkout Session is no longer open",
                &format!("<p><a href=\"{}\">Back</a></p>", escape(link)),
            );
        }
        let customer = match session["customer"].as_str() {
            Some(c) => c.to_owned(),
            None => {
                let id = new_id("cus_");
                inner.customers.insert(
                    id.clone(),
                    json!({"id": id, "object": "customer", "email": session["customer_email"], "metadata": {}, "livemode": false}),
                );
                id
            }
        };
        let sub_id = new_id("sub_");
        let invoice_id = new_id("in_");
        let price = session["_price"].as_str().unwrap_or_default().to_owned();
        let subscription = subscription_json(
            &sub_id,
            &customer,
            &price,
            &session["_subscription_metadata"],
            &invoice_id,
        );
        inner
            .subscriptions
            .insert(sub_id.clone(), subscription.clone());
        let stored = inner.sessions.get_mut(&id).expect("read above");
        stored["status"] = json!("complete");
        stored["payment_status"] = json!("paid");
        stored["customer"] = json!(customer);
        stored["subscription"] = json!(sub_id);
        stored["invoice"] = json!(invoice_id);
        stored["url"] = Value::Null;
        let session = public_session(stored);
        let item = &subscription["items"]["data"][0];
        let invoice = json!({
            "id": invoice_id,
            "object": "invoice",
            "customer": customer,
            "status": "paid",
            "billing_reason": "subscription_create",
            "amount_due": 0,
            "amount_paid": 0,
            "currency": "usd",
            "period_start": item["current_period_start"],
            "period_end": item["current_period_end"],
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub_id, "metadata": subscription["metadata"]},
            },
            "livemode": false,
        });
        (session, subscription, invoice)
    };
    let (session, subscription, invoice) = paid;
    let success = session["success_url"]
        .as_str()
        .unwrap_or_default()
        .replace("{CHECKOUT_SESSION_ID}", &id);
    for (kind, object) in [
        ("checkout.session.completed", session),
        ("customer.subscription.created", subscription),
        ("invoice.paid", invoice),
    ] {
        if let Err(e) = sandbox.deliver(kind, object).await {
            return html(
                StatusCode::BAD_GATEWAY,
                "Paid, but Parley did not take the event",
                &format!("<p>{}</p>", escape(&e)),
            );
        }
    }
    let mut response = html(
        StatusCode::SEE_OTHER,
        "Paid (Parley's Stripe sandbox)",
        &format!(
            "<p>No money moved: this is the offline sandbox.</p><p><a href=\"{0}\">{0}</a></p>",
            escape(&success)
        ),
    );
    if let Ok(location) = header::HeaderValue::from_str(&success) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The Customer Portal: the customer's subscriptions and a way to cancel them.
async fn portal(State(sandbox): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let inner = sandbox.lock();
    let Some(session) = inner.portal_sessions.get(&id) else {
        return html(StatusCode::NOT_FOUND, "No such portal session", "");
    };
    let customer = session["customer"].as_str().unwrap_or_default();
    let rows: String = inner
        .subscriptions
        .values()
        .filter(|s| s["customer"] == customer)
        .map(|s| {
            format!(
                "<li>{} — {} — {}</li>",
                escape(s["id"].as_str().unwrap_or_default()),
                escape(
                    s["items"]["data"][0]["price"]["id"]
                        .as_str()
                        .unwrap_or_default()
                ),
                escape(s["status"].as_str().unwrap_or_default())
            )
        })
        .collect();
    let back = session["return_url"].as_str().unwrap_or_default();
    html(
        StatusCode::OK,
        "Parley's Stripe sandbox: customer portal",
        &format!(
            "<p>Customer {}</p><ul>{rows}</ul><p><a href=\"/stripe-sandbox/portal/{}/cancel\">Cancel every subscription</a></p><p><a href=\"{}\">Back to Parley</a></p>",
            escape(customer),
            escape(&id),
            escape(back)
        ),
    )
}

async fn portal_cancel(State(sandbox): State<StripeSandbox>, Path(id): Path<String>) -> Response {
    let (customer, back) = {
        let inner = sandbox.lock();
        let Some(session) = inner.portal_sessions.get(&id) else {
            return html(StatusCode::NOT_FOUND, "No such portal session", "");
        };
        (
            session["customer"].as_str().unwrap_or_default().to_owned(),
            session["return_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let live: Vec<String> = sandbox
        .lock()
        .subscriptions
        .values()
        .filter(|s| s["customer"] == customer.as_str() && s["status"] != "canceled")
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    for sub in live {
        if let Some(object) = cancel(&sandbox, &sub)
            && let Err(e) = sandbox
                .deliver("customer.subscription.deleted", object)
                .await
        {
            return html(
                StatusCode::BAD_GATEWAY,
                "Cancelled, but Parley did not take the event",
                &format!("<p>{}</p>", escape(&e)),
            );
        }
    }
    let mut response = html(
        StatusCode::SEE_OTHER,
        "Cancelled",
        &format!("<p><a href=\"{0}\">{0}</a></p>", escape(&back)),
    );
    if let Ok(location) = header::HeaderValue::from_str(&back) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
