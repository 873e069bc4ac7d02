//! One folder per vendor: its client, wire types and configuration section. Vendors use only the
//! platform layer.

pub mod assemblyai;
pub mod deepl;
pub mod elevenlabs;
pub mod openai;
pub mod signalwire;
pub mod signature_error;
pub mod stripe;
pub mod telnyx;
