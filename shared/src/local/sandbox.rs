//! The keyless local sandbox (feature `local`): one HTTP server mounting each vendor's stand-in
//! (`vendors::<vendor>::sandbox`), so `cargo xtask dev` works offline with no keys, and end-to-end
//! tests have a vendor.
//!
//! Its answers are honest: transcripts say they are sandbox transcripts and carry the real audio's
//! duration; speech is a real audio file in the requested format. It accepts any non-empty key.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;

use crate::local::telephony::Simulator;
use crate::vendors::signalwire::sandbox::SignalWireSandbox;
use crate::vendors::stripe::sandbox::StripeSandbox;
use crate::vendors::telnyx::sandbox::TelnyxSandbox;
use crate::vendors::{assemblyai, deepl, elevenlabs, openai};

/// A running sandbox; dropping it does not stop the server (it lives as long as the runtime).
#[derive(Debug, Clone)]
pub struct Running {
    pub base_url: String,
    /// The telephony stand-ins' state: what they received, and calls/recordings to simulate.
    pub telnyx: TelnyxSandbox,
    pub signalwire: SignalWireSandbox,
    /// Plays calls against Parley once [`Simulator::attach`]ed to it.
    pub calls: Simulator,
    /// Checkout and the portal; posts its events to Parley once [`Running::attach`]ed.
    pub stripe: StripeSandbox,
}

impl Running {
    /// Points everything that calls Parley back at `parley_base_url` (once the API is up): the
    /// call simulator and Stripe's event deliveries.
    pub fn attach(&self, parley_base_url: &str) {
        self.calls.attach(parley_base_url);
        self.stripe.attach(parley_base_url);
    }
}

/// Serves on `addr` (port 0 picks one) and returns the base URL every vendor's `*_BASE_URL` can use.
pub async fn start(addr: SocketAddr, processing_delay: Duration) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let base_url = format!("http://{bound}");
    // The telephony stand-ins put their own URL in the recording links they hand out.
    let telnyx = TelnyxSandbox::new(&base_url);
    let signalwire = SignalWireSandbox::new(&base_url);
    let calls = Simulator::new(telnyx.clone(), signalwire.clone());
    let stripe = StripeSandbox::new(&base_url);
    let app = Router::new()
        .merge(assemblyai::sandbox::routes(processing_delay))
        .merge(elevenlabs::sandbox::routes())
        .merge(deepl::sandbox::routes())
        .merge(openai::sandbox::routes())
        .merge(telnyx.routes())
        .merge(signalwire.routes())
        .merge(calls.routes())
        .merge(stripe.routes());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("sandbox stopped: {e}");
        }
    });
    Ok(Running {
        base_url,
        telnyx,
        signalwire,
        calls,
        stripe,
    })
}
