//! `DELETE /api/recordings/{id}`: removes the object, the row and its transcriptions, and the
//! transcripts at AssemblyAI (the sweeper finishes whatever R2 or AssemblyAI refused).

use lambda_http::Request;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::recordings::Recordings;

pub const FUNCTION: &str = "recordings-delete";

pub async fn handle(app: &App, recordings: &Recordings, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let deadline_ms = api::inline_vendor_deadline(&req);
    recordings.delete(session.user.id, id, deadline_ms).await?;
    Ok(api::no_content())
}
