//! Scheduled (EventBridge, every minute): sends stored webhook events and queued outbound calls
//! whose message never left — telephony events and dials to the call queue, Stripe's events to the
//! billing queue — and purges event bodies past their retention.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};
use shared::domain::billing::stripe::StripeOutbox;
use shared::domain::calls::webhooks::RETENTION;
use shared::domain::calls::webhooks::WebhookEvents;

pub const FUNCTION: &str = "webhook-events-sweeper";
const BATCH: i64 = 500;

pub async fn handle(
    events: &WebhookEvents,
    billing: &StripeOutbox,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let cold_start = shared::platform::telemetry::take_cold_start();
    let resent = events.reconcile(BATCH).await?;
    let billing_resent = billing.reconcile(BATCH).await?;
    let purged = events.purge(RETENTION, BATCH).await?;
    tracing::info!(
        request_id = event.context.request_id,
        function = FUNCTION,
        cold_start,
        resent,
        billing_resent,
        purged,
        "sweep"
    );
    Ok(json!({ "resent": resent, "billing_resent": billing_resent, "purged": purged }))
}
