//! Identifiers that parse rather than validate: once a value has one of these types it is known good.

use std::fmt;

use serde::{Serialize, Serializer};
use tokio_postgres::types::{FromSql, ToSql, Type};

/// An Auth.js user id: an integer in the database, a string on the wire (Auth.js passes ids as
/// strings), so one type carries it from the session to every owned row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(i32);

impl UserId {
    pub const fn new(id: i32) -> UserId {
        UserId(id)
    }

    pub const fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'a> FromSql<'a> for UserId {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<UserId, Box<dyn std::error::Error + Sync + Send>> {
        i32::from_sql(ty, raw).map(UserId)
    }

    tokio_postgres::types::accepts!(INT4);
}

impl ToSql for UserId {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    tokio_postgres::types::accepts!(INT4);
    tokio_postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_id_is_a_string_on_the_wire() {
        assert_eq!(serde_json::to_value(UserId::new(42)).unwrap(), "42");
        assert_eq!(UserId::new(42).to_string(), "42");
    }
}
