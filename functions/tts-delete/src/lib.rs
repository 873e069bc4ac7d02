//! `DELETE /api/tts/{id}`: removes a speech job, its audio in R2 and its ElevenLabs history item
//! (the sweeper finishes whatever R2 or ElevenLabs refused). A job being synthesized is a 409.

use lambda_http::Request;
use shared::App;
use shared::api::{self, ApiResult};
use shared::domain::lifecycle::copies::VendorCopies;
use shared::domain::speech::jobs::TtsJobs;

pub const FUNCTION: &str = "tts-delete";

pub async fn handle(app: &App, jobs: &TtsJobs, copies: &VendorCopies, req: Request) -> ApiResult {
    let session = app.sessions.authenticate(req.headers()).await?;
    let id = api::path_uuid(&req, "id")?;
    let deadline_ms = api::inline_vendor_deadline(&req);
    jobs.delete(session.user.id, id, copies, deadline_ms)
        .await?;
    Ok(api::no_content())
}
