//! Selling plans through Stripe and keeping `subscriptions` as Stripe says they are.
//!
//! - [`StripeBilling`]: Checkout for a plan (its price comes from `plans.stripe_price_id`), with the
//!   user's one Stripe customer reused or created, and Customer Portal sessions.
//! - [`StripeOutbox`]: the webhook receiver's half — each verified event stored once in
//!   `webhook_events` (vendor `stripe`, deduplicated on the event id) and sent to the billing
//!   queue; the webhook-events sweeper re-sends what the queue missed.
//! - [`BillingWorker`]: applies stored events. A subscription is never written from an event's
//!   snapshot: it is fetched from the API and written only if that fetch is newer than what is
//!   stored (`fetched_at`), so events arriving late, twice or out of order cannot roll state back.
//! - [`cancel_subscriptions`]: account deletion's billing step.
//!
//! See docs/stripe.md.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::domain::jobs::Retry;
use crate::domain::outbox::{Receipt, UNSENT_AFTER};
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbPool, Type};
use crate::platform::queue::{Delivery, JobQueue};
use crate::vendors::stripe::client::{
    Cancelled, CheckoutCustomer, NewCheckout, Stripe, StripeError,
};
use crate::vendors::stripe::wire::{self, CompletedSession, Event, EventError, Subscription};

/// `webhook_events.vendor` for Stripe's events.
pub const VENDOR: &str = "stripe";
/// Idempotency keys of Checkout and portal sessions change every this many seconds: a double
/// click or a retried request inside it gets the same session, a later attempt a fresh one.
pub const SESSION_KEY_WINDOW_SECONDS: i64 = 60;
/// Subscription statuses that still bill (or may bill again): cancelled at account deletion, and
/// a reason to send an existing subscriber to the portal instead of a second checkout.
pub const LIVE_STATUSES: &[&str] = &["trialing", "active", "past_due", "unpaid", "paused"];

/// A billing-worker message: a stored Stripe event to apply. Messages carry ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BillingJob {
    Event(Uuid),
}

impl From<StripeError> for Error {
    fn from(e: StripeError) -> Self {
        if e.is_transient() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Rejected(e.to_string())
        }
    }
}

/// The app's pages Stripe sends the customer back to (`APP_URL` + these paths).
pub fn success_url(app_url: &str) -> String {
    format!("{app_url}/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}")
}

pub fn cancel_url(app_url: &str) -> String {
    format!("{app_url}/billing?checkout=cancelled")
}

pub fn return_url(app_url: &str) -> String {
    format!("{app_url}/billing")
}

fn valid_plan_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn window(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(SESSION_KEY_WINDOW_SECONDS)
}

/// Checkout and portal sessions for signed-in users.
#[derive(Debug, Clone)]
pub struct StripeBilling {
    db: DbPool,
    stripe: Stripe,
    app_url: String,
}

impl StripeBilling {
    pub fn new(db: DbPool, stripe: Stripe, app_url: &str) -> StripeBilling {
        StripeBilling {
            db,
            stripe,
            app_url: app_url.trim_end_matches('/').to_owned(),
        }
    }

    /// A Checkout Session (subscription mode) for `plan`; returns its URL. The free plan, an
    /// unknown plan and a plan without a price are a validation error on `plan`; a user who
    /// already has a live subscription is a conflict (plan changes go through the portal).
    pub async fn checkout(
        &self,
        user: UserId,
        email: Option<&str>,
        plan: &str,
        deadline_ms: u64,
    ) -> Result<String, Error> {
        let price = self.price(plan).await?;
        let live = db::fetch(
            &self.db,
            "SELECT stripe_subscription_id FROM subscriptions
              WHERE user_id = $1 AND status = ANY($2) LIMIT 1",
            &[(&user, Type::INT4), (&LIVE_STATUSES, Type::TEXT_ARRAY)],
        )
        .await?;
        if !live.is_empty() {
            return Err(Error::Conflict(
                "you already have a subscription; change or cancel it in the billing portal \
                 (POST /api/billing/portal)"
                    .to_owned(),
            ));
        }
        let customer = self.customer(user, email, deadline_ms).await?;
        let request = NewCheckout {
            customer: CheckoutCustomer::Existing(customer),
            price,
            client_reference_id: user.to_string(),
            success_url: success_url(&self.app_url),
            cancel_url: cancel_url(&self.app_url),
            user_id: user.to_string(),
        };
        let scope = format!("checkout-{user}-{}", window(OffsetDateTime::now_utc()));
        let session = self
            .stripe
            .create_checkout_session(&request, &scope, deadline_ms)
            .await?;
        session.url.ok_or_else(|| {
            Error::Conflict(
                "the checkout session just made is no longer open; try again in a minute"
                    .to_owned(),
            )
        })
    }

