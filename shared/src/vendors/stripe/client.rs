//! A small Stripe client for the five calls Parley makes, over the project's reqwest client
//! (docs/stripe.md says why not a generated SDK): form-encoded bodies with bracket keys as Stripe's
//! SDKs send them, `Authorization: Bearer`, a pinned `Stripe-Version`, an `Idempotency-Key` on
//! every POST derived from what makes the call unique, and stripe-node's retry rules —
//! `Stripe-Should-Retry: true|false` decides when present, otherwise connection errors, 409 and
//! 5xx are retried with exponential backoff from 0.5 s to 5 s and 50–100 % jitter — always within
//! the caller's deadline.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, Response};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::config::{API_VERSION, StripeSettings};
use super::wire::{
    self, CheckoutSession, Customer, PortalSession, Subscription, valid_id, valid_plain_id,
};
use crate::platform::http_client::{VendorClient, VendorError, parse_retry_after};
use crate::platform::lambda::now_ms;

pub const VENDOR: &str = "Stripe";
const RESPONSE_LIMIT: usize = 512 * 1024;
/// Time kept back from the deadline for recording the outcome after the last attempt.
const DEADLINE_RESERVE: Duration = Duration::from_millis(1_500);
/// stripe-node honours a `Retry-After` only up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently a call is repeated (stripe-node's defaults for the delays).
#[derive(Debug, Clone, Copy)]
pub struct StripeRetry {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for StripeRetry {
    fn default() -> Self {
        StripeRetry {
            max_attempts: 3,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    /// Refused before sending: an id or a field Stripe would reject. Nothing was sent.
    #[error("not sent to Stripe: {0}")]
    Invalid(String),
    #[error(transparent)]
    Vendor(#[from] VendorError),
}

impl StripeError {
    pub fn is_transient(&self) -> bool {
        match self {
            StripeError::Invalid(_) => false,
            StripeError::Vendor(e) => e.is_transient() || e.status() == Some(409),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Vendor(e) => e.status(),
            StripeError::Invalid(_) => None,
        }
    }
}

/// A form body in the order it was built, encoded as Stripe's SDKs encode it: values
/// `application/x-www-form-urlencoded`, brackets in keys left as they are (`metadata[user_id]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn new() -> Form {
        Form::default()
    }

    pub fn push(mut self, key: &str, value: &str) -> Form {
        self.0.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                let key: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
                let value: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{}={value}", key.replace("%5B", "[").replace("%5D", "]"))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The `Idempotency-Key` of a POST: what the call is for, whose it is, and a digest of the exact
/// body, so the same call retried (by us, or by a retried Lambda) reuses the key and a call with
/// other parameters never collides with it (Stripe answers a reused key with other parameters
/// with an `idempotency_error`).
pub fn idempotency_key(scope: &str, form: &Form) -> String {
    let digest = Sha256::digest(form.encode().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let scope: String = scope
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(150)
        .collect();
    format!("parley-{scope}-{hex}")
}

/// Whether to try again, by stripe-node's `_shouldRetry`: the `Stripe-Should-Retry` header decides
/// when present; otherwise a request that got no answer, a 409 (a lock or an idempotent request
/// still running) and any 5xx are retried. `status` is `None` when no response arrived.
pub fn should_retry(status: Option<u16>, should_retry_header: Option<&str>) -> bool {
    match should_retry_header.map(str::trim) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    match status {
        None => true,
        Some(409) => true,
        Some(s) => s >= 500,
    }
}

/// How an attempt ended, for [`should_retry`] and the error returned.
struct Failure {
    error: VendorError,
    status: Option<u16>,
    should_retry: Option<String>,
    retry_after: Option<Duration>,
}

/// How a subscription's cancellation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Stripe cancelled it now; its status as Stripe answered.
    Done { status: String },
    /// Stripe has no such subscription (404).
    AlreadyGone,
}

/// Who pays in a Checkout Session: an existing customer, or (never together) an email Stripe
/// creates one from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutCustomer {
    Existing(String),
    Email(String),
}

/// `POST /v1/checkout/sessions` in subscription mode for one price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckout {
    pub customer: CheckoutCustomer,
    pub price: String,
    /// Our user id, echoed in `checkout.session.completed`.
    pub client_reference_id: String,
    pub success_url: String,
    pub cancel_url: String,
    /// Copied onto the subscription as `metadata[user_id]`.
    pub user_id: String,
}

impl NewCheckout {
    pub fn form(&self) -> Result<Form, StripeError> {
        if !valid_id(&self.price, "price_") {
            return Err(StripeError::Invalid(
                "a price id (price_…) is required".into(),
            ));
        }
        for (name, url) in [
            ("success_url", &self.success_url),
            ("cancel_url", &self.cancel_url),
        ] {
            if !valid_url(url) {
                return Err(StripeError::Invalid(format!(
                    "{name} must be an http(s) URL"
                )));
            }
        }
        let mut form = Form::new()
            .push("mode", "subscription")
            .push("line_items[0][price]", &self.price)
            .push("line_items[0][quantity]", "1");
        form = match &self.customer {
            CheckoutCustomer::Existing(id) => {
                if !valid_plain_id(id, "cus_") {
                    return Err(StripeError::Invalid(
                        "a customer id (cus_…) is required".into(),
                    ));
                }
                form.push("customer", id)
            }
            CheckoutCustomer::Email(email) => form.push("customer_email", email),
        };
        Ok(form
            .push("client_reference_id", &self.client_reference_id)
            .push("success_url", &self.success_url)
            .push("cancel_url", &self.cancel_url)
            .push("subscription_data[metadata][user_id]", &self.user_id))
    }
}

fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[derive(Debug, Clone)]
pub struct Stripe {
    client: VendorClient,
    base_url: String,
    timeout: Duration,
    retry: StripeRetry,
}

impl Stripe {
    pub fn new(settings: &StripeSettings, http: reqwest::Client, timeout: Duration) -> Stripe {
        let key = settings
            .secret_key
            .clone()
            .unwrap_or_else(|| SecretString::from(""));
        Stripe {
            client: VendorClient::new(VENDOR, http, timeout, key, wire::parse_error),
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            timeout,
            retry: StripeRetry::default(),
        }
    }

