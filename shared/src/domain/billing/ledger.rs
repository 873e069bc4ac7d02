//! The usage ledger. Before anything paid is queued or minted, an upper bound of its units is
//! reserved against what is left in the period; when the vendor reports the real figure it is
//! committed; a job that fails or is abandoned releases its reservation. Each reservation belongs to
//! one subject (a job, an upload, a call) per meter, so retries never hold twice.
//!
//! Concurrency: every reservation locks its counter row (`user, meter, period`) for the length of a
//! short transaction, so parallel requests at the boundary queue on that lock and each sees what the
//! previous one left.

use std::time::Duration;

use serde::Serialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::config::BillingSettings;
use super::entitlement::{self, Entitlement};
use super::{Meter, Vendor};
use crate::domain::{Error, UserId};
use crate::platform::db::{self, DbError, DbPool, Type};

/// How many units a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// This many, or refuse.
    Exactly(i64),
    /// As many as are left up to `at_most`, but at least `at_least` (realtime sessions).
    UpTo { at_least: i64, at_most: i64 },
}

/// Units held for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reservation is committed or released"]
pub struct Hold {
    pub meter: Meter,
    pub subject: String,
    pub units: i64,
}

/// Why a reservation was refused: the body of a `402 quota-exceeded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaExceeded {
    pub meter: Meter,
    pub limit: i64,
    pub remaining: i64,
    /// When the meter's period ends; storage never resets (`None`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub resets_at: Option<OffsetDateTime>,
    /// A vendor billed more than was reserved this period; nothing more until it resets.
    pub overdrawn: bool,
}

/// One meter as `GET /api/billing` and `cargo xtask usage` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeterUsage {
    pub used: i64,
    pub reserved: i64,
    pub limit: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resets_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overdrawn: bool,
}

/// The counters of storage, which never reset, live under one period starting at the epoch.
fn period_of(meter: Meter, entitlement: &Entitlement) -> (OffsetDateTime, Option<OffsetDateTime>) {
    if meter.resets() {
        (entitlement.period.start, Some(entitlement.period.end))
    } else {
        (OffsetDateTime::UNIX_EPOCH, None)
    }
}

#[derive(Debug, Clone)]
pub struct Ledger {
    pub(super) db: DbPool,
    settings: BillingSettings,
}

impl Ledger {
    pub fn new(db: DbPool, settings: BillingSettings) -> Ledger {
        Ledger { db, settings }
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.settings
    }

    fn grace(&self) -> Duration {
        self.settings.past_due_grace
    }

    pub async fn entitlement(&self, owner: UserId) -> Result<Entitlement, Error> {
        let client = db::client(&self.db).await?;
        entitlement::read(&client, owner, OffsetDateTime::now_utc(), self.grace()).await
    }

