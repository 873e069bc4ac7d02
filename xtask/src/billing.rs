//! Operator commands for money: change a plan without a deploy, and show a user's usage.

use shared::domain::UserId;
use shared::domain::billing::{self, BillingSettings, Ledger, Meter, plans};
use shared::platform::db::{self, Type};
use xtask::Result;

use crate::calls::{flag, parse, pool};

pub const PLAN_USAGE: &str = "usage: cargo xtask plan set NAME [--price price_…] [--transcription-seconds N] \
[--speech-characters N] [--translation-characters N] [--realtime-seconds N] [--call-minutes N] \
[--storage-bytes N]";

pub const USAGE_USAGE: &str = "usage: cargo xtask usage EMAIL";

/// The `--flag` each meter is set with: its name with dashes.
fn meter_flag(meter: Meter) -> String {
    meter.as_str().replace('_', "-")
}

/// `cargo xtask plan set …`: flags not given keep their value; a new plan starts from free's.
pub async fn plan(args: &[String], database_url: &str) -> Result {
    if args.first().map(String::as_str) != Some("set") {
        return Err(PLAN_USAGE.into());
    }
    let meter_flags: Vec<String> = Meter::ALL.into_iter().map(meter_flag).collect();
    let mut allowed: Vec<&str> = meter_flags.iter().map(String::as_str).collect();
    allowed.push("price");
    let (named, positional) = parse(&args[1..], &allowed)?;
    let [name] = positional.as_slice() else {
        return Err(PLAN_USAGE.into());
    };
    let mut change = plans::PlanChange {
        stripe_price_id: flag(&named, "price").map(str::to_owned),
        limits: Vec::new(),
    };
    for meter in Meter::ALL {
        if let Some(raw) = flag(&named, &meter_flag(meter)) {
            let value: i64 = raw
                .parse()
                .map_err(|_| format!("--{} must be a whole number", meter_flag(meter)))?;
            change.limits.push((meter, value));
        }
    }
    let pool = pool(database_url)?;
    let plan = plans::set(&pool, name, &change)
        .await
        .map_err(|e| match e {
            shared::domain::Error::Invalid(fields) => fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// `cargo xtask usage EMAIL`: the user's plan, period and every meter, as `GET /api/billing` shows it.
pub async fn usage(args: &[String], database_url: &str) -> Result {
    let [email] = args else {
        return Err(USAGE_USAGE.into());
    };
    let pool = pool(database_url)?;
    let rows = db::fetch(
        &pool,
        "SELECT id FROM users WHERE lower(email) = lower($1)",
        &[(&email.as_str(), Type::TEXT)],
    )
    .await
    .map_err(|e| e.to_string())?;
    let user: UserId = rows
        .first()
        .map(|r| r.get(0))
        .ok_or(format!("no user has the email {email}"))?;
    let ledger = Ledger::new(pool, BillingSettings::default());
    let entitlement = ledger.entitlement(user).await.map_err(|e| e.to_string())?;
    let summary = billing::summary(&ledger, user)
        .await
        .map_err(|e| e.to_string())?;
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    println!(
        "{email} (user {user}): plan {}, period {} .. {}{}",
        summary.plan,
        rfc3339(entitlement.period.start),
        rfc3339(entitlement.period.end),
        summary
            .status
            .map(|s| format!(
                ", subscription {}",
                serde_json::json!(s).as_str().unwrap_or("")
            ))
            .unwrap_or_default()
    );
    println!(
        "{:<24}{:>14}{:>14}{:>14}",
        "meter", "used", "reserved", "limit"
    );
    for (meter, usage) in &summary.usage {
        println!(
            "{meter:<24}{:>14}{:>14}{:>14}{}",
            usage.used,
            usage.reserved,
            usage.limit,
            if usage.overdrawn { "  overdrawn" } else { "" }
        );
    }
    Ok(())
}

/// The plan `cargo xtask dev` sells through the Stripe sandbox when none named `pro` exists: ten
/// times the free plan's allowances (storage 50 GiB), at a made-up price the sandbox accepts.
pub async fn seed_sandbox_plan(database_url: &str) -> Result {
    let pool = pool(database_url)?;
    if plans::get(&pool, "pro")
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let free = plans::get(&pool, plans::FREE)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the free plan is missing; run the migrations")?;
    let limits = Meter::ALL
        .into_iter()
        .map(|m| match m {
            Meter::StorageBytes => (m, 50 * 1024 * 1024 * 1024),
            _ => (m, free.limits.get(m) * 10),
        })
        .collect();
    let change = plans::PlanChange {
        stripe_price_id: Some("price_sandboxPro".to_owned()),
        limits,
    };
    plans::set(&pool, "pro", &change)
        .await
        .map_err(|e| e.to_string())?;
    println!("billing: created the `pro` plan (price_sandboxPro) for the Stripe sandbox");
    Ok(())
}
