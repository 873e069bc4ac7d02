//! Phone numbers: an operator assigns each one to a user (users cannot claim numbers, which would
//! route someone else's calls to them); the owner reads and changes how its calls are handled.

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Provider, is_e164};
use crate::domain::ids::UserId;
use crate::domain::owned::owned_row;
use crate::domain::paging::{Cursors, Keyed, Page, Position};
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbPool, Row, Type};

pub const MAX_GREETING_CHARS: usize = 500;
pub const MIN_RECORDING_SECONDS: i32 = 10;
/// Four hours: Telnyx's and SignalWire's recordings both allow at least this.
pub const MAX_RECORDING_SECONDS: i32 = 14_400;

/// A number as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneNumber {
    pub id: Uuid,
    pub e164: String,
    pub provider: Provider,
    pub record: bool,
    pub transcribe: bool,
    pub greeting: Option<String>,
    pub forward_to: Option<String>,
    pub max_recording_seconds: i32,
    #[serde(skip)]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, e164, provider, record, transcribe, greeting, forward_to, \
                       max_recording_seconds, created_at";

impl PhoneNumber {
    fn from_row(row: &Row) -> PhoneNumber {
        PhoneNumber {
            id: row.get(0),
            e164: row.get(1),
            provider: Provider::parse(row.get(2)).unwrap_or(Provider::Telnyx),
            record: row.get(3),
            transcribe: row.get(4),
            greeting: row.get(5),
            forward_to: row.get(6),
            max_recording_seconds: row.get(7),
            created_at: row.get(8),
        }
    }
}

impl Keyed for PhoneNumber {
    fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// `Some(None)` for an explicit `null` (clear it), `None` when the field is absent (keep it).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/phone-numbers/{id}`: any subset of the settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub record: Option<bool>,
    pub transcribe: Option<bool>,
    #[serde(default, deserialize_with = "explicit")]
    pub greeting: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit")]
    pub forward_to: Option<Option<String>>,
    pub max_recording_seconds: Option<i64>,
}

impl SettingsPatch {
    /// Checks every field, reporting every problem at once.
    pub fn validate(mut self) -> Result<SettingsPatch, Error> {
        let mut problems = Vec::new();
        if let Some(Some(greeting)) = &self.greeting {
            // Counted as sent (the contract's maxLength), controls refused but line breaks.
            let chars = greeting.chars().count();
            if chars == 0 || chars > MAX_GREETING_CHARS {
                problems.push(FieldError::new(
                    "greeting",
                    format!("must be 1 to {MAX_GREETING_CHARS} characters; got {chars}"),
                ));
            } else if greeting.chars().any(|c| c.is_control() && c != '\n') {
                problems.push(FieldError::new(
                    "greeting",
                    "must not contain control characters (line breaks are fine)",
                ));
            }
        }
        // Nothing to say is no greeting: stored as none, never as a blank `<Say>`.
        if let Some(Some(greeting)) = &mut self.greeting {
            let trimmed = greeting.trim();
            if trimmed.is_empty() {
                self.greeting = Some(None);
            } else {
                *greeting = trimmed.to_owned();
            }
        }
        if let Some(Some(forward_to)) = &self.forward_to
            && !is_e164(forward_to)
        {
            problems.push(FieldError::new(
                "forward_to",
                "must be an E.164 number such as +15551234567",
            ));
        }
        if let Some(seconds) = self.max_recording_seconds
            && !(i64::from(MIN_RECORDING_SECONDS)..=i64::from(MAX_RECORDING_SECONDS))
                .contains(&seconds)
        {
            problems.push(FieldError::new(
                "max_recording_seconds",
                format!("must be from {MIN_RECORDING_SECONDS} to {MAX_RECORDING_SECONDS}"),
            ));
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(Error::Invalid(problems))
        }
    }
}

/// What an operator assigns: `cargo xtask phone-number assign`.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub e164: String,
    pub provider: Provider,
    pub telnyx_connection_id: Option<String>,
    pub signalwire_number_sid: Option<String>,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct PhoneNumbers {
    db: DbPool,
    cursors: Cursors,
}

