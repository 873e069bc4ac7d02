//! What a user may use now: the plan their subscription's state entitles them to, and the period
//! their meters count in. The policy, for every Stripe status:
//!
//! | status | plan |
//! |---|---|
//! | `active`, `trialing` | the subscription's plan |
//! | `past_due` | the subscription's plan for `BILLING_PAST_DUE_GRACE_DAYS` after it became past due, then free |
//! | `incomplete`, `incomplete_expired`, `paused`, `canceled`, `unpaid` | free |
//!
//! A paid plan's period is the subscription's current period as its items state it; the free plan's
//! is the calendar month in UTC.

use std::time::Duration;

use serde::Serialize;
use time::{Date, Month, OffsetDateTime, Time};

use super::plans::{self, COLUMNS, Plan};
use crate::domain::{Error, UserId};
use crate::platform::db::{self, Client, DbError, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

impl SubscriptionStatus {
    pub fn parse(s: &str) -> Option<SubscriptionStatus> {
        Some(match s {
            "incomplete" => SubscriptionStatus::Incomplete,
            "incomplete_expired" => SubscriptionStatus::IncompleteExpired,
            "trialing" => SubscriptionStatus::Trialing,
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "canceled" => SubscriptionStatus::Canceled,
            "unpaid" => SubscriptionStatus::Unpaid,
            "paused" => SubscriptionStatus::Paused,
            _ => return None,
        })
    }

    /// The policy in the module's table.
    pub fn entitles(
        self,
        past_due_since: Option<OffsetDateTime>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> bool {
        match self {
            SubscriptionStatus::Active | SubscriptionStatus::Trialing => true,
            SubscriptionStatus::PastDue => past_due_since.is_none_or(|since| now < since + grace),
            SubscriptionStatus::Incomplete
            | SubscriptionStatus::IncompleteExpired
            | SubscriptionStatus::Paused
            | SubscriptionStatus::Canceled
            | SubscriptionStatus::Unpaid => false,
        }
    }
}

/// A billing period: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Period {
    /// The calendar month (UTC) holding `now`.
    pub fn calendar_month(now: OffsetDateTime) -> Period {
        let now = now.to_offset(time::UtcOffset::UTC);
        let first = |year: i32, month: Month| {
            Date::from_calendar_date(year, month, 1)
                .expect("the first of a month exists")
                .with_time(Time::MIDNIGHT)
                .assume_utc()
        };
        let start = first(now.year(), now.month());
        let (year, month) = match now.month() {
            Month::December => (now.year() + 1, Month::January),
            m => (now.year(), m.next()),
        };
        Period {
            start,
            end: first(year, month),
        }
    }

    /// The subscription's period, stepped forward by its own length while `now` is past it (a renewal
    /// Stripe has not told us about yet must not freeze the meters at "used up").
    fn following(start: OffsetDateTime, end: OffsetDateTime, now: OffsetDateTime) -> Period {
        let length = end - start;
        if length <= time::Duration::ZERO {
            return Period::calendar_month(now);
        }
        let mut period = Period { start, end };
        while now >= period.end {
            period = Period {
                start: period.end,
                end: period.end + length,
            };
        }
        period
    }
}

/// A subscription as stored (Stripe's last word on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub status: SubscriptionStatus,
    pub current_period_start: Option<OffsetDateTime>,
    pub current_period_end: Option<OffsetDateTime>,
    pub cancel_at_period_end: bool,
    pub past_due_since: Option<OffsetDateTime>,
    /// `None` when its price is no plan's (a plan renamed or removed): it entitles to nothing.
    pub plan: Option<Plan>,
}

/// The plan in force, its period, and the subscription behind it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub plan: Plan,
    pub period: Period,
    /// The subscription that entitles, or else the most recent one (to show e.g. `canceled`).
    pub subscription: Option<StoredSubscription>,
}

