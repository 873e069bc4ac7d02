//! The API contract check in `cargo xtask test`: schemathesis against the real stack.
//!
//! The run lives in an `#[ignore]`d test (tests/tests/schemathesis.rs), which starts the stack the
//! way the end-to-end tests do; this runs it on its own, after the other tests, so its minutes of
//! traffic never compete with them for the machine's cores.

use std::path::Path;
use std::process::Command;

use crate::{Result, tools};

/// Runs the schemathesis test with the environment `cargo xtask test` gives every test; skipped
/// when the run was narrowed to a filter (`cargo xtask test -- <filter>`).
pub fn schemathesis(root: &Path, bin: &Path, admin_url: &str, args: &[String]) -> Result {
    if args.iter().any(|a| a != "--") {
        return Ok(());
    }
    println!("\ncontract: schemathesis against the real binaries (docs/openapi.yaml)");
    tools::run(
        Command::new("cargo")
            .current_dir(root)
            .args([
                "test",
                "--workspace",
                "--test",
                "schemathesis",
                "--",
                "--ignored",
                "--nocapture",
            ])
            .env("PARLEY_TEST_PG_URL", admin_url)
            .env("PARLEY_CARGO_LAMBDA", bin.join("cargo-lambda"))
            .env("PATH", tools::path_with(bin)),
    )
    .map_err(|e| format!("the API broke its contract (docs/openapi.yaml): {e}"))
}
