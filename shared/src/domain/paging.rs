//! Keyset pagination cursors: opaque to clients, and useless if tampered with or replayed by another user.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::ids::UserId;
use crate::domain::{Error, FieldError};
use crate::platform::db::{self, DbPool, Row, ToSql, Type};

type HmacSha256 = Hmac<Sha256>;
const TAG_LEN: usize = 16;
const BODY_LEN: usize = 8 + 16;
/// The years a cursor's timestamp may name.
const CURSOR_YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The last row of a page: listing continues strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// Every list answers `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A row listed newest first, continued after its `(created_at, id)`.
pub trait Keyed {
    fn position(&self) -> Position;
}

/// Signs positions for one purpose; the owner is bound into every signature.
#[derive(Clone)]
pub struct Cursors {
    key: [u8; 32],
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors([redacted])")
    }
}

impl Cursors {
    /// Derives a key for `purpose` from the application secret, so it signs nothing else.
    pub fn new(secret: &SecretString, purpose: &str) -> Cursors {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes any key");
        mac.update(b"parley cursor v1:");
        mac.update(purpose.as_bytes());
        Cursors {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn tag(&self, owner: UserId, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(&owner.get().to_be_bytes());
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    pub fn encode(&self, owner: UserId, position: Position) -> String {
        let micros = (position.created_at.unix_timestamp_nanos() / 1_000) as i64;
        let mut bytes = Vec::with_capacity(BODY_LEN + TAG_LEN);
        bytes.extend_from_slice(&micros.to_be_bytes());
        bytes.extend_from_slice(position.id.as_bytes());
        let tag = self.tag(owner, &bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where a listing continues, as the `(created_at, id)` a keyset query binds: both `None` on
    /// the first page, and a 422 on `cursor` for anything this API did not issue to `owner`.
    pub fn after(
        &self,
        owner: UserId,
        cursor: Option<&str>,
    ) -> Result<(Option<OffsetDateTime>, Option<Uuid>), Error> {
        let Some(cursor) = cursor else {
            return Ok((None, None));
        };
        let position = self.decode(owner, cursor).ok_or_else(|| {
            Error::Invalid(vec![FieldError::new(
                "cursor",
                "is not a cursor this API issued to you",
            )])
        })?;
        Ok((Some(position.created_at), Some(position.id)))
    }

    /// One page of the rows `sql` selects newest first after a position: `params` are its leading
    /// parameters, then come the cursor's `created_at` and `id` and the `LIMIT` (one more than
    /// `limit`, to tell whether more remain), so `sql` ends with
    /// `AND ($n::timestamptz IS NULL OR (created_at, id) < ($n, $n+1)) ORDER BY created_at DESC, id DESC LIMIT $n+2`.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_page<T: Keyed>(
        &self,
        pool: &DbPool,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        owner: UserId,
        cursor: Option<&str>,
        limit: i64,
        from_row: fn(&Row) -> T,
    ) -> Result<Page<T>, Error> {
        let (after_at, after_id) = self.after(owner, cursor)?;
        let fetch = limit + 1;
        let mut all: Vec<(&(dyn ToSql + Sync), Type)> = params.to_vec();
        all.extend([
            (&after_at as &(dyn ToSql + Sync), Type::TIMESTAMPTZ),
            (&after_id, Type::UUID),
            (&fetch, Type::INT8),
        ]);
        let rows = db::fetch(pool, sql, &all).await?;
        Ok(self.page_of(owner, rows.iter().map(from_row).collect(), limit))
    }

    /// One page of a listing fetched with `LIMIT limit + 1`, keyed by each row's position.
    pub fn page_of<T: Keyed>(&self, owner: UserId, rows: Vec<T>, limit: i64) -> Page<T> {
        let (items, next_cursor) = self.page(owner, rows, limit, Keyed::position);
        Page { items, next_cursor }
    }

    /// Trims rows fetched with `LIMIT limit + 1` to `limit`, with the cursor after the last one
    /// when the extra row shows that more remain.
    pub fn page<T>(
        &self,
        owner: UserId,
        mut items: Vec<T>,
        limit: i64,
        position: impl Fn(&T) -> Position,
    ) -> (Vec<T>, Option<String>) {
        if items.len() as i64 <= limit {
            return (items, None);
        }
        items.truncate(limit as usize);
        let next = items.last().map(|last| self.encode(owner, position(last)));
        (items, next)
    }

    /// `None` for anything not issued by [`Cursors::encode`] to this owner.
    pub fn decode(&self, owner: UserId, cursor: &str) -> Option<Position> {
        if cursor.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if bytes.len() != BODY_LEN + TAG_LEN {
            return None;
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(&owner.get().to_be_bytes());
        mac.update(body);
        mac.verify_truncated_left(tag).ok()?;
        let micros = i64::from_be_bytes(body[..8].try_into().ok()?);
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1_000)
            .ok()
            // Every row's time lies well inside this; outside it Postgres would refuse the bound
            // (timestamptz ends at 4713 BC), which a signed but forged cursor must not turn into a 500.
            .filter(|t| (CURSOR_YEARS).contains(&t.year()))?;
        let id = Uuid::from_slice(&body[8..]).ok()?;
        Some(Position { created_at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors() -> Cursors {
        Cursors::new(
            &SecretString::from("a-secret-of-at-least-thirty-two-chars"),
            "recordings",
        )
    }

    #[test]
    fn a_cursor_round_trips_for_its_owner_only() {
        let position = Position {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_795_316_400_123_456_000)
                .unwrap(),
            id: Uuid::now_v7(),
        };
        let c = cursors().encode(UserId::new(7), position);
        assert_eq!(cursors().decode(UserId::new(7), &c), Some(position));
        assert_eq!(cursors().decode(UserId::new(8), &c), None);
        let other = Cursors::new(
            &SecretString::from("a-secret-of-at-least-thirty-two-chars"),
            "transcriptions",
        );
        assert_eq!(other.decode(UserId::new(7), &c), None);
    }

    #[test]
    fn pages_trim_the_probe_row_and_continue_after_the_last_item() {
        let c = cursors();
        let at = |n: i64| Position {
            created_at: OffsetDateTime::from_unix_timestamp(1_795_316_400 - n).unwrap(),
            id: Uuid::from_u128(n as u128),
        };
        let (items, next) = c.page(UserId::new(7), vec![1, 2, 3], 2, |n| at(*n));
        assert_eq!(items, vec![1, 2]);
        let next = next.expect("a third row means more remain");
        assert_eq!(c.decode(UserId::new(7), &next), Some(at(2)));
        assert_eq!(
            c.after(UserId::new(7), Some(&next)).unwrap(),
            (Some(at(2).created_at), Some(at(2).id))
        );
        let (items, next) = c.page(UserId::new(7), vec![1, 2], 2, |n| at(*n));
        assert_eq!((items, next), (vec![1, 2], None));
        assert_eq!(c.after(UserId::new(7), None).unwrap(), (None, None));
        match c.after(UserId::new(8), Some(&c.encode(UserId::new(7), at(1)))) {
            Err(Error::Invalid(errors)) => assert_eq!(errors[0].field, "cursor"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_signed_cursor_with_an_impossible_time_is_refused() {
        let c = cursors();
        for year in [-5000, 1, 1969] {
            let created_at = time::Date::from_calendar_date(year, time::Month::January, 1)
                .unwrap()
                .midnight()
                .assume_utc();
            let cursor = c.encode(
                UserId::new(1),
                Position {
                    created_at,
                    id: Uuid::now_v7(),
                },
            );
            assert_eq!(c.decode(UserId::new(1), &cursor), None, "{year}");
        }
    }

    #[test]
    fn any_tampering_is_rejected() {
        let c = cursors().encode(
            UserId::new(1),
            Position {
                created_at: OffsetDateTime::now_utc(),
                id: Uuid::now_v7(),
            },
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x01;
            assert_eq!(
                cursors().decode(UserId::new(1), &URL_SAFE_NO_PAD.encode(&bytes)),
                None,
                "byte {i}"
            );
            bytes[i] ^= 0x01;
        }
        for junk in ["", "abc", "!!!!", &"A".repeat(500)] {
            assert_eq!(cursors().decode(UserId::new(1), junk), None);
        }
    }
}
