//! `PATCH /api/phone-numbers/{id}`: changes how calls to one of the caller's numbers are handled.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::calls::numbers::{PhoneNumbers, SettingsPatch};

pub const FUNCTION: &str = "phone-numbers-update";

pub async fn handle(app: &App, numbers: &PhoneNumbers, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let patch: SettingsPatch = api::parse_json(&req)?;
    let number = numbers.update(session.user.id, id, patch).await?;
    api::json(StatusCode::OK, &json!({ "phone_number": number }))
}
