//! `DELETE /api/recordings/{id}`: removes the object and the row (the sweeper finishes if R2 fails).

use lambda_http::Request;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::recordings::Recordings;

pub const FUNCTION: &str = "recordings-delete";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    recordings.delete(session.user.id, id).await?;
    Ok(api::no_content())
}
