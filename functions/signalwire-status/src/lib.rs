//! `POST /webhooks/signalwire/status`: a call's status callback. Verify → store once → enqueue → 204;
//! the call worker moves the call.

use lambda_http::Request;
use shared::api::app::SignalWireReceiver;
use shared::api::{self, ApiResult};
use shared::domain::calls::signalwire::Callback;

pub const FUNCTION: &str = "signalwire-status";

pub async fn handle(receiver: &SignalWireReceiver, req: Request) -> ApiResult {
    receiver.receive(&req, Callback::Status).await?;
    Ok(api::no_content())
}
