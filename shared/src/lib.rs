//! Parley's common crate: everything the Lambda functions share, in four layers that depend
//! downward only (`tests/tests/layers.rs` enforces it):
//!
//! `api` (problem+json, the request pipeline, Auth.js sessions, the per-function wiring)
//! → `domain` (recordings, transcriptions, speech, the job lifecycle, its own error type)
//! → `vendors` (one folder per vendor: client, wire types, configuration)
//! → `platform` (settings reader, database, storage, queues, idempotency, telemetry, HTTP client).
//!
//! `local` (the queue pump and the vendor sandbox) sits on top and is compiled only for xtask and
//! the tests.

pub mod api;
pub mod domain;
#[cfg(feature = "local")]
pub mod local;
pub mod platform;
pub mod vendors;

pub use api::app::App;
