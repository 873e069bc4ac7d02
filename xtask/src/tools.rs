//! Tools the project installs for itself, and process helpers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Result;

/// Executables the venv must provide, installed from `xtask/requirements-dev.txt`.
const VENV_TOOLS: &[&str] = &[
    "cargo-lambda",
    "moto_server",
    "cfn-lint",
    "openapi-spec-validator",
    "schemathesis",
];

/// Makes sure `.venv` holds the pinned Python tools; returns its `bin` directory.
pub fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let bin = venv.join("bin");
    let requirements = root.join("xtask/requirements-dev.txt");
    let stamp = venv.join(".parley-requirements");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("reading {}: {e}", requirements.display()))?;
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if installed == wanted && VENV_TOOLS.iter().all(|t| bin.join(t).exists()) {
        return Ok(bin);
    }
    if !bin.join("python").exists() {
        println!("creating the project venv in .venv");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    println!("installing Python tools (cargo-lambda, moto, cfn-lint, schemathesis) into .venv");
    run(Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(bin)
}

/// `npm ci` in `dir` when its node_modules is missing or older than its lock file.
pub fn ensure_npm(dir: &Path) -> Result {
    let lock = dir.join("package-lock.json");
    let marker = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if matches!((modified(&lock), modified(&marker)), (Some(l), Some(m)) if m >= l) {
        return Ok(());
    }
    println!("installing npm packages in {}", dir.display());
    run(Command::new("npm").current_dir(dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))
}

/// `PATH` with `bin` first, so cargo finds the `cargo-lambda` subcommand and its helpers.
pub fn path_with(bin: &Path) -> OsString {
    let mut paths = vec![bin.to_path_buf()];
    if let Some(existing) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).expect("paths contain no separator")
}

/// Runs a command to completion; non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed with {status}", cmd.get_program()))
    }
}

/// Polls `GET path` on `addr` until it answers 200.
pub async fn wait_for_http_ok(addr: &str, path: &str, within: Duration) -> Result {
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http_status(addr, path).await {
            Ok(200) => return Ok(()),
            Ok(status) => last = format!("status {status}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("GET {path} on {addr}: {last}"))
}

async fn http_status(addr: &str, path: &str) -> Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut head))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("odd answer {line:?}"))
}
