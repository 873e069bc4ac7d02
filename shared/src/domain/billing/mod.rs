//! Money: plans as data, what a user is entitled to by their subscription's state, and the usage
//! ledger that holds units before any paid vendor call. Stripe's side (checkout, portal, events)
//! is in [`stripe`].

pub mod config;
pub mod entitlement;
pub mod ledger;
pub mod meter;
pub mod plans;
pub mod reconcile;
pub mod stripe;

pub use config::BillingSettings;
pub use entitlement::{Entitlement, Period, SubscriptionStatus};
pub use ledger::{Hold, Ledger, MeterUsage, QuotaExceeded, Units};
pub use meter::{Meter, Vendor};

use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{Error, UserId};

/// `GET /api/billing`: the plan in force, the subscription behind it and every meter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BillingSummary {
    pub plan: String,
    /// The subscription's Stripe status; `null` for a user who never subscribed.
    pub status: Option<SubscriptionStatus>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub current_period_end: Option<OffsetDateTime>,
    pub cancel_at_period_end: bool,
    pub usage: std::collections::BTreeMap<&'static str, MeterUsage>,
}

pub async fn summary(ledger: &Ledger, owner: UserId) -> Result<BillingSummary, Error> {
    let (entitlement, meters) = ledger.usage(owner).await?;
    let subscription = entitlement.subscription.as_ref();
    Ok(BillingSummary {
        plan: entitlement.plan.name.clone(),
        status: subscription.map(|s| s.status),
        current_period_end: subscription.and_then(|s| s.current_period_end),
        cancel_at_period_end: subscription.is_some_and(|s| s.cancel_at_period_end),
        usage: meters.into_iter().map(|(m, u)| (m.as_str(), u)).collect(),
    })
}
