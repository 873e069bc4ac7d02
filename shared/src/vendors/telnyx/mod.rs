//! Telnyx Call Control v2: webhook signatures, commands, the Recordings API and its wire types.

pub mod client;
pub mod config;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod signature;
pub mod wire;
