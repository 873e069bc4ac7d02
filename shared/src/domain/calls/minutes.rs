//! Call minutes in the usage ledger. The rule (docs/billing.md):
//!
//! - A call may start only while at least one minute of `call_minutes` is left. Starting holds what
//!   is left, up to [`HOLD_MINUTES`], so calls in parallel cannot overspend between them.
//! - Over the allowance, an inbound call is rejected (Telnyx `reject`, SignalWire `<Reject/>`) and
//!   `POST /api/calls` answers 402; nothing is dialled.
//! - When the call ends its minutes are committed, rounded up per call as carriers bill them; a
//!   call that never connected commits nothing. A call longer than its hold closes the meter until
//!   the period resets.

use uuid::Uuid;

use super::numbers::Handling;
use super::{Direction, Provider};
use crate::domain::billing::{Hold, Ledger, Meter, Units, Vendor};
use crate::domain::{Error, UserId};
use crate::platform::db::{self, DbPool, Type};

/// The most minutes one call holds when it starts.
pub const HOLD_MINUTES: i64 = 60;

/// A call's ledger subject: SignalWire's inbound calls are held before Parley has a row for them
/// (the voice webhook answers at once), so they are known by their `CallSid`.
pub fn subject(
    provider: Provider,
    direction: Direction,
    id: Uuid,
    call_sid: Option<&str>,
) -> String {
    match (provider, direction, call_sid) {
        (Provider::Signalwire, Direction::Inbound, Some(sid)) => format!("call:signalwire:{sid}"),
        _ => format!("call:{id}"),
    }
}

fn vendor(provider: Provider) -> Vendor {
    match provider {
        Provider::Telnyx => Vendor::Telnyx,
        Provider::Signalwire => Vendor::SignalWire,
    }
}

/// Holds the call's minutes before it is answered or dialled.
pub async fn hold(
    ledger: &Ledger,
    owner: UserId,
    provider: Provider,
    subject: &str,
) -> Result<Hold, Error> {
    ledger
        .reserve(
            owner,
            Meter::CallMinutes,
            Units::UpTo {
                at_least: 1,
                at_most: HOLD_MINUTES,
            },
            subject,
            Some(vendor(provider)),
        )
        .await
}

/// SignalWire's voice webhook for an inbound call: the number's handling when the owner has minutes
/// left (now held), `None` (answered with `<Reject/>`) when they have none.
pub async fn admit_inbound_signalwire(
    ledger: &Ledger,
    handling: Option<Handling>,
    call_sid: &str,
) -> Result<Option<Handling>, Error> {
    let Some(handling) = handling else {
        return Ok(None);
    };
    let subject = subject(
        Provider::Signalwire,
        Direction::Inbound,
        Uuid::nil(),
        Some(call_sid),
    );
    match hold(ledger, handling.owner, Provider::Signalwire, &subject).await {
        Ok(_) => Ok(Some(handling)),
        Err(e @ (Error::QuotaExceeded(_) | Error::BudgetExhausted(_))) => {
            tracing::info!(call_sid, user_id = %handling.owner, reason = %e, "inbound call rejected: no call minutes left");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Commits an ended call's minutes (rounded up; nothing if it never connected).
pub async fn settle(ledger: &Ledger, db: &DbPool, call: Uuid) -> Result<(), Error> {
    let rows = db::fetch(
        db,
        "SELECT provider, direction, call_sid, coalesce(duration_seconds, 0) FROM calls WHERE id = $1",
        &[(&call, Type::UUID)],
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(());
    };
    let provider = Provider::parse(row.get(0)).unwrap_or(Provider::Telnyx);
    let direction = if row.get::<_, &str>(1) == "inbound" {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let seconds = i64::from(row.get::<_, i32>(3));
    let minutes = (seconds + 59) / 60;
    let subject = subject(provider, direction, call, row.get(2));
    ledger.commit(Meter::CallMinutes, &subject, minutes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_call_parley_knows_it_by() {
        let id = Uuid::nil();
        assert_eq!(
            subject(Provider::Signalwire, Direction::Inbound, id, Some("CA1")),
            "call:signalwire:CA1"
        );
        assert_eq!(
            subject(Provider::Signalwire, Direction::Outbound, id, Some("CA1")),
            format!("call:{id}")
        );
        assert_eq!(
            subject(Provider::Telnyx, Direction::Inbound, id, None),
            format!("call:{id}")
        );
    }
}
