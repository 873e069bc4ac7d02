//! The domain's own error: what went wrong in business terms, never in HTTP's. The api layer maps
//! each kind to a status and a problem type; a worker maps it to retry or give up.

use serde::Serialize;

use crate::domain::billing::{QuotaExceeded, Vendor};
use crate::platform::db::DbError;
use crate::platform::http_client::VendorError;
use crate::platform::idempotency::IdempotencyError;
use crate::platform::storage::StorageError;

/// A field that failed validation, named as the client sent it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more inputs are invalid, each named as the client sent it.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// The request contradicts the resource's state (or an earlier request with the same key).
    #[error("{0}")]
    Conflict(String),
    /// A vendor refused for a reason that retrying will not fix.
    #[error("{0}")]
    Rejected(String),
    /// A dependency (database, queue, vendor) is down or busy; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The user's allowance on a meter cannot cover the request (nothing was queued or sent).
    #[error("the {} allowance cannot cover this request", .0.meter)]
    QuotaExceeded(QuotaExceeded),
    /// The operator's daily cap on a vendor is reached across all users.
    #[error("the daily budget for {0} is exhausted")]
    BudgetExhausted(Vendor),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => Error::Unavailable(cause),
            DbError::Query(e) => Error::Internal(e.to_string()),
        }
    }
}

impl From<VendorError> for Error {
    fn from(e: VendorError) -> Self {
        if e.is_transient() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Rejected(e.to_string())
        }
    }
}

impl From<IdempotencyError> for Error {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Store(e) => e.into(),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(cause) => Error::Unavailable(cause),
            StorageError::Failed(cause) => Error::Internal(cause),
        }
    }
}