    /// A Customer Portal session for the user's Stripe customer; returns its URL. A user who never
    /// checked out has no customer, and that is a conflict: there is nothing to manage yet.
    pub async fn portal(&self, user: UserId, deadline_ms: u64) -> Result<String, Error> {
        let Some(customer) = self.stored_customer(user).await? else {
            return Err(Error::Conflict(
                "no billing account yet: subscribe first (POST /api/billing/checkout)".to_owned(),
            ));
        };
        let scope = format!("portal-{user}-{}", window(OffsetDateTime::now_utc()));
        let session = self
            .stripe
            .create_portal_session(&customer, &return_url(&self.app_url), &scope, deadline_ms)
            .await?;
        Ok(session.url)
    }

    /// The Stripe price of a plan that is for sale.
    async fn price(&self, plan: &str) -> Result<String, Error> {
        let invalid = |message: &str| Error::Invalid(vec![FieldError::new("plan", message)]);
        if !valid_plan_name(plan) {
            return Err(invalid(
                "must be a plan name (lower-case letters, digits, - and _; at most 32)",
            ));
        }
        let rows = db::fetch(
            &self.db,
            "SELECT stripe_price_id FROM plans WHERE name = $1",
            &[(&plan, Type::TEXT)],
        )
        .await?;
        match rows.first().map(|r| r.get::<_, Option<String>>(0)) {
            None => Err(invalid("no such plan")),
            Some(None) => Err(invalid("this plan is not sold (it has no Stripe price)")),
            Some(Some(price)) => Ok(price),
        }
    }

    async fn stored_customer(&self, user: UserId) -> Result<Option<String>, Error> {
        Ok(db::fetch(
            &self.db,
            "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1",
            &[(&user, Type::INT4)],
        )
        .await?
        .first()
        .map(|r| r.get(0)))
    }

    /// The user's one Stripe customer: the stored one, or one created now with our user id in its
    /// metadata. Two concurrent checkouts send the same idempotency key, so Stripe makes one
    /// customer; and whatever Stripe answered, only the first stored customer is ever used.
    async fn customer(
        &self,
        user: UserId,
        email: Option<&str>,
        deadline_ms: u64,
    ) -> Result<String, Error> {
        if let Some(id) = self.stored_customer(user).await? {
            return Ok(id);
        }
        let created = self
            .stripe
            .create_customer(
                email,
                &user.to_string(),
                &format!("customer-{user}"),
                deadline_ms,
            )
            .await?;
        db::fetch(
            &self.db,
            "INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[(&user, Type::INT4), (&created.id, Type::TEXT)],
        )
        .await?;
        let stored = self.stored_customer(user).await?.ok_or_else(|| {
            Error::Conflict("the Stripe customer is linked to another account".to_owned())
        })?;
        if stored != created.id {
            tracing::warn!(
                user = %user,
                stored = %stored,
                unused = %created.id,
                "a concurrent checkout stored another Stripe customer first; using the stored one"
            );
        }
        Ok(stored)
    }
}

/// The webhook receiver's outbox for Stripe events: the shared `webhook_events` table, the billing
/// queue.
#[derive(Debug, Clone)]
pub struct StripeOutbox {
    db: DbPool,
    queue: JobQueue,
}

impl StripeOutbox {
    pub fn new(db: DbPool, queue: JobQueue) -> StripeOutbox {
        StripeOutbox { db, queue }
    }

