//! Operator commands for calls: assign a phone number, replay a stored webhook event, and play a
//! whole call against the local stack's telephony sandbox.

use std::time::Duration;

use serde_json::{Value, json};
use shared::api::settings::Settings;
use shared::domain::calls::Provider;
use shared::domain::calls::numbers::{Assignment, PhoneNumbers};
use shared::domain::paging::Cursors;
use shared::platform::db::{self, DbPool};
use xtask::Result;

pub const PHONE_NUMBER_USAGE: &str = "usage: cargo xtask phone-number assign --provider telnyx|signalwire \
[--connection-id ID] [--number-sid SID] +15551234567 user@example.com";

pub const CALL_USAGE: &str = "usage: cargo xtask call --provider telnyx|signalwire --to +15551234567 \
[--from +15557654321] [--seconds N]";

/// A pool on `url` (the local dev database or `$DATABASE_URL`, TLS as its sslmode says).
pub(crate) fn pool(url: &str) -> Result<DbPool> {
    let url = url.to_owned();
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "PARLEY_STAGE" => Some("local".to_owned()),
        _ => None,
    })
    .map_err(|e| e.to_string())?;
    Ok(db::pool(&settings.database))
}

/// `--name value` pairs, in order.
type Flags = Vec<(String, String)>;

/// Flags (`--name value`) and positional arguments, in order.
pub(crate) fn parse(args: &[String], flags: &[&str]) -> Result<(Flags, Vec<String>)> {
    let mut named = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(name) = arg.strip_prefix("--") {
            if !flags.contains(&name) {
                return Err(format!("unknown option --{name}"));
            }
            let value = it.next().ok_or(format!("--{name} needs a value"))?;
            named.push((name.to_owned(), value.clone()));
        } else {
            positional.push(arg.clone());
        }
    }
    Ok((named, positional))
}

pub(crate) fn flag<'a>(named: &'a [(String, String)], name: &str) -> Option<&'a str> {
    named
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `cargo xtask phone-number assign ...`, against `database_url`.
pub async fn phone_number(args: &[String], database_url: &str) -> Result {
    if args.first().map(String::as_str) != Some("assign") {
        return Err(PHONE_NUMBER_USAGE.into());
    }
    let (named, positional) = parse(&args[1..], &["provider", "connection-id", "number-sid"])?;
    let [e164, email] = positional.as_slice() else {
        return Err(PHONE_NUMBER_USAGE.into());
    };
    let provider = flag(&named, "provider")
        .and_then(Provider::parse)
        .ok_or(format!(
            "--provider must be telnyx or signalwire\n{PHONE_NUMBER_USAGE}"
        ))?;
    let assignment = Assignment {
        e164: e164.clone(),
        provider,
        telnyx_connection_id: flag(&named, "connection-id").map(str::to_owned),
        signalwire_number_sid: flag(&named, "number-sid").map(str::to_owned),
        email: email.clone(),
    };
    // Assigning lists nothing; the cursor key is never used.
    let cursors = Cursors::new(&"unused".to_owned().into(), "phone-numbers");
    let numbers = PhoneNumbers::new(pool(database_url)?, cursors);
    let number = numbers
        .assign(&assignment)
        .await
        .map_err(|e| format!("{e}: {e:?}"))?;
    println!(
        "{} ({}) is assigned to {email}: record={}, transcribe={}, id {}",
        number.e164,
        number.provider.as_str(),
        number.record,
        number.transcribe,
        number.id
    );
    Ok(())
}

/// `cargo xtask webhook replay <event-id>`: Parley's id (a UUID) or the vendor's event id.
pub async fn replay(args: &[String], database_url: &str) -> Result {
    let [event] = args else {
        return Err("usage: cargo xtask webhook replay <event-id>".into());
    };
    let pool = pool(database_url)?;
    let client = db::client(&pool).await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT id, vendor, event_type, status FROM webhook_events
              WHERE id::text = $1 OR event_id = $1 ORDER BY received_at",
            &[event],
        )
        .await
        .map_err(|e| e.to_string())?;
    let row = match rows.as_slice() {
        [] => return Err(format!("no stored webhook event {event:?}")),
        [row] => row,
        _ => {
            return Err(format!(
                "{event:?} names several events (one per vendor): pass Parley's id"
            ));
        }
    };
    let id: uuid::Uuid = row.get(0);
    shared::domain::calls::webhooks::mark_for_replay(&pool, id)
        .await
        .map_err(|e| e.to_string())?;
    let (vendor, kind, was): (String, String, String) = (row.get(1), row.get(2), row.get(3));
    let worker = if vendor == "stripe" {
        "billing worker"
    } else {
        "call worker"
    };
    println!(
        "{vendor} {kind} event {id} (was {was}) is back in the outbox; the webhook-events-sweeper \
         sends it to the {worker} within a minute"
    );
    Ok(())
}

/// `cargo xtask call ...`: asks the running `cargo xtask dev`'s sandbox to play an inbound call.
pub async fn call(args: &[String]) -> Result {
    let (named, positional) = parse(args, &["provider", "to", "from", "seconds"])?;
    if !positional.is_empty() {
        return Err(CALL_USAGE.into());
    }
    let provider = flag(&named, "provider").ok_or(CALL_USAGE)?;
    let to = flag(&named, "to").ok_or(CALL_USAGE)?;
    let from = flag(&named, "from").unwrap_or("+15557654321");
    let seconds: f64 = flag(&named, "seconds")
        .unwrap_or("5")
        .parse()
        .map_err(|_| "--seconds must be a number")?;
    let port = std::env::var("PARLEY_SANDBOX_PORT").unwrap_or_else(|_| "9010".to_owned());
    let http = shared::platform::http_client::http_client(Duration::from_secs(
        seconds.ceil() as u64 + 120,
    ));
    let response = http
        .post(format!("http://127.0.0.1:{port}/_sandbox/calls"))
        .json(&json!({ "provider": provider, "from": from, "to": to, "seconds": seconds }))
        .send()
        .await
        .map_err(|e| format!("is `cargo xtask dev` running (sandbox on port {port})? {e}"))?;
    let ok = response.status().is_success();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !ok {
        return Err(format!("the sandbox refused the call: {}", body["error"]));
    }
    println!("{provider} call from {from} to {to}:");
    for step in body["steps"].as_array().into_iter().flatten() {
        println!("  {}", step.as_str().unwrap_or_default());
    }
    println!(
        "\nThe call is in GET /api/calls of the number's owner{}.",
        if body["recorded"] == json!(true) {
            "; its recording is being ingested (and transcribed if the number says so)"
        } else {
            ""
        }
    );
    Ok(())
}
