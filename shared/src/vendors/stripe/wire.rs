//! Stripe's wire shapes, as far as Parley reads them (vendors.md §5, §12), each validated where it
//! is read: ids have their documented prefixes, statuses are one of the documented values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::http_client::VendorMessage;

/// `{"error":{"type","code","message",…}}`: the code (or the type) and the message.
pub fn parse_error(body: &[u8]) -> Option<VendorMessage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .map(str::to_owned);
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| code.clone())?;
    Some(VendorMessage { code, message })
}

/// True for `<prefix><1–200 letters, digits or underscores>`, the shape of Stripe's object ids
/// (and the one the database's checks hold ids to).
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 200
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Ids the database stores without underscores after the prefix (`cus_…`, `sub_…`).
pub fn valid_plain_id(id: &str, prefix: &str) -> bool {
    valid_id(id, prefix)
        && id[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// A field that is an id, or the object itself when it was expanded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    pub fn id(&self) -> &str {
        match self {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }
    }
}

/// A v1 "snapshot" event as webhooks deliver it (stripe-node `src/resources/Events.ts`).
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    pub object: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// Why a verified body is not an event Parley takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A thin (v2) event notification: the SDKs' `constructEvent` refuses these too.
    #[error(
        "a thin event notification (object \"v2.core.event\"); this endpoint takes snapshot events"
    )]
    Thin,
    #[error("not a Stripe event: {0}")]
    Unreadable(String),
}

/// Reads a verified webhook body as a snapshot event.
pub fn parse_event(body: &[u8]) -> Result<Event, EventError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EventError::Unreadable(e.to_string()))?;
    if value.get("object").and_then(Value::as_str) == Some("v2.core.event") {
        return Err(EventError::Thin);
    }
    let event: Event = serde_path_to_error::deserialize(value)
        .map_err(|e| EventError::Unreadable(format!("at {}: {}", e.path(), e.inner())))?;
    if event.object != "event" {
        return Err(EventError::Unreadable(format!(
            "object is {:?}, not \"event\"",
            event.object
        )));
    }
    if !valid_id(&event.id, "evt_") {
        return Err(EventError::Unreadable(
            "id is not an event id (evt_…)".into(),
        ));
    }
    if event.event_type.is_empty()
        || event.event_type.len() > 100
        || !event
            .event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(EventError::Unreadable("type is not an event type".into()));
    }
    Ok(event)
}

/// `POST /v1/customers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Customer {
    pub id: String,
}

/// `POST /v1/checkout/sessions`: `url` is null once the session is no longer open.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// `checkout.session.completed`'s object, as far as Parley reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletedSession {
    pub id: String,
    pub mode: String,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub customer: Option<Expandable>,
    #[serde(default)]
    pub subscription: Option<Expandable>,
}

/// `POST /v1/billing_portal/sessions`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PortalSession {
    pub id: String,
    pub url: String,
}

/// Every status a subscription can have.
pub const SUBSCRIPTION_STATUSES: &[&str] = &[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
];

/// `GET /v1/subscriptions/{id}` (and what `DELETE` answers).
#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: Expandable,
    pub status: String,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub items: List<SubscriptionItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// Period dates live on items since `2025-03-31.basil`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub price: Price,
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: String,
}

impl Subscription {
    /// Checks what Parley stores: the ids' shapes, a known status, at least one priced item.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_plain_id(&self.id, "sub_") {
            return Err("id is not a subscription id (sub_…)".into());
        }
        if !valid_plain_id(self.customer.id(), "cus_") {
            return Err("customer is not a customer id (cus_…)".into());
        }
        if !SUBSCRIPTION_STATUSES.contains(&self.status.as_str()) {
            return Err(format!(
                "status {:?} is not one Stripe documents",
                self.status
            ));
        }
        let Some(item) = self.items.data.first() else {
            return Err("items.data is empty".into());
        };
        if !valid_id(&item.price.id, "price_") {
            return Err("items.data[0].price.id is not a price id (price_…)".into());
        }
        Ok(())
    }

    /// The item Parley sells (its checkouts have exactly one).
    pub fn item(&self) -> &SubscriptionItem {
        &self.items.data[0]
    }
}

