//! Plans are rows, not code: `cargo xtask plan set` creates or changes one without a deploy.

use serde::Serialize;

use super::Meter;
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbError, DbPool, Row, Type};

pub const FREE: &str = "free";

/// What a plan allows per billing period (storage: at any moment), by meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub transcription_seconds: i64,
    pub speech_characters: i64,
    pub translation_characters: i64,
    pub realtime_seconds: i64,
    pub call_minutes: i64,
    pub storage_bytes: i64,
}

impl Limits {
    pub fn get(&self, meter: Meter) -> i64 {
        match meter {
            Meter::TranscriptionSeconds => self.transcription_seconds,
            Meter::SpeechCharacters => self.speech_characters,
            Meter::TranslationCharacters => self.translation_characters,
            Meter::RealtimeSeconds => self.realtime_seconds,
            Meter::CallMinutes => self.call_minutes,
            Meter::StorageBytes => self.storage_bytes,
        }
    }

    fn set(&mut self, meter: Meter, value: i64) {
        match meter {
            Meter::TranscriptionSeconds => self.transcription_seconds = value,
            Meter::SpeechCharacters => self.speech_characters = value,
            Meter::TranslationCharacters => self.translation_characters = value,
            Meter::RealtimeSeconds => self.realtime_seconds = value,
            Meter::CallMinutes => self.call_minutes = value,
            Meter::StorageBytes => self.storage_bytes = value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub name: String,
    pub stripe_price_id: Option<String>,
    pub limits: Limits,
}

/// The plan columns, in [`Plan::from_row_at`]'s order.
pub const COLUMNS: &str = "name, stripe_price_id, transcription_seconds, speech_characters, \
     translation_characters, realtime_seconds, call_minutes, storage_bytes";

impl Plan {
    /// Reads the plan columns starting at column `at` ([`COLUMNS`] order).
    pub fn from_row_at(row: &Row, at: usize) -> Plan {
        Plan {
            name: row.get(at),
            stripe_price_id: row.get(at + 1),
            limits: Limits {
                transcription_seconds: row.get(at + 2),
                speech_characters: row.get(at + 3),
                translation_characters: row.get(at + 4),
                realtime_seconds: row.get(at + 5),
                call_minutes: row.get(at + 6),
                storage_bytes: row.get(at + 7),
            },
        }
    }
}

/// A change to a plan: only what is named changes.
#[derive(Debug, Clone, Default)]
pub struct PlanChange {
    pub stripe_price_id: Option<String>,
    pub limits: Vec<(Meter, i64)>,
}

pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

pub fn valid_price_id(price: &str) -> bool {
    price.strip_prefix("price_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 200
            && rest.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    })
}

impl PlanChange {
    fn validate(&self, name: &str) -> Result<(), Error> {
        let mut errors = Vec::new();
        if !valid_name(name) {
            errors.push(FieldError::new(
                "name",
                "1 to 32 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ));
        }
        if let Some(price) = &self.stripe_price_id {
            if name == FREE {
                errors.push(FieldError::new(
                    "price",
                    "the free plan has no Stripe price",
                ));
            } else if !valid_price_id(price) {
                errors.push(FieldError::new("price", "a Stripe price id: price_…"));
            }
        }
        for (meter, value) in &self.limits {
            if *value < 0 {
                errors.push(FieldError::new(meter.as_str(), "must be 0 or more"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errors))
        }
    }
}

pub async fn get(db: &DbPool, name: &str) -> Result<Option<Plan>, DbError> {
    let rows = db::fetch(
        db,
        &format!("SELECT {COLUMNS} FROM plans WHERE name = $1"),
        &[(&name, Type::TEXT)],
    )
    .await?;
    Ok(rows.first().map(|r| Plan::from_row_at(r, 0)))
}

pub async fn list(db: &DbPool) -> Result<Vec<Plan>, DbError> {
    let rows = db::fetch(
        db,
        &format!("SELECT {COLUMNS} FROM plans ORDER BY name"),
        &[],
    )
    .await?;
    Ok(rows.iter().map(|r| Plan::from_row_at(r, 0)).collect())
}

/// Creates or changes `name`: limits not named keep their value; a new plan starts from the free
/// plan's. A paid plan needs a price (given now or already stored).
pub async fn set(db: &DbPool, name: &str, change: &PlanChange) -> Result<Plan, Error> {
    change.validate(name)?;
    let existing = get(db, name).await?;
    let base = match &existing {
        Some(plan) => plan.clone(),
        None => get(db, FREE)
            .await?
            .ok_or_else(|| Error::Internal("the free plan is missing".into()))?,
    };
    let mut limits = base.limits;
    for (meter, value) in &change.limits {
        limits.set(*meter, *value);
    }
    let price = change
        .stripe_price_id
        .clone()
        .or(existing.and_then(|p| p.stripe_price_id));
    if name != FREE && price.is_none() {
        return Err(Error::invalid(
            "price",
            "a new paid plan needs its Stripe price (--price price_…)",
        ));
    }
    let rows = db::fetch(
        db,
        &format!(
            "INSERT INTO plans ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET stripe_price_id = EXCLUDED.stripe_price_id,
                transcription_seconds = EXCLUDED.transcription_seconds,
                speech_characters = EXCLUDED.speech_characters,
                translation_characters = EXCLUDED.translation_characters,
                realtime_seconds = EXCLUDED.realtime_seconds,
                call_minutes = EXCLUDED.call_minutes,
                storage_bytes = EXCLUDED.storage_bytes, updated_at = now()
             RETURNING {COLUMNS}"
        ),
        &[
            (&name, Type::TEXT),
            (&price, Type::TEXT),
            (&limits.transcription_seconds, Type::INT8),
            (&limits.speech_characters, Type::INT8),
            (&limits.translation_characters, Type::INT8),
            (&limits.realtime_seconds, Type::INT8),
            (&limits.call_minutes, Type::INT8),
            (&limits.storage_bytes, Type::INT8),
        ],
    )
    .await
    .map_err(|e| match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
            Error::invalid("price", "another plan already sells this price")
        }
        _ => e.into(),
    })?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Internal("the plan upsert returned nothing".into()))?;
    Ok(Plan::from_row_at(row, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prices_are_checked_before_the_database() {
        for ok in ["free", "pro", "team-2", "a_b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Pro", "-x", "a b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_price_id("price_1Pq2Rs"));
        for bad in ["price_", "prod_1", "price_a-b", "price_a b"] {
            assert!(!valid_price_id(bad), "{bad}");
        }
        let change = PlanChange {
            stripe_price_id: Some("price_1".into()),
            limits: vec![(Meter::CallMinutes, -1)],
        };
        let Err(Error::Invalid(errors)) = change.validate("free") else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["price", "call_minutes"]);
    }
}
