//! Idempotency with Powertools' semantics on a Postgres table.
//!
//! A record is INPROGRESS (until the Lambda deadline) or COMPLETED (until its TTL); EXPIRED is only ever
//! derived on read. The lock is one statement that works through a transaction-mode pooler. A different
//! payload under the same key is an error, and a failed handler deletes its record so a retry runs again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::platform::db::{self, DbError, DbPool, Type};

/// Longer than any vendor's retry horizon (Stripe retries for 3 days).
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Used when the caller's deadline is unknown (0), so a crashed holder cannot block a key for long.
const FALLBACK_IN_PROGRESS: Duration = Duration::from_secs(60);
/// Powertools retries an inconsistent read twice.
const MAX_RETRIES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("an execution with this idempotency key is already in progress")]
    AlreadyInProgress,
    #[error("the payload does not match the stored record for this idempotency key")]
    PayloadMismatch,
    #[error("the idempotency record changed while it was being read; retry")]
    InconsistentState,
    #[error(transparent)]
    Store(#[from] DbError),
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// This caller owns the key: run, then [`Idempotency::complete`] or [`Idempotency::release`].
    Acquired(Lease),
    /// Already done: here is the stored response; do not run again.
    Completed(Value),
}

/// Ownership of one in-progress record.
#[derive(Debug)]
pub struct Lease {
    scope: String,
    key_hash: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: DbPool,
    ttl: Duration,
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Hash of the payload; serde_json's maps are ordered by key, so key order never changes it.
pub fn payload_hash(payload: &Value) -> Vec<u8> {
    sha256(payload.to_string().as_bytes())
}

impl Idempotency {
    pub fn new(pool: DbPool, ttl: Duration) -> Self {
        Idempotency { pool, ttl }
    }

    /// Claims `key` within `scope` (the function and, for API keys, the user) for `payload`.
    /// `deadline_ms` is the Lambda deadline in ms since the epoch (0 if unknown).
    pub async fn claim(
        &self,
        scope: &str,
        key: &str,
        payload: &Value,
        deadline_ms: u64,
    ) -> Result<Claim, IdempotencyError> {
        let key_hash = sha256(key.as_bytes());
        let payload_hash = payload_hash(payload);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let until_ms = if deadline_ms > now_ms {
            deadline_ms
        } else {
            now_ms + FALLBACK_IN_PROGRESS.as_millis() as u64
        };
        let until_secs = until_ms as f64 / 1000.0;
        let ttl = self.ttl.as_secs_f64();
        for _ in 0..=MAX_RETRIES {
            let client = db::client(&self.pool).await?;
            let locked = db::query(&client,
                    "INSERT INTO idempotency_records (scope, key_hash, status, payload_hash, in_progress_until, expires_at)
                     VALUES ($1, $2, 'INPROGRESS', $3, to_timestamp($4), now() + make_interval(secs => $5))
                     ON CONFLICT (scope, key_hash) DO UPDATE
                        SET status = 'INPROGRESS', payload_hash = EXCLUDED.payload_hash, response = NULL,
                            in_progress_until = EXCLUDED.in_progress_until, expires_at = EXCLUDED.expires_at
                      WHERE idempotency_records.expires_at < now()
                         OR (idempotency_records.status = 'INPROGRESS' AND idempotency_records.in_progress_until < now())
                     RETURNING 1",
                    &[
                        (&scope, Type::TEXT),
                        (&key_hash, Type::BYTEA),
                        (&payload_hash, Type::BYTEA),
                        (&until_secs, Type::FLOAT8),
                        (&ttl, Type::FLOAT8),
                    ],
                )
                .await
                .map_err(DbError::from)?;
            if !locked.is_empty() {
                return Ok(Claim::Acquired(Lease {
                    scope: scope.to_owned(),
                    key_hash,
                }));
            }
            let existing = db::query(&client,
                    "SELECT status, payload_hash, response, in_progress_until < now(), expires_at < now()
                     FROM idempotency_records WHERE scope = $1 AND key_hash = $2",
                    &[(&scope, Type::TEXT), (&key_hash, Type::BYTEA)],
                )
                .await
                .map_err(DbError::from)?;
            let Some(row) = existing.first() else {
                continue;
            };
            let (status, stored_hash): (&str, Vec<u8>) = (row.get(0), row.get(1));
            let (in_progress_expired, expired): (Option<bool>, bool) = (row.get(3), row.get(4));
            if expired || (status == "INPROGRESS" && in_progress_expired == Some(true)) {
                continue; // Expired between the two statements: claim again.
            }
            if stored_hash != payload_hash {
                return Err(IdempotencyError::PayloadMismatch);
            }
            return match status {
                "COMPLETED" => Ok(Claim::Completed(
                    row.get::<_, Option<Value>>(2).unwrap_or(Value::Null),
                )),
                _ => Err(IdempotencyError::AlreadyInProgress),
            };
        }
        Err(IdempotencyError::InconsistentState)
    }

    /// Records the response; later claims with the same key and payload get it back.
    pub async fn complete(&self, lease: Lease, response: &Value) -> Result<(), IdempotencyError> {
        let client = db::client(&self.pool).await?;
        db::query(&client,
                "UPDATE idempotency_records SET status = 'COMPLETED', response = $3, in_progress_until = NULL,
                        expires_at = now() + make_interval(secs => $4)
                 WHERE scope = $1 AND key_hash = $2",
                &[
                    (&lease.scope, Type::TEXT),
                    (&lease.key_hash, Type::BYTEA),
                    (response, Type::JSONB),
                    (&self.ttl.as_secs_f64(), Type::FLOAT8),
                ],
            )
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    /// Deletes the record after a failure, so a retry runs the work again.
    pub async fn release(&self, lease: Lease) -> Result<(), IdempotencyError> {
        let client = db::client(&self.pool).await?;
        db::query(&client,
                "DELETE FROM idempotency_records WHERE scope = $1 AND key_hash = $2 AND status = 'INPROGRESS'",
                &[(&lease.scope, Type::TEXT), (&lease.key_hash, Type::BYTEA)],
            )
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    /// Drops records past their expiry (housekeeping; correctness never depends on it).
    pub async fn purge_expired(&self) -> Result<u64, IdempotencyError> {
        let rows = db::fetch(
            &self.pool,
            "DELETE FROM idempotency_records WHERE expires_at < now() RETURNING 1",
            &[],
        )
        .await?;
        Ok(rows.len() as u64)
    }
}

/// Validates an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hashes_ignore_key_order_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"d":4,"c":2},"a":1}"#).unwrap();
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_ne!(payload_hash(&a), payload_hash(&c));
    }

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(valid_key("3f1c-upload-1"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("ключ"));
    }
}