    /// Stores a verified event once (by its id) and enqueues it: one statement and one SQS call.
    /// A duplicate is acknowledged without either second step.
    pub async fn receive(&self, event: &Event, body: &[u8]) -> Result<Receipt, Error> {
        let id = Uuid::now_v7();
        let occurred_at = OffsetDateTime::from_unix_timestamp(event.created).ok();
        let rows = db::fetch(
            &self.db,
            "INSERT INTO webhook_events (id, vendor, event_id, event_type, occurred_at, body,
                                         content_type)
             VALUES ($1, 'stripe', $2, $3, $4, $5, 'application/json')
             ON CONFLICT (vendor, event_id) DO NOTHING RETURNING id",
            &[
                (&id, Type::UUID),
                (&event.id, Type::TEXT),
                (&event.event_type, Type::TEXT),
                (&occurred_at, Type::TIMESTAMPTZ),
                (&body, Type::BYTEA),
            ],
        )
        .await?;
        if rows.is_empty() {
            return Ok(Receipt::Duplicate);
        }
        let enqueued = match self.queue.send(&BillingJob::Event(id)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(event = %id, error = %e, "Stripe event stored but not enqueued; the sweeper will send it");
                false
            }
        };
        Ok(Receipt::Stored { id, enqueued })
    }

    /// Sends stored Stripe events no delivery has read (the queue refused them): the webhook-events
    /// sweeper runs it every minute. Returns how many were sent.
    pub async fn reconcile(&self, batch: i64) -> Result<u64, Error> {
        let older = OffsetDateTime::now_utc() - UNSENT_AFTER;
        let rows = db::fetch(
            &self.db,
            "SELECT id FROM webhook_events
              WHERE vendor = 'stripe' AND status = 'received' AND attempts = 0 AND received_at < $1
              ORDER BY received_at LIMIT $2",
            &[(&older, Type::TIMESTAMPTZ), (&batch, Type::INT8)],
        )
        .await?;
        let mut sent = 0;
        for row in rows {
            let job = BillingJob::Event(row.get(0));
            self.queue
                .send(&job)
                .await
                .map_err(|e| Error::Unavailable(format!("resending {job:?}: {e}")))?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// What one job did, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The subscription was fetched and written as Stripe has it now.
    Synced {
        subscription: String,
        status: String,
    },
    /// Fetched, but what is stored was read later (or its user is gone): nothing written.
    Stale {
        subscription: String,
    },
    Ignored(&'static str),
    /// Signed by Stripe but unusable, or failed on every delivery; recorded on the event row.
    Failed(String),
}

/// Why an event was not applied.
enum Step {
    /// Not an event Parley can read: retrying cannot help.
    Unreadable(String),
    /// Stripe or the database failed; a later delivery may get past it.
    Retry(String),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Step::Retry(e.to_string())
    }
}

impl From<db::DbError> for Step {
    fn from(e: db::DbError) -> Self {
        Step::Retry(Error::from(e).to_string())
    }
}

/// The billing queue's worker.
#[derive(Debug, Clone)]
pub struct BillingWorker {
    pub db: DbPool,
    pub stripe: Stripe,
    /// The queue's `maxReceiveCount`: on the last delivery a failing event is marked `failed`
    /// before its message goes to the dead-letter queue.
    pub max_receive_count: u32,
}

impl BillingWorker {
    pub async fn process(
        &self,
        job: &BillingJob,
        delivery: &Delivery,
        deadline_ms: u64,
    ) -> Result<Outcome, Retry> {
        let BillingJob::Event(id) = job;
        let last = delivery.receive_count >= self.max_receive_count;
        let rows = db::fetch(
            &self.db,
            "UPDATE webhook_events SET attempts = attempts + 1
              WHERE id = $1 AND vendor = 'stripe'
              RETURNING event_type, body, status",
            &[(id, Type::UUID)],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok(Outcome::Ignored("no such Stripe event (purged?)"));
        };
        if row.get::<_, &str>(2) == "processed" {
            return Ok(Outcome::Ignored("already processed"));
        }
        let body: Vec<u8> = row.get(1);
        match self.apply(&body, deadline_ms).await {
            Ok((outcome, owner)) => {
                self.settle(*id, owner, None).await?;
                Ok(outcome)
            }
            Err(Step::Unreadable(reason)) => {
                tracing::error!(event = %id, reason, "a signed Stripe event Parley cannot read");
                self.settle(*id, None, Some(&reason)).await?;
                Ok(Outcome::Failed(reason))
            }
            Err(Step::Retry(reason)) => {
                if last {
                    // Recorded on the row, then on to the dead-letter queue (and its alarm).
                    tracing::error!(event = %id, reason, "Stripe event failed on every delivery");
                    self.settle(*id, None, Some(&reason)).await?;
                } else {
                    let _ = db::fetch(
                        &self.db,
                        "UPDATE webhook_events SET last_error = left($2, 500) WHERE id = $1",
                        &[(id, Type::UUID), (&reason, Type::TEXT)],
                    )
                    .await;
                }
                Err(Retry(reason))
            }
        }
    }

    async fn settle(
        &self,
        id: Uuid,
        owner: Option<UserId>,
        error: Option<&str>,
    ) -> Result<(), Retry> {
        let status = if error.is_some() {
            "failed"
        } else {
            "processed"
        };
        db::fetch(
            &self.db,
            "UPDATE webhook_events SET status = $2, last_error = left($3, 500),
                    owner_id = COALESCE($4, owner_id), processed_at = now()
              WHERE id = $1",
            &[
                (&id, Type::UUID),
                (&status, Type::TEXT),
                (&error, Type::TEXT),
                (&owner, Type::INT4),
            ],
        )
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        body: &[u8],
        deadline_ms: u64,
    ) -> Result<(Outcome, Option<UserId>), Step> {
        let event =
            wire::parse_event(body).map_err(|e: EventError| Step::Unreadable(e.to_string()))?;
        let object = &event.data.object;
        match event.event_type.as_str() {
            "checkout.session.completed" => {
                let session: CompletedSession = serde_json::from_value(object.clone())
                    .map_err(|e| Step::Unreadable(format!("the Checkout Session: {e}")))?;
                self.checkout_completed(&session, deadline_ms).await
            }
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted"
            | "customer.subscription.paused"
            | "customer.subscription.resumed" => {
                let id = object["id"]
                    .as_str()
                    .ok_or_else(|| Step::Unreadable("the subscription has no id".into()))?;
                self.sync(id, None, deadline_ms).await
            }
            "invoice.paid" | "invoice.payment_failed" => match wire::invoice_subscription(object) {
                Some(id) => self.sync(&id, None, deadline_ms).await,
                None => Ok((Outcome::Ignored("an invoice of no subscription"), None)),
            },
            _ => Ok((Outcome::Ignored("an event type Parley does not use"), None)),
        }
    }

    /// Links the customer to the user the session was made for, then syncs its subscription.
    async fn checkout_completed(
        &self,
        session: &CompletedSession,
        deadline_ms: u64,
    ) -> Result<(Outcome, Option<UserId>), Step> {
        if session.mode != "subscription" {
            return Ok((
                Outcome::Ignored("a checkout that is not a subscription"),
                None,
            ));
        }
        let user = session
            .client_reference_id
            .as_deref()
            .and_then(|r| r.parse::<i32>().ok())
            .map(UserId::new);
        let Some(user) = user else {
            tracing::warn!(session = %session.id, "a completed checkout without a Parley user id");
            return Ok((Outcome::Ignored("a checkout Parley did not start"), None));
        };
        if let Some(customer) = &session.customer {
            self.link(user, customer.id()).await?;
        }
        match &session.subscription {
            Some(subscription) => self.sync(subscription.id(), Some(user), deadline_ms).await,
            None => Ok((
                Outcome::Ignored("a checkout without a subscription"),
                Some(user),
            )),
        }
    }

    /// Records `customer` as `user`'s, unless the user has one already or the customer is
    /// another user's (both kept as they are), or the user is gone.
    async fn link(&self, user: UserId, customer: &str) -> Result<(), Step> {
        if !wire::valid_plain_id(customer, "cus_") {
            return Err(Step::Unreadable("the customer is not a customer id".into()));
        }
        db::fetch(
            &self.db,
            "INSERT INTO billing_customers (user_id, stripe_customer_id)
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
             ON CONFLICT DO NOTHING",
            &[(&user, Type::INT4), (&customer, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// Fetches the subscription and writes it if this read is newer than the stored one.
    async fn sync(
        &self,
        id: &str,
        hint: Option<UserId>,
        deadline_ms: u64,
    ) -> Result<(Outcome, Option<UserId>), Step> {
        if !wire::valid_plain_id(id, "sub_") {
            return Err(Step::Unreadable("not a subscription id".into()));
        }
        let fetched = self
            .stripe
            .subscription(id, deadline_ms)
            .await
            .map_err(|e| Step::Retry(e.to_string()))?;
        // Our clock once Stripe answered: a read that arrives later saw at least as much.
        let fetched_at = OffsetDateTime::now_utc();
        let Some(subscription) = fetched else {
            tracing::warn!(subscription = id, "Stripe has no such subscription");
            return Ok((Outcome::Ignored("Stripe has no such subscription"), None));
        };
        let Some(user) = self.owner(&subscription, hint).await? else {
            tracing::warn!(
                subscription = id,
                customer = subscription.customer.id(),
                "a subscription of a customer Parley does not know; acknowledged"
            );
            return Ok((Outcome::Ignored("a customer Parley does not know"), None));
        };
        let written = write(&self.db, &subscription, user, fetched_at).await?;
        Ok(match written {
            Some(status) => (
                Outcome::Synced {
                    subscription: subscription.id.clone(),
                    status,
                },
                Some(user),
            ),
            None => (
                Outcome::Stale {
                    subscription: subscription.id.clone(),
                },
                Some(user),
            ),
        })
    }

    /// Whose subscription this is: the user our `billing_customers` names for its customer, else
    /// the `metadata[user_id]` our checkout put on it, else the user the event was about. A user
    /// found the second or third way gets the customer linked.
    async fn owner(
        &self,
        subscription: &Subscription,
        hint: Option<UserId>,
    ) -> Result<Option<UserId>, Step> {
        let customer = subscription.customer.id();
        let rows = db::fetch(
            &self.db,
            "SELECT user_id FROM billing_customers WHERE stripe_customer_id = $1",
            &[(&customer, Type::TEXT)],
        )
        .await?;
        if let Some(row) = rows.first() {
            return Ok(Some(row.get(0)));
        }
        let from_metadata = subscription
            .metadata
            .get("user_id")
            .and_then(|u| u.parse::<i32>().ok())
            .map(UserId::new);
        for candidate in [from_metadata, hint].into_iter().flatten() {
            let exists = !db::fetch(
                &self.db,
                "SELECT 1 FROM users WHERE id = $1",
                &[(&candidate, Type::INT4)],
            )
            .await?
            .is_empty();
            if exists {
                self.link(candidate, customer).await?;
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }
}

/// Writes `subscription` as read at `fetched_at`, unless a later read is stored or the user is
/// gone. `past_due_since` is set when the subscription enters `past_due` and cleared when it
/// leaves. Returns the status written, `None` when nothing was.
pub async fn write(
    db: &DbPool,
    subscription: &Subscription,
    user: UserId,
    fetched_at: OffsetDateTime,
) -> Result<Option<String>, db::DbError> {
    let item = subscription.item();
    let at = |t: Option<i64>| t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let (start, end) = (at(item.current_period_start), at(item.current_period_end));
    let customer = subscription.customer.id();
    let rows = db::fetch(
        db,
        "INSERT INTO subscriptions AS s
             (stripe_subscription_id, user_id, stripe_customer_id, stripe_price_id, status,
              current_period_start, current_period_end, cancel_at_period_end, past_due_since,
              fetched_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5 = 'past_due' THEN $9 END, $9
          WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)
         ON CONFLICT (stripe_subscription_id) DO UPDATE SET
             user_id = EXCLUDED.user_id,
             stripe_customer_id = EXCLUDED.stripe_customer_id,
             stripe_price_id = EXCLUDED.stripe_price_id,
             status = EXCLUDED.status,
             current_period_start = EXCLUDED.current_period_start,
             current_period_end = EXCLUDED.current_period_end,
             cancel_at_period_end = EXCLUDED.cancel_at_period_end,
             past_due_since = CASE
                 WHEN EXCLUDED.status <> 'past_due' THEN NULL
                 WHEN s.status = 'past_due' THEN COALESCE(s.past_due_since, EXCLUDED.past_due_since)
                 ELSE EXCLUDED.past_due_since END,
             fetched_at = EXCLUDED.fetched_at,
             updated_at = now()
          WHERE s.fetched_at < EXCLUDED.fetched_at
         RETURNING status",
        &[
            (&subscription.id, Type::TEXT),
            (&user, Type::INT4),
            (&customer, Type::TEXT),
            (&item.price.id, Type::TEXT),
            (&subscription.status, Type::TEXT),
            (&start, Type::TIMESTAMPTZ),
            (&end, Type::TIMESTAMPTZ),
            (&subscription.cancel_at_period_end, Type::BOOL),
            (&fetched_at, Type::TIMESTAMPTZ),
        ],
    )
    .await?;
    let written = rows.first().map(|r| r.get::<_, String>(0));
    if written.is_some() {
        let known = db::fetch(
            db,
            "SELECT 1 FROM plans WHERE stripe_price_id = $1",
            &[(&item.price.id, Type::TEXT)],
        )
        .await?;
        if known.is_empty() {
            tracing::warn!(
                subscription = %subscription.id,
                price = %item.price.id,
                "a subscription to a price no plan names; it entitles nothing until a plan does (cargo xtask plan set <name> --price …)"
            );
        }
    }
    Ok(written)
}

/// Account deletion's billing step: cancels at Stripe, now, every subscription of `user` that
/// may still bill, while the rows naming them exist. A subscription Stripe no longer has counts
/// as cancelled. Returns how many Stripe cancelled now. Without a Stripe client (no key), a user
/// with such a subscription cannot be deleted yet: the step fails and the job is retried.
pub async fn cancel_subscriptions(
    db: &DbPool,
    stripe: Option<&Stripe>,
    user: UserId,
    deadline_ms: u64,
) -> Result<u64, Retry> {
    let rows = db::fetch(
        db,
        "SELECT stripe_subscription_id FROM subscriptions
          WHERE user_id = $1 AND status NOT IN ('canceled', 'incomplete_expired')
          ORDER BY stripe_subscription_id",
        &[(&user, Type::INT4)],
    )
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let stripe = stripe.ok_or_else(|| {
        Retry(
            "the user has a live Stripe subscription and this function has no STRIPE_SECRET_KEY"
                .to_owned(),
        )
    })?;
    let mut cancelled = 0;
    for row in rows {
        let id: String = row.get(0);
        match stripe.cancel_subscription(&id, deadline_ms).await {
            Ok(Cancelled::Done { .. }) => cancelled += 1,
            Ok(Cancelled::AlreadyGone) => {
                tracing::info!(subscription = %id, "already gone at Stripe");
            }
            Err(e) => {
                return Err(Retry(format!(
                    "could not cancel a Stripe subscription: {e}"
                )));
            }
        }
        // A re-run after a later step failed skips it; a stale event cannot bring it back.
        db::fetch(
            db,
            "UPDATE subscriptions SET status = 'canceled', past_due_since = NULL,
                    fetched_at = greatest(fetched_at, now()), updated_at = now()
              WHERE stripe_subscription_id = $1",
            &[(&id, Type::TEXT)],
        )
        .await?;
    }
    Ok(cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_are_checked_before_any_query() {
        for ok in ["pro", "free", "team-2", "a_b"] {
            assert!(valid_plan_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Pro",
            "-x",
            "pro plan",
            "x".repeat(33).as_str(),
            "pro'--",
        ] {
            assert!(!valid_plan_name(bad), "{bad}");
        }
    }

    #[test]
    fn urls_are_built_from_app_url() {
        assert_eq!(
            success_url("https://app.example.com"),
            "https://app.example.com/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"
        );
        assert_eq!(
            cancel_url("https://app.example.com"),
            "https://app.example.com/billing?checkout=cancelled"
        );
        assert_eq!(
            return_url("https://app.example.com/app"),
            "https://app.example.com/app/billing"
        );
    }

    #[test]
    fn jobs_are_ids_only() {
        let job = BillingJob::Event(Uuid::nil());
        assert_eq!(
            serde_json::to_string(&job).unwrap(),
            r#"{"event":"00000000-0000-0000-0000-000000000000"}"#
        );
        assert!(serde_json::from_str::<BillingJob>(r#"{"dial":"x"}"#).is_err());
    }
}
