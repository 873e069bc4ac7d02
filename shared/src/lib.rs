//! Parley's common crate: everything the Lambda functions share.
//!
//! Modules depend downward only: `app` wires `config`, `telemetry`, `db`, `http` and `auth` together
//! once per cold start; `recordings` is domain logic over `db` and `storage`; nothing here depends on a function crate.

pub mod app;
pub mod assemblyai;
pub mod audio;
pub mod auth;
pub mod config;
pub mod db;
pub mod elevenlabs;
pub mod http;
pub mod idempotency;
#[cfg(feature = "local")]
pub mod local;
pub mod pagination;
pub mod queue;
pub mod recordings;
#[cfg(feature = "local")]
pub mod sandbox;
pub mod storage;
pub mod telemetry;
pub mod transcriptions;
pub mod tts;
pub mod vendor;

pub use app::App;
