//! Parley's business rules, free of HTTP: a webhook, a worker or an API route reuses them as they
//! are. Errors are [`Error`]; the api layer maps them to problem+json.

pub mod billing;
pub mod calls;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod lifecycle;
pub mod outbox;
pub mod owned;
pub mod paging;
pub mod recordings;
pub mod speech;
pub mod transcriptions;
pub mod translations;

pub use error::{Error, FieldError};
pub use ids::UserId;