impl PhoneNumbers {
    pub fn new(db: DbPool, cursors: Cursors) -> PhoneNumbers {
        PhoneNumbers { db, cursors }
    }

    pub async fn list(
        &self,
        owner: UserId,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<PhoneNumber>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM phone_numbers WHERE owner_id = $1
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        self.cursors
            .fetch_page(
                &self.db,
                &sql,
                &[(&owner, Type::INT4)],
                owner,
                cursor,
                limit,
                PhoneNumber::from_row,
            )
            .await
    }

    /// Applies a validated patch to the caller's number; someone else's is not found.
    pub async fn update(
        &self,
        owner: UserId,
        id: Uuid,
        patch: SettingsPatch,
    ) -> Result<PhoneNumber, Error> {
        let patch = patch.validate()?;
        let current = PhoneNumber::from_row(
            &owned_row(
                &self.db,
                &format!("SELECT {COLUMNS} FROM phone_numbers WHERE id = $1 AND owner_id = $2"),
                id,
                owner,
            )
            .await?,
        );
        if let Some(Some(forward_to)) = &patch.forward_to
            && *forward_to == current.e164
        {
            return Err(Error::invalid(
                "forward_to",
                "must not be the number itself",
            ));
        }
        let greeting = patch.greeting.unwrap_or(current.greeting);
        let forward_to = patch.forward_to.unwrap_or(current.forward_to);
        let record = patch.record.unwrap_or(current.record);
        let transcribe = patch.transcribe.unwrap_or(current.transcribe);
        let max_seconds = patch
            .max_recording_seconds
            .map_or(current.max_recording_seconds, |s| s as i32);
        let rows = db::fetch(
            &self.db,
            &format!(
                "UPDATE phone_numbers SET record = $3, transcribe = $4, greeting = $5,
                        forward_to = $6, max_recording_seconds = $7, updated_at = now()
                  WHERE id = $1 AND owner_id = $2 RETURNING {COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&owner, Type::INT4),
                (&record, Type::BOOL),
                (&transcribe, Type::BOOL),
                (&greeting, Type::TEXT),
                (&forward_to, Type::TEXT),
                (&max_seconds, Type::INT4),
            ],
        )
        .await?;
        rows.first()
            .map(PhoneNumber::from_row)
            .ok_or(Error::NotFound)
    }

    /// Assigns (or reassigns) a number to the user with `email`. Operator-only: no route calls it.
    pub async fn assign(&self, assignment: &Assignment) -> Result<PhoneNumber, Error> {
        if !is_e164(&assignment.e164) {
            return Err(Error::invalid(
                "e164",
                "must be an E.164 number such as +15551234567",
            ));
        }
        if assignment.provider == Provider::Telnyx && assignment.telnyx_connection_id.is_none() {
            tracing::warn!(
                e164 = %assignment.e164,
                "no Telnyx connection id: inbound calls work, outbound dials from it will fail"
            );
        }
        let id = Uuid::now_v7();
        let rows = db::fetch(
            &self.db,
            &format!(
                "INSERT INTO phone_numbers (id, e164, provider, telnyx_connection_id,
                                            signalwire_number_sid, owner_id)
                 SELECT $1, $2, $3, $4, $5, u.id FROM users u WHERE lower(u.email) = lower($6)
                 ORDER BY u.id LIMIT 1
                 ON CONFLICT (e164) DO UPDATE
                    SET provider = EXCLUDED.provider, owner_id = EXCLUDED.owner_id,
                        telnyx_connection_id = COALESCE(EXCLUDED.telnyx_connection_id,
                                                        phone_numbers.telnyx_connection_id),
                        signalwire_number_sid = COALESCE(EXCLUDED.signalwire_number_sid,
                                                         phone_numbers.signalwire_number_sid),
                        updated_at = now()
                 RETURNING {COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&assignment.e164, Type::TEXT),
                (&assignment.provider.as_str(), Type::TEXT),
                (&assignment.telnyx_connection_id, Type::TEXT),
                (&assignment.signalwire_number_sid, Type::TEXT),
                (&assignment.email, Type::TEXT),
            ],
        )
        .await?;
        rows.first()
            .map(PhoneNumber::from_row)
            .ok_or_else(|| Error::invalid("email", "no user has this email address"))
    }
}

