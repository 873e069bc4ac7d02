//! Reading one row a user owns. Someone else's id answers exactly like a missing one (not found),
//! so ids reveal nothing across users.

use uuid::Uuid;

use crate::domain::{Error, UserId};
use crate::platform::db::{self, DbPool, Row, Type};

/// The row `sql` selects with `$1` = `id` and `$2` = `owner`, or [`Error::NotFound`].
pub async fn owned_row(pool: &DbPool, sql: &str, id: Uuid, owner: UserId) -> Result<Row, Error> {
    let rows = db::fetch(pool, sql, &[(&id, Type::UUID), (&owner, Type::INT4)]).await?;
    rows.into_iter().next().ok_or(Error::NotFound)
}