    /// Holds `units` of `meter` for `subject`, or refuses with [`Error::QuotaExceeded`] (the user's
    /// allowance) or [`Error::BudgetExhausted`] (the operator's daily cap on `vendor`). Holding the
    /// same subject again returns the open reservation instead of holding twice.
    pub async fn reserve(
        &self,
        owner: UserId,
        meter: Meter,
        units: Units,
        subject: &str,
        vendor: Option<Vendor>,
    ) -> Result<Hold, Error> {
        let now = OffsetDateTime::now_utc();
        let entitlement = self.entitlement(owner).await?;
        let limit = entitlement.plan.limits.get(meter);
        let (period_start, period_end) = period_of(meter, &entitlement);
        let day = now.date();
        let mut client = db::client(&self.db).await?;
        let tx = client.transaction().await.map_err(DbError::from)?;
        let existing = tx
            .query_typed(
                "SELECT units, state FROM usage_reservations WHERE meter = $1 AND subject = $2 FOR UPDATE",
                &[(&meter.as_str(), Type::TEXT), (&subject, Type::TEXT)],
            )
            .await
            .map_err(DbError::from)?;
        if let Some(row) = existing.first() {
            let state: &str = row.get(1);
            if state != "released" {
                // Open or already settled: this subject is paid for once.
                return Ok(Hold {
                    meter,
                    subject: subject.to_owned(),
                    units: row.get(0),
                });
            }
        }
        // Creates the counter or locks it; either way this transaction now owns it.
        let counter = tx
            .query_typed(
                "INSERT INTO usage_counters AS c (user_id, meter, period_start, period_end)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, meter, period_start) DO UPDATE SET updated_at = now()
                 RETURNING c.used, c.reserved, c.overdrawn",
                &[
                    (&owner, Type::INT4),
                    (&meter.as_str(), Type::TEXT),
                    (&period_start, Type::TIMESTAMPTZ),
                    (&period_end, Type::TIMESTAMPTZ),
                ],
            )
            .await
            .map_err(DbError::from)?;
        let row = counter
            .first()
            .ok_or_else(|| Error::Internal("the counter upsert returned nothing".into()))?;
        let (used, reserved, overdrawn): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        let left = (limit - used - reserved).max(0);
        let granted = match units {
            Units::Exactly(n) if n <= left && !overdrawn => Some(n),
            Units::UpTo { at_least, at_most } if left >= at_least && !overdrawn => {
                Some(left.min(at_most))
            }
            _ => None,
        };
        let Some(granted) = granted else {
            drop(tx);
            tracing::info!(user_id = %owner, meter = meter.as_str(), limit, used, reserved, overdrawn, "quota exceeded");
            return Err(Error::QuotaExceeded(QuotaExceeded {
                meter,
                limit,
                remaining: left,
                resets_at: period_end,
                overdrawn,
            }));
        };
        tx.query_typed(
            "UPDATE usage_counters SET reserved = reserved + $4, updated_at = now()
              WHERE user_id = $1 AND meter = $2 AND period_start = $3",
            &[
                (&owner, Type::INT4),
                (&meter.as_str(), Type::TEXT),
                (&period_start, Type::TIMESTAMPTZ),
                (&granted, Type::INT8),
            ],
        )
        .await
        .map_err(DbError::from)?;
        let capped = vendor.and_then(|v| self.settings.cap(v).map(|cap| (v, cap)));
        if let Some((vendor, cap)) = capped {
            let held = tx
                .query_typed(
                    "INSERT INTO vendor_daily_usage AS d (vendor, day, units)
                     SELECT $1, $2, $3 WHERE $3 <= $4
                     ON CONFLICT (vendor, day) DO UPDATE SET units = d.units + EXCLUDED.units
                      WHERE d.units + EXCLUDED.units <= $4
                     RETURNING units",
                    &[
                        (&vendor.as_str(), Type::TEXT),
                        (&day, Type::DATE),
                        (&granted, Type::INT8),
                        (&cap, Type::INT8),
                    ],
                )
                .await
                .map_err(DbError::from)?;
            if held.is_empty() {
                drop(tx);
                budget_exhausted(vendor, cap);
                return Err(Error::BudgetExhausted(vendor));
            }
        }
        let vendor_name = capped.map(|(v, _)| v.as_str());
        let vendor_day: Option<Date> = capped.map(|_| day);
        tx.query_typed(
            "INSERT INTO usage_reservations (id, user_id, meter, period_start, subject, units, vendor, vendor_day)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (meter, subject) DO UPDATE SET user_id = EXCLUDED.user_id,
                period_start = EXCLUDED.period_start, units = EXCLUDED.units,
                vendor = EXCLUDED.vendor, vendor_day = EXCLUDED.vendor_day, state = 'reserved',
                committed_units = NULL, created_at = now(), settled_at = NULL",
            &[
                (&Uuid::now_v7(), Type::UUID),
                (&owner, Type::INT4),
                (&meter.as_str(), Type::TEXT),
                (&period_start, Type::TIMESTAMPTZ),
                (&subject, Type::TEXT),
                (&granted, Type::INT8),
                (&vendor_name, Type::TEXT),
                (&vendor_day, Type::DATE),
            ],
        )
        .await
        .map_err(DbError::from)?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(Hold {
            meter,
            subject: subject.to_owned(),
            units: granted,
        })
    }

