//! The bottom layer: what any Lambda needs regardless of the product (settings, database, R2,
//! SQS, idempotency, telemetry, the outbound HTTP client and Lambda's clock).

pub mod audio;
pub mod aws;
pub mod db;
pub mod download;
pub mod http_client;
pub mod idempotency;
pub mod lambda;
pub mod queue;
pub mod settings;
pub mod storage;
pub mod telemetry;
