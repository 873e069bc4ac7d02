//! The API as the local stack serves it: the real function binaries under `cargo lambda watch`
//! on an unadvertised loopback port, behind the proxy that plays API Gateway. `cargo xtask dev`
//! and the end-to-end tests both start it through here.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Result;
use crate::process::{Output, Stoppable};
use crate::proxy::{Proxy, ProxyConfig};
use crate::template::Template;

/// How to start the local API.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The workspace root (template.yaml, the functions' crates).
    pub root: PathBuf,
    pub cargo_lambda: PathBuf,
    /// The API's address (port 0: any free port).
    pub addr: SocketAddr,
    /// watch's port on 127.0.0.1 (0: any free port); never advertised.
    pub watch_port: u16,
    /// The functions' environment.
    pub env: Vec<(String, String)>,
    /// The template's `CorsOrigins` parameter; `None`: the origins the functions allow locally.
    pub cors_origins: Option<String>,
    /// Overrides every warm function's timeout.
    pub invoke_timeout: Option<Duration>,
    /// The xtask executable, to run watch under a supervisor (see `process`).
    pub supervisor: Option<PathBuf>,
    /// Show watch's build and function logs (else only errors).
    pub verbose: bool,
    /// Don't rebuild and restart a function when its sources change.
    pub ignore_changes: bool,
}

pub struct LocalApi {
    /// Where clients call, e.g. `http://127.0.0.1:9000`.
    pub base: String,
    /// watch's Lambda invoke API, for the queue pump and schedules only.
    pub invoke_base: String,
    pub template: Template,
    proxy: Option<Proxy>,
    watch: Stoppable,
}

impl LocalApi {
    pub async fn start(options: ApiOptions) -> Result<LocalApi> {
        let cors_origins = options
            .cors_origins
            .clone()
            .unwrap_or_else(|| local_cors_origins().join(","));
        let template = Template::load(
            &options.root.join("template.yaml"),
            &BTreeMap::from([("CorsOrigins".to_owned(), cors_origins)]),
        )?;
        let watch_port = match options.watch_port {
            0 => free_port()?,
            p => p,
        };
        let mut watch = Command::new(&options.cargo_lambda);
        watch
            .current_dir(&options.root)
            .args([
                "lambda",
                "watch",
                // The invoke API is internal; nothing in a browser should reach it.
                "--disable-cors",
                // No --timeout: watch applies it to every route it serves, including the
                // functions' own long poll for their next event, which then ends in a bare 408
                // that the runtime panics on (docs/local-stack.md). The proxy times invokes out.
                "-A",
                "127.0.0.1",
                "-P",
                &watch_port.to_string(),
            ])
            .args(options.ignore_changes.then_some("--ignore-changes"))
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env(
                "PATH",
                crate::tools::path_with(options.cargo_lambda.parent().unwrap_or(&options.root)),
            );
        let output = if options.verbose {
            Output::Inherit
        } else {
            Output::ErrorsOnly
        };
        let watch = Stoppable::spawn(
            "cargo lambda watch",
            watch,
            options.supervisor.as_deref(),
            output,
        )?;
        let invoke_base = format!("http://127.0.0.1:{watch_port}");
        let mut api = LocalApi {
            base: String::new(),
            invoke_base: invoke_base.clone(),
            template,
            proxy: None,
            watch,
        };
        api.wait_for_watch(Duration::from_secs(120)).await?;
        let proxy = Proxy::start(
            options.addr,
            ProxyConfig {
                routes: api.template.routes.clone(),
                cors: api.template.cors.clone(),
                invoke_base,
                timeouts: api.template.timeouts.clone(),
                invoke_timeout: options.invoke_timeout,
            },
        )
        .await?;
        api.base = format!("http://{}", proxy.addr);
        api.proxy = Some(proxy);
        Ok(api)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn port(&self) -> u16 {
        self.proxy.as_ref().map(|p| p.addr.port()).unwrap_or(0)
    }

    /// watch's pid (or its supervisor's).
    pub fn watch_pid(&self) -> u32 {
        self.watch.pid()
    }

    /// `Some(how)` if watch has exited on its own.
    pub fn watch_exited(&mut self) -> Option<String> {
        self.watch.exited()
    }

    async fn wait_for_watch(&mut self, within: Duration) -> Result {
        let addr = self.invoke_base.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + within;
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if let Some(how) = self.watch.exited() {
                return Err(how);
            }
            if Instant::now() > deadline {
                return Err(format!("cargo lambda watch did not listen on {addr}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Polls `GET /health` through the proxy until it answers one of `accept` (the first call
    /// compiles and starts the function, which can take minutes on a fresh checkout).
    pub async fn wait_for_health(&mut self, accept: &[u16], within: Duration) -> Result {
        let client = shared::platform::http_client::http_client(within);
        let deadline = Instant::now() + within;
        let mut last = "no answer".to_owned();
        while Instant::now() < deadline {
            if let Some(how) = self.watch.exited() {
                return Err(how);
            }
            match client.get(self.url("/health")).send().await {
                Ok(r) if accept.contains(&r.status().as_u16()) => return Ok(()),
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(format!("GET /health: {last}"))
    }

    /// Stops the proxy (freeing its port), then watch and every function process.
    pub async fn stop(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop().await;
        }
        self.watch.stop();
    }
}

/// The origins the functions allow when `CORS_ORIGINS` is unset locally (the shared rule's default).
pub fn local_cors_origins() -> Vec<String> {
    shared::api::settings::Settings::from_lookup(|name| {
        // Only a database URL is required to read settings; it is never connected to here.
        (name == "DATABASE_URL").then(|| "postgres://unused@127.0.0.1/unused".to_owned())
    })
    .map(|s| s.cors_origins)
    .unwrap_or_default()
}

/// A loopback port free right now.
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}
