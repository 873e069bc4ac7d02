//! Billing: plans sold through Stripe, the subscriptions Stripe reports, and what they entitle.

pub mod stripe;
