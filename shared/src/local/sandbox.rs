//! The keyless local sandbox (feature `local`): one HTTP server mounting each vendor's stand-in
//! (`vendors::<vendor>::sandbox`), so `cargo xtask dev` works offline with no keys, and end-to-end
//! tests have a vendor.
//!
//! Its answers are honest: transcripts say they are sandbox transcripts and carry the real audio's
//! duration; speech is a real audio file in the requested format. It accepts any non-empty key.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;

use crate::vendors::{assemblyai, deepl, elevenlabs, openai};

/// A running sandbox; dropping it does not stop the server (it lives as long as the runtime).
#[derive(Debug, Clone)]
pub struct Running {
    pub base_url: String,
}

/// Serves on `addr` (port 0 picks one) and returns the base URL every vendor's `*_BASE_URL` can use.
pub async fn start(addr: SocketAddr, processing_delay: Duration) -> std::io::Result<Running> {
    let app = Router::new()
        .merge(assemblyai::sandbox::routes(processing_delay))
        .merge(elevenlabs::sandbox::routes())
        .merge(deepl::sandbox::routes())
        .merge(openai::sandbox::routes());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("sandbox stopped: {e}");
        }
    });
    Ok(Running {
        base_url: format!("http://{bound}"),
    })
}
