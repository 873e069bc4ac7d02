//! Money: plans as data, what a user is entitled to by their subscription's state, and the usage
//! ledger that holds units before any paid vendor call. Stripe's side (checkout, portal, events)
//! is in [`stripe`].

pub mod config;
pub mod entitlement;
pub mod ledger;
pub mod meter;
pub mod plans;

pub use config::BillingSettings;
pub use entitlement::{Entitlement, Period, SubscriptionStatus};
pub use ledger::{Hold, Ledger, MeterUsage, QuotaExceeded, Units};
pub use meter::{Meter, Vendor};
