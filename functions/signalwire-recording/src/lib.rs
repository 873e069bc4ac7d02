//! `POST /webhooks/signalwire/recording`: a recording's status callback. Verify → store once →
//! enqueue → 204; the call worker sends a completed recording to ingest.

use lambda_http::Request;
use shared::api::app::SignalWireReceiver;
use shared::api::{self, ApiResult};
use shared::domain::calls::signalwire::Callback;

pub const FUNCTION: &str = "signalwire-recording";

pub async fn handle(receiver: &SignalWireReceiver, req: Request) -> ApiResult {
    receiver.receive(&req, Callback::Recording).await?;
    Ok(api::no_content())
}
