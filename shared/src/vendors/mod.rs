//! One folder per vendor: its client, wire types and configuration section. Vendors use only the
//! platform layer.

pub mod assemblyai;
pub mod elevenlabs;
