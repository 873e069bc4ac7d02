//! Stripe (API v1): webhook signatures and events, and a small client for the five calls Parley
//! makes (customers, Checkout and Customer Portal sessions, reading and cancelling subscriptions).
//! See docs/stripe.md for why this is a hand-written client and not a generated one.

pub mod client;
pub mod config;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod signature;
pub mod wire;