    /// With other retry delays (tests use short ones).
    pub fn with_retry(mut self, retry: StripeRetry) -> Stripe {
        self.retry = retry;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /v1/customers` with `email` and `metadata[user_id]`.
    pub async fn create_customer(
        &self,
        email: Option<&str>,
        user_id: &str,
        scope: &str,
        deadline_ms: u64,
    ) -> Result<Customer, StripeError> {
        let mut form = Form::new();
        if let Some(email) = email {
            form = form.push("email", email);
        }
        let form = form.push("metadata[user_id]", user_id);
        let customer: Customer = self
            .post("/v1/customers", &form, scope, deadline_ms)
            .await?;
        if !valid_plain_id(&customer.id, "cus_") {
            return Err(invalid_response("id is not a customer id (cus_…)"));
        }
        Ok(customer)
    }

    /// `POST /v1/checkout/sessions`. The session's `url` is required: a session that is no longer
    /// open (a replayed key) has none, and that is an error the caller reports.
    pub async fn create_checkout_session(
        &self,
        request: &NewCheckout,
        scope: &str,
        deadline_ms: u64,
    ) -> Result<CheckoutSession, StripeError> {
        let form = request.form()?;
        let session: CheckoutSession = self
            .post("/v1/checkout/sessions", &form, scope, deadline_ms)
            .await?;
        if !valid_id(&session.id, "cs_") {
            return Err(invalid_response("id is not a Checkout Session id (cs_…)"));
        }
        if let Some(url) = &session.url
            && !valid_url(url)
        {
            return Err(invalid_response("url is not an http(s) URL"));
        }
        Ok(session)
    }

    /// `POST /v1/billing_portal/sessions` for `customer`, coming back to `return_url`.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        scope: &str,
        deadline_ms: u64,
    ) -> Result<PortalSession, StripeError> {
        if !valid_plain_id(customer, "cus_") {
            return Err(StripeError::Invalid(
                "a customer id (cus_…) is required".into(),
            ));
        }
        if !valid_url(return_url) {
            return Err(StripeError::Invalid(
                "return_url must be an http(s) URL".into(),
            ));
        }
        let form = Form::new()
            .push("customer", customer)
            .push("return_url", return_url);
        let session: PortalSession = self
            .post("/v1/billing_portal/sessions", &form, scope, deadline_ms)
            .await?;
        if !valid_id(&session.id, "bps_") || !valid_url(&session.url) {
            return Err(invalid_response(
                "not a portal session (bps_… with an http(s) url)",
            ));
        }
        Ok(session)
    }

    /// `GET /v1/subscriptions/{id}`, validated; `None` when Stripe has no such subscription.
    pub async fn subscription(
        &self,
        id: &str,
        deadline_ms: u64,
    ) -> Result<Option<Subscription>, StripeError> {
        if !valid_plain_id(id, "sub_") {
            return Err(StripeError::Invalid(
                "a subscription id (sub_…) is required".into(),
            ));
        }
        let path = format!("/v1/subscriptions/{id}");
        match self.send(Method::GET, &path, None, None, deadline_ms).await {
            Ok(response) => {
                let subscription: Subscription = self.client.json(response, RESPONSE_LIMIT).await?;
                subscription.validate().map_err(|r| invalid_response(&r))?;
                if subscription.id != id {
                    return Err(invalid_response("answered with another subscription"));
                }
                Ok(Some(subscription))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /v1/subscriptions/{id}`: cancels now. A subscription Stripe does not have (404)
    /// counts as already gone.
    pub async fn cancel_subscription(
        &self,
        id: &str,
        deadline_ms: u64,
    ) -> Result<Cancelled, StripeError> {
        if !valid_plain_id(id, "sub_") {
            return Err(StripeError::Invalid(
                "a subscription id (sub_…) is required".into(),
            ));
        }
        let path = format!("/v1/subscriptions/{id}");
        match self
            .send(Method::DELETE, &path, None, None, deadline_ms)
            .await
        {
            Ok(response) => {
                let subscription: Subscription = self.client.json(response, RESPONSE_LIMIT).await?;
                subscription.validate().map_err(|r| invalid_response(&r))?;
                Ok(Cancelled::Done {
                    status: subscription.status,
                })
            }
            Err(e) if e.status() == Some(404) => Ok(Cancelled::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        scope: &str,
        deadline_ms: u64,
    ) -> Result<T, StripeError> {
        let key = idempotency_key(scope, form);
        let response = self
            .send(Method::POST, path, Some(form), Some(&key), deadline_ms)
            .await?;
        Ok(self.client.json(response, RESPONSE_LIMIT).await?)
    }

    /// One call, repeated by [`should_retry`] while the deadline allows.
    async fn send(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
        deadline_ms: u64,
    ) -> Result<Response, VendorError> {
        let url = format!("{}{path}", self.base_url);
        let body = form.map(Form::encode);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = budget(deadline_ms);
            if left.is_zero() {
                return Err(VendorError::Timeout {
                    vendor: VENDOR,
                    maybe_processed: false,
                });
            }
            let mut request = self
                .client
                .http()
                .request(method.clone(), &url)
                .bearer_auth(self.client.key())
                .header("stripe-version", API_VERSION)
                .header("accept", "application/json")
                .timeout(self.timeout.min(left));
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => self.refusal(response).await,
                Err(e) => Failure {
                    error: transport_error(&e),
                    status: None,
                    should_retry: None,
                    retry_after: None,
                },
            };
            let retry = should_retry(failure.status, failure.should_retry.as_deref())
                && !matches!(failure.error, VendorError::InvalidResponse { .. });
            if !retry || attempt >= self.retry.max_attempts {
                return Err(failure.error);
            }
            let delay = self.delay(attempt, failure.retry_after);
            if delay + self.timeout.min(Duration::from_secs(2)) > budget(deadline_ms) {
                tracing::warn!(
                    vendor = VENDOR,
                    attempt,
                    "no time left to retry before the deadline"
                );
                return Err(failure.error);
            }
            tracing::info!(
                vendor = VENDOR,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying Stripe call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// stripe-node's `_getSleepTimeInMS`: `initial · 2^(n−1)` capped at `max`, times a jitter of
    /// 50–100 %, never under `initial`, and at least a `Retry-After` of up to a minute.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .retry
            .initial_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.retry.max_delay);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        let delay = jittered.max(self.retry.initial_delay);
        match retry_after {
            Some(after) if after <= MAX_RETRY_AFTER => delay.max(after),
            _ => delay,
        }
    }

    async fn refusal(&self, response: Response) -> Failure {
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let should_retry = header("stripe-should-retry");
        let retry_after = header("retry-after").as_deref().and_then(parse_retry_after);
        let request_id = header("request-id");
        let body = response.bytes().await.unwrap_or_default();
        let body = &body[..body.len().min(16 * 1024)];
        let parsed = wire::parse_error(body);
        let mut message = parsed
            .as_ref()
            .map(|m| m.message.clone())
            .unwrap_or_else(|| {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("unexpected status")
                    .to_owned()
            });
        if let Some(id) = request_id {
            message.push_str(&format!(" (Request-Id {id})"));
        }
        Failure {
            error: VendorError::Status {
                vendor: VENDOR,
                status,
                code: parsed.and_then(|m| m.code),
                message: self.client.scrub(&message),
            },
            status: Some(status),
            should_retry,
            retry_after,
        }
    }
}

fn invalid_response(reason: &str) -> StripeError {
    StripeError::Vendor(VendorError::InvalidResponse {
        vendor: VENDOR,
        reason: reason.to_owned(),
    })
}

fn transport_error(e: &reqwest::Error) -> VendorError {
    if e.is_connect() || e.is_builder() {
        VendorError::Unreachable {
            vendor: VENDOR,
            reason: if e.is_connect() {
                "connection failed".to_owned()
            } else {
                "the request could not be built".to_owned()
            },
        }
    } else {
        VendorError::Timeout {
            vendor: VENDOR,
            maybe_processed: true,
        }
    }
}

/// Time left before `deadline_ms`, less the reserve; 0 means "no deadline known": a minute.
fn budget(deadline_ms: u64) -> Duration {
    if deadline_ms == 0 {
        return Duration::from_secs(60);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms())).saturating_sub(DEADLINE_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_brackets_and_encode_values() {
        let form = Form::new()
            .push("email", "a+b@example.com")
            .push("metadata[user_id]", "42")
            .push(
                "success_url",
                "https://app.example.com/billing?checkout=success&x=1 2",
            );
        assert_eq!(
            form.encode(),
            "email=a%2Bb%40example.com&metadata[user_id]=42&success_url=https%3A%2F%2Fapp.example.com%2Fbilling%3Fcheckout%3Dsuccess%26x%3D1+2"
        );
    }

    #[test]
    fn the_checkout_body_is_the_documented_one_and_never_names_both_customers() {
        let request = NewCheckout {
            customer: CheckoutCustomer::Existing("cus_NffrFeUfNV2Hib".into()),
            price: "price_1Pro".into(),
            client_reference_id: "42".into(),
            success_url: "https://app.example.com/billing?checkout=success".into(),
            cancel_url: "https://app.example.com/billing?checkout=cancelled".into(),
            user_id: "42".into(),
        };
        let body = request.form().unwrap().encode();
        assert_eq!(
            body,
            "mode=subscription&line_items[0][price]=price_1Pro&line_items[0][quantity]=1\
             &customer=cus_NffrFeUfNV2Hib&client_reference_id=42\
             &success_url=https%3A%2F%2Fapp.example.com%2Fbilling%3Fcheckout%3Dsuccess\
             &cancel_url=https%3A%2F%2Fapp.example.com%2Fbilling%3Fcheckout%3Dcancelled\
             &subscription_data[metadata][user_id]=42"
        );
        assert!(!body.contains("customer_email"));
        let by_email = NewCheckout {
            customer: CheckoutCustomer::Email("a@example.com".into()),
            ..request.clone()
        };
        let body = by_email.form().unwrap().encode();
        assert!(body.contains("customer_email=a%40example.com") && !body.contains("&customer="));
        assert!(
            NewCheckout {
                price: "prod_x".into(),
                ..request.clone()
            }
            .form()
            .is_err()
        );
        assert!(
            NewCheckout {
                success_url: "javascript:alert(1)".into(),
                ..request
            }
            .form()
            .is_err()
        );
    }

    #[test]
    fn idempotency_keys_follow_the_call_and_its_parameters() {
        let a = Form::new().push("email", "a@example.com");
        let b = Form::new().push("email", "b@example.com");
        assert_eq!(
            idempotency_key("customer-7", &a),
            idempotency_key("customer-7", &a)
        );
        assert_ne!(
            idempotency_key("customer-7", &a),
            idempotency_key("customer-7", &b)
        );
        assert_ne!(
            idempotency_key("customer-7", &a),
            idempotency_key("customer-8", &a)
        );
        let key = idempotency_key(&"x y\n".repeat(100), &a);
        assert!(key.len() <= 255 && key.is_ascii() && !key.contains(' '));
    }

    #[test]
    fn the_should_retry_header_overrides_the_status_rules() {
        assert!(should_retry(Some(400), Some("true")));
        assert!(!should_retry(Some(503), Some("false")));
        assert!(!should_retry(None, Some("false")));
        assert!(should_retry(None, None));
        assert!(should_retry(Some(409), None));
        assert!(should_retry(Some(500), None) && should_retry(Some(502), None));
        assert!(!should_retry(Some(429), None));
        assert!(!should_retry(Some(400), None) && !should_retry(Some(404), Some("maybe")));
    }

    #[test]
    fn delays_grow_from_half_a_second_to_five_with_jitter() {
        let stripe = Stripe::new(
            &StripeSettings {
                secret_key: Some("sk_test_x".to_owned().into()),
                webhook_secrets: Vec::new(),
                base_url: "https://api.stripe.com".into(),
                sandbox: false,
            },
            crate::platform::http_client::http_client(Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        for _ in 0..50 {
            let first = stripe.delay(1, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(500));
            let third = stripe.delay(3, None);
            assert!(third >= Duration::from_millis(1000) && third <= Duration::from_millis(2000));
            let late = stripe.delay(10, None);
            assert!(late >= Duration::from_millis(2500) && late <= Duration::from_secs(5));
        }
        assert_eq!(
            stripe.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(stripe.delay(1, Some(Duration::from_secs(600))) <= Duration::from_millis(500));
    }
}