/// What a call on a number does, read when the call begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    pub phone_number_id: Uuid,
    pub owner: UserId,
    pub record: bool,
    pub transcribe: bool,
    pub greeting: Option<String>,
    pub forward_to: Option<String>,
    pub max_recording_seconds: i32,
    pub telnyx_connection_id: Option<String>,
}

impl Handling {
    pub const COLUMNS: &'static str = "n.id, n.owner_id, n.record, n.transcribe, n.greeting, \
         n.forward_to, n.max_recording_seconds, n.telnyx_connection_id";

    pub fn from_row(row: &Row, at: usize) -> Handling {
        Handling {
            phone_number_id: row.get(at),
            owner: row.get(at + 1),
            record: row.get(at + 2),
            transcribe: row.get(at + 3),
            greeting: row.get(at + 4),
            forward_to: row.get(at + 5),
            max_recording_seconds: row.get(at + 6),
            telnyx_connection_id: row.get(at + 7),
        }
    }
}

/// How a call to `e164` is handled, or `None` when nobody owns the number.
pub async fn handling_of_number(
    pool: &DbPool,
    provider: Provider,
    e164: &str,
) -> Result<Option<Handling>, Error> {
    let rows = db::fetch(
        pool,
        &format!(
            "SELECT {} FROM phone_numbers n
              WHERE n.e164 = $1 AND n.provider = $2 AND n.owner_id IS NOT NULL",
            Handling::COLUMNS
        ),
        &[(&e164, Type::TEXT), (&provider.as_str(), Type::TEXT)],
    )
    .await?;
    Ok(rows.first().map(|r| Handling::from_row(r, 0)))
}

/// How a call Parley placed is handled: its number's settings.
pub async fn handling_of_call(pool: &DbPool, call: Uuid) -> Result<Option<Handling>, Error> {
    let rows = db::fetch(
        pool,
        &format!(
            "SELECT {} FROM calls c JOIN phone_numbers n ON n.id = c.phone_number_id
              WHERE c.id = $1 AND n.owner_id IS NOT NULL",
            Handling::COLUMNS
        ),
        &[(&call, Type::UUID)],
    )
    .await?;
    Ok(rows.first().map(|r| Handling::from_row(r, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> Result<SettingsPatch, Error> {
        serde_json::from_str::<SettingsPatch>(json)
            .unwrap()
            .validate()
    }

    #[test]
    fn null_clears_and_absence_keeps() {
        let p = patch(r#"{"greeting": null}"#).unwrap();
        assert_eq!(p.greeting, Some(None));
        assert_eq!(p.forward_to, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let Err(Error::Invalid(problems)) =
            patch(r#"{"greeting": "", "forward_to": "5551234", "max_recording_seconds": 5}"#)
        else {
            panic!("expected invalid");
        };
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["greeting", "forward_to", "max_recording_seconds"]);
        let long = "a".repeat(MAX_GREETING_CHARS + 1);
        assert!(patch(&format!(r#"{{"greeting": "{long}"}}"#)).is_err());
        assert!(patch(r#"{"greeting": "hi\u0007"}"#).is_err());
        let ok = patch(r#"{"greeting": "  Hello, you reached Parley.  "}"#).unwrap();
        assert_eq!(ok.greeting, Some(Some("Hello, you reached Parley.".into())));
        // Only spaces is no greeting at all.
        assert_eq!(
            patch(r#"{"greeting": "   "}"#).unwrap().greeting,
            Some(None)
        );
        assert!(patch(r#"{"greeting": "tab\there"}"#).is_err());
    }
}
