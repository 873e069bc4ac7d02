//! The local stack behind `cargo xtask`: template.yaml read as the one list of routes, queues and
//! schedules, the proxy that plays API Gateway, `cargo lambda watch` under supervision, and the
//! chores (tools, PostgreSQL). The end-to-end tests use the same pieces.

pub mod api;
pub mod contract;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod template;
pub mod tools;

use std::path::{Path, PathBuf};

pub type Result<T = ()> = std::result::Result<T, String>;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