impl Entitlement {
    /// Applies the policy to the free plan and the user's stored subscriptions (newest first).
    pub fn decide(
        free: Plan,
        subscriptions: Vec<StoredSubscription>,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Entitlement {
        let entitling = subscriptions
            .iter()
            .position(|s| s.plan.is_some() && s.status.entitles(s.past_due_since, now, grace));
        match entitling {
            Some(i) => {
                let sub = subscriptions[i].clone();
                let period = match (sub.current_period_start, sub.current_period_end) {
                    (Some(start), Some(end)) => Period::following(start, end, now),
                    _ => Period::calendar_month(now),
                };
                Entitlement {
                    plan: sub.plan.clone().expect("checked above"),
                    period,
                    subscription: Some(sub),
                }
            }
            None => Entitlement {
                plan: free,
                period: Period::calendar_month(now),
                subscription: subscriptions.into_iter().next(),
            },
        }
    }
}

/// The free plan (first row) and every subscription of the user, newest first, in one statement.
/// Built once per process: it is read before every reservation.
static ENTITLEMENT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(entitlement_sql);

fn entitlement_sql() -> String {
    let plan_columns = |alias: &str| {
        COLUMNS
            .split(", ")
            .map(|c| format!("{alias}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT 0 AS rank, NULL::text, NULL::timestamptz, NULL::timestamptz, false, NULL::timestamptz,
                NULL::timestamptz, {free}
           FROM plans f WHERE f.name = 'free'
         UNION ALL
         SELECT 1, s.status, s.current_period_start, s.current_period_end, s.cancel_at_period_end,
                s.past_due_since, s.fetched_at, {plan}
           FROM subscriptions s LEFT JOIN plans p ON p.stripe_price_id = s.stripe_price_id
          WHERE s.user_id = $1
         ORDER BY 1, 7 DESC",
        free = plan_columns("f"),
        plan = plan_columns("p"),
    )
}

/// Reads `user`'s entitlement at `now`.
pub async fn read(
    client: &Client,
    user: UserId,
    now: OffsetDateTime,
    grace: Duration,
) -> Result<Entitlement, Error> {
    let rows = db::query(client, &ENTITLEMENT_SQL, &[(&user, Type::INT4)])
        .await
        .map_err(DbError::from)?;
    let mut free = None;
    let mut subscriptions = Vec::new();
    for row in &rows {
        if row.get::<_, i32>(0) == 0 {
            free = Some(Plan::from_row_at(row, 7));
            continue;
        }
        let status: String = row.get(1);
        let Some(status) = SubscriptionStatus::parse(&status) else {
            continue;
        };
        let name: Option<String> = row.get(7);
        subscriptions.push(StoredSubscription {
            status,
            current_period_start: row.get(2),
            current_period_end: row.get(3),
            cancel_at_period_end: row.get(4),
            past_due_since: row.get(5),
            plan: name.map(|_| Plan::from_row_at(row, 7)),
        });
    }
    let free =
        free.ok_or_else(|| Error::Internal(format!("the {} plan is missing", plans::FREE)))?;
    Ok(Entitlement::decide(free, subscriptions, now, grace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::plans::Limits;
    use time::macros::datetime;

    fn plan(name: &str) -> Plan {
        Plan {
            name: name.into(),
            stripe_price_id: (name != "free").then(|| format!("price_{name}")),
            limits: Limits {
                transcription_seconds: 1,
                speech_characters: 1,
                translation_characters: 1,
                realtime_seconds: 1,
                call_minutes: 1,
                storage_bytes: 1,
            },
        }
    }

    fn sub(
        status: SubscriptionStatus,
        past_due_since: Option<OffsetDateTime>,
    ) -> StoredSubscription {
        StoredSubscription {
            status,
            current_period_start: Some(datetime!(2026-11-20 10:00 UTC)),
            current_period_end: Some(datetime!(2026-12-20 10:00 UTC)),
            cancel_at_period_end: false,
            past_due_since,
            plan: Some(plan("pro")),
        }
    }

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn every_stripe_status_maps_by_the_documented_policy() {
        let now = datetime!(2026-12-05 12:00 UTC);
        use SubscriptionStatus::*;
        for (status, plan_name) in [
            (Active, "pro"),
            (Trialing, "pro"),
            (Incomplete, "free"),
            (IncompleteExpired, "free"),
            (Paused, "free"),
            (Canceled, "free"),
            (Unpaid, "free"),
        ] {
            let e = Entitlement::decide(plan("free"), vec![sub(status, None)], now, WEEK);
            assert_eq!(e.plan.name, plan_name, "{status:?}");
            assert_eq!(e.subscription.unwrap().status, status);
        }
        let recent = Entitlement::decide(
            plan("free"),
            vec![sub(PastDue, Some(datetime!(2026-12-01 00:00 UTC)))],
            now,
            WEEK,
        );
        assert_eq!(recent.plan.name, "pro");
        assert_eq!(recent.period.start, datetime!(2026-11-20 10:00 UTC));
        let lapsed = Entitlement::decide(
            plan("free"),
            vec![sub(PastDue, Some(datetime!(2026-11-25 00:00 UTC)))],
            now,
            WEEK,
        );
        assert_eq!(lapsed.plan.name, "free");
        assert_eq!(lapsed.period, Period::calendar_month(now));
    }

    #[test]
    fn a_subscription_whose_price_is_no_plan_entitles_to_nothing() {
        let mut orphan = sub(SubscriptionStatus::Active, None);
        orphan.plan = None;
        let e = Entitlement::decide(
            plan("free"),
            vec![orphan],
            datetime!(2026-12-05 0:00 UTC),
            WEEK,
        );
        assert_eq!(e.plan.name, "free");
    }

    #[test]
    fn periods_are_calendar_months_or_the_subscriptions_stepped_forward() {
        let p = Period::calendar_month(datetime!(2026-12-31 23:59:59 UTC));
        assert_eq!(p.start, datetime!(2026-12-01 0:00 UTC));
        assert_eq!(p.end, datetime!(2027-01-01 0:00 UTC));
        let p = Period::following(
            datetime!(2026-10-20 10:00 UTC),
            datetime!(2026-11-20 10:00 UTC),
            datetime!(2026-12-05 0:00 UTC),
        );
        assert_eq!(p.start, datetime!(2026-11-20 10:00 UTC));
        assert_eq!(
            p.end - p.start,
            datetime!(2026-11-20 10:00 UTC) - datetime!(2026-10-20 10:00 UTC)
        );
    }
}
