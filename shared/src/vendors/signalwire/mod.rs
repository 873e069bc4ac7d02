//! SignalWire's Twilio-compatible (cXML/LaML) voice API: webhook signatures, the Calls and
//! Recordings REST resources, cXML documents and the callback wire types.

pub mod client;
pub mod config;
pub mod cxml;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod signature;
pub mod wire;
