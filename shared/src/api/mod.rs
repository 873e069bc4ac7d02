//! The top layer of `shared`: problem+json errors, the request pipeline (CORS, CSRF, limits, the
//! log line), request extractors, Auth.js sessions and the per-function wiring.

pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod pipeline;
pub mod ratelimit;
pub mod settings;
pub mod webhook;

pub use error::{ApiError, ApiResult, FieldError, PROBLEM_JSON, json, no_content};
pub use extract::{inline_vendor_deadline, page_limit, parse_json, path_uuid, query_param};
pub use pipeline::{Cors, Http};