    /// Settles `subject`'s open reservation with the vendor's figure. More than was held marks the
    /// period overdrawn: nothing more is accepted on that meter until it resets. Returns false when
    /// there was nothing open (already settled: a redelivery).
    pub async fn commit(&self, meter: Meter, subject: &str, actual: i64) -> Result<bool, DbError> {
        let actual = actual.max(0);
        let rows = db::fetch(
            &self.db,
            "WITH r AS (
                UPDATE usage_reservations SET state = 'committed', committed_units = $3, settled_at = now()
                 WHERE meter = $1 AND subject = $2 AND state = 'reserved'
                 RETURNING user_id, meter, period_start, units, vendor, vendor_day
             ), c AS (
                UPDATE usage_counters u
                   SET reserved = greatest(u.reserved - r.units, 0), used = u.used + $3,
                       overdrawn = u.overdrawn OR $3 > r.units, updated_at = now()
                  FROM r
                 WHERE u.user_id = r.user_id AND u.meter = r.meter AND u.period_start = r.period_start
                 RETURNING u.user_id
             ), v AS (
                UPDATE vendor_daily_usage d SET units = greatest(d.units - r.units + $3, 0)
                  FROM r WHERE d.vendor = r.vendor AND d.day = r.vendor_day
                 RETURNING d.vendor
             )
             SELECT r.units, r.user_id, (SELECT count(*) FROM c), (SELECT count(*) FROM v) FROM r",
            &[
                (&meter.as_str(), Type::TEXT),
                (&subject, Type::TEXT),
                (&actual, Type::INT8),
            ],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok(false);
        };
        let held: i64 = row.get(0);
        if actual > held {
            let owner: UserId = row.get(1);
            tracing::warn!(user_id = %owner, meter = meter.as_str(), subject, held, actual,
                "the vendor billed more than was reserved; the meter is closed until its period resets");
        }
        Ok(true)
    }

    /// Gives back `subject`'s open reservation (the job failed or was abandoned). Returns false when
    /// there was nothing open.
    pub async fn release(&self, meter: Meter, subject: &str) -> Result<bool, DbError> {
        let rows = db::fetch(
            &self.db,
            "WITH r AS (
                UPDATE usage_reservations SET state = 'released', settled_at = now()
                 WHERE meter = $1 AND subject = $2 AND state = 'reserved'
                 RETURNING user_id, meter, period_start, units, vendor, vendor_day
             ), c AS (
                UPDATE usage_counters u SET reserved = greatest(u.reserved - r.units, 0), updated_at = now()
                  FROM r
                 WHERE u.user_id = r.user_id AND u.meter = r.meter AND u.period_start = r.period_start
                 RETURNING u.user_id
             ), v AS (
                UPDATE vendor_daily_usage d SET units = greatest(d.units - r.units, 0)
                  FROM r WHERE d.vendor = r.vendor AND d.day = r.vendor_day
                 RETURNING d.vendor
             )
             SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM v) FROM r",
            &[(&meter.as_str(), Type::TEXT), (&subject, Type::TEXT)],
        )
        .await?;
        Ok(!rows.is_empty())
    }

    /// Usage that had no reservation to settle (a call's recording arriving from the vendor): counted
    /// as committed at once, once per subject, whatever the allowance says (the object exists).
    pub async fn record(
        &self,
        owner: UserId,
        meter: Meter,
        subject: &str,
        units: i64,
    ) -> Result<(), Error> {
        let entitlement = self.entitlement(owner).await?;
        let (period_start, period_end) = period_of(meter, &entitlement);
        let units = units.max(0);
        db::fetch(
            &self.db,
            "WITH r AS (
                INSERT INTO usage_counters AS c (user_id, meter, period_start, period_end)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (user_id, meter, period_start) DO UPDATE SET updated_at = now()
                RETURNING c.user_id
             ), res AS (
                INSERT INTO usage_reservations (id, user_id, meter, period_start, subject, units,
                                                state, committed_units, settled_at)
                SELECT $5, $1, $2, $3, $6, $7, 'committed', $7, now() FROM r
                ON CONFLICT (meter, subject) DO NOTHING
                RETURNING units
             )
             UPDATE usage_counters u SET used = u.used + res.units, updated_at = now()
               FROM res WHERE u.user_id = $1 AND u.meter = $2 AND u.period_start = $3",
            &[
                (&owner, Type::INT4),
                (&meter.as_str(), Type::TEXT),
                (&period_start, Type::TIMESTAMPTZ),
                (&period_end, Type::TIMESTAMPTZ),
                (&Uuid::now_v7(), Type::UUID),
                (&subject, Type::TEXT),
                (&units, Type::INT8),
            ],
        )
        .await?;
        Ok(())
    }

    /// Storage given back: the subject's object was deleted, so its committed bytes (or its open
    /// reservation) no longer count. Idempotent.
    pub async fn free(&self, meter: Meter, subject: &str) -> Result<(), DbError> {
        self.release(meter, subject).await?;
        db::fetch(
            &self.db,
            "WITH r AS (
                UPDATE usage_reservations SET state = 'released', settled_at = now()
                 WHERE meter = $1 AND subject = $2 AND state = 'committed'
                 RETURNING user_id, meter, period_start, committed_units
             )
             UPDATE usage_counters u SET used = greatest(u.used - r.committed_units, 0), updated_at = now()
               FROM r
              WHERE u.user_id = r.user_id AND u.meter = r.meter AND u.period_start = r.period_start",
            &[(&meter.as_str(), Type::TEXT), (&subject, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// The user's plan, period and every meter.
    pub async fn usage(
        &self,
        owner: UserId,
    ) -> Result<(Entitlement, Vec<(Meter, MeterUsage)>), Error> {
        let entitlement = self.entitlement(owner).await?;
        let rows = db::fetch(
            &self.db,
            "SELECT meter, used, reserved, overdrawn FROM usage_counters
              WHERE user_id = $1 AND (period_start = $2 OR meter = 'storage_bytes')",
            &[
                (&owner, Type::INT4),
                (&entitlement.period.start, Type::TIMESTAMPTZ),
            ],
        )
        .await?;
        let meters = Meter::ALL
            .into_iter()
            .map(|meter| {
                let row = rows.iter().find(|r| r.get::<_, &str>(0) == meter.as_str());
                let (_, resets_at) = period_of(meter, &entitlement);
                (
                    meter,
                    MeterUsage {
                        used: row.map_or(0, |r| r.get(1)),
                        reserved: row.map_or(0, |r| r.get(2)),
                        limit: entitlement.plan.limits.get(meter),
                        resets_at,
                        overdrawn: row.is_some_and(|r| r.get(3)),
                    },
                )
            })
            .collect();
        Ok((entitlement, meters))
    }
}

/// The operator's cap on `vendor` is reached: an error log line and a CloudWatch metric (embedded
/// metric format, so no metric filter is needed) that the `VendorBudgetExhaustedAlarm` watches.
fn budget_exhausted(vendor: Vendor, cap: i64) {
    tracing::error!(
        vendor = vendor.as_str(),
        cap,
        "operator daily cap reached; new paid work is refused"
    );
    crate::platform::telemetry::emit_metric(
        "VendorBudgetExhausted",
        &[("Vendor", vendor.as_str())],
    );
}