/// The subscription an invoice belongs to: `parent.subscription_details.subscription` in current
/// API versions, top-level `subscription` in older ones; `None` for a one-off invoice.
pub fn invoice_subscription(invoice: &Value) -> Option<String> {
    let id = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    invoice
        .pointer("/parent/subscription_details/subscription")
        .and_then(id)
        .or_else(|| invoice.get("subscription").and_then(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_read_from_stripes_envelope() {
        let m = parse_error(br#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such subscription: 'sub_x'","param":"id"}}"#).unwrap();
        assert_eq!(m.code.as_deref(), Some("resource_missing"));
        assert_eq!(m.message, "No such subscription: 'sub_x'");
        let m = parse_error(br#"{"error":{"type":"api_error","message":"Something went wrong"}}"#)
            .unwrap();
        assert_eq!(m.code.as_deref(), Some("api_error"));
        assert!(parse_error(b"<html>").is_none());
        assert!(parse_error(br#"{"ok":true}"#).is_none());
    }

    #[test]
    fn ids_have_their_prefixes() {
        assert!(valid_id("price_1PwpIj_Lk", "price_"));
        assert!(valid_plain_id("cus_NffrFeUfNV2Hib", "cus_"));
        assert!(!valid_plain_id("cus_a_b", "cus_"));
        assert!(!valid_id("cus_", "cus_") && !valid_id("sub_../x", "sub_"));
        assert!(!valid_id("xcus_1", "cus_"));
    }

    #[test]
    fn events_are_read_and_thin_events_refused() {
        let body = json!({"id":"evt_1","object":"event","type":"invoice.paid","created":1,
            "api_version":"2026-07-29.dahlia","livemode":false,"pending_webhooks":1,
            "request":{"id":null,"idempotency_key":null},"data":{"object":{"id":"in_1"}}});
        let event = parse_event(body.to_string().as_bytes()).unwrap();
        assert_eq!(event.event_type, "invoice.paid");
        assert_eq!(event.data.object["id"], "in_1");
        let thin = json!({"id":"evt_test_65R","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","created":"2024-09-17T06:20:52.246Z"});
        assert_eq!(
            parse_event(thin.to_string().as_bytes()).unwrap_err(),
            EventError::Thin
        );
        assert!(parse_event(b"[]").is_err());
        let wrong_id =
            json!({"id":"ch_1","object":"event","type":"x","created":1,"data":{"object":{}}});
        assert!(parse_event(wrong_id.to_string().as_bytes()).is_err());
    }

    #[test]
    fn subscriptions_are_validated_with_periods_on_items() {
        let sub: Subscription = serde_json::from_value(json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "cancel_at_period_end": false, "metadata": {"user_id": "7"},
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_pro"},
                "current_period_start": 1700000000, "current_period_end": 1702592000}]}
        }))
        .unwrap();
        assert_eq!(sub.validate(), Ok(()));
        assert_eq!(sub.item().current_period_end, Some(1_702_592_000));
        let mut bad = sub.clone();
        bad.status = "weird".into();
        assert!(bad.validate().is_err());
        let mut bad = sub.clone();
        bad.items.data.clear();
        assert!(bad.validate().is_err());
        let expanded: Subscription = serde_json::from_value(json!({
            "id": "sub_1", "customer": {"id": "cus_2", "object": "customer"}, "status": "past_due",
            "items": {"data": [{"price": {"id": "price_pro"}}]}
        }))
        .unwrap();
        assert_eq!(expanded.customer.id(), "cus_2");
    }

    #[test]
    fn an_invoice_names_its_subscription_in_either_place() {
        assert_eq!(
            invoice_subscription(&json!({"parent": {"type": "subscription_details",
                "subscription_details": {"subscription": "sub_new", "metadata": {}}}})),
            Some("sub_new".into())
        );
        assert_eq!(
            invoice_subscription(&json!({"subscription": "sub_old"})),
            Some("sub_old".into())
        );
        assert_eq!(
            invoice_subscription(&json!({"subscription": {"id": "sub_x"}})),
            Some("sub_x".into())
        );
        assert_eq!(
            invoice_subscription(&json!({"parent": null, "subscription": null})),
            None
        );
    }
}
