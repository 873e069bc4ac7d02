//! JSON logs through `tracing`, and the cold-start flag each request or job line carries.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

static COLD_START: AtomicBool = AtomicBool::new(true);

/// True for the first request of this execution environment, false afterwards.
pub fn take_cold_start() -> bool {
    COLD_START.swap(false, Ordering::Relaxed)
}

/// The log filter: `RUST_LOG` if set, else `AWS_LAMBDA_LOG_LEVEL` (set by the function's LoggingConfig),
/// else `info`.
pub fn filter_directive(rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(directive) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        return directive.to_owned();
    }
    match lambda_level
        .map(|l| l.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("TRACE") => "trace",
        Some("DEBUG") => "debug",
        Some("WARN") => "warn",
        Some("ERROR") | Some("FATAL") => "error",
        _ => "info",
    }
    .to_owned()
}

/// Installs the JSON subscriber once; later calls (tests) are harmless no-ops.
pub fn init() {
    let directive = filter_directive(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// One count of `name` in CloudWatch's embedded metric format: Lambda's log stream turns the line
/// into a metric in namespace `Parley`, by stage and by each given dimension, with no metric filter.
pub fn emit_metric(name: &str, dimensions: &[(&str, &str)]) {
    println!(
        "{}",
        metric_line(name, dimensions, std::time::SystemTime::now())
    );
}

fn metric_line(name: &str, dimensions: &[(&str, &str)], at: std::time::SystemTime) -> String {
    let stage = std::env::var("PARLEY_STAGE").unwrap_or_else(|_| "local".to_owned());
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut with_all: Vec<&str> = vec!["Stage"];
    with_all.extend(dimensions.iter().map(|(k, _)| *k));
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": "Parley",
                "Dimensions": [["Stage"], with_all],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "Stage": stage,
        name: 1,
    });
    for (k, v) in dimensions {
        line[*k] = serde_json::Value::from(*v);
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_lines_are_embedded_metric_format() {
        let line = metric_line(
            "VendorBudgetExhausted",
            &[("Vendor", "assemblyai")],
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Parley");
        assert_eq!(
            spec["Dimensions"],
            serde_json::json!([["Stage"], ["Stage", "Vendor"]])
        );
        assert_eq!(spec["Metrics"][0]["Name"], "VendorBudgetExhausted");
        assert_eq!(v["VendorBudgetExhausted"], 1);
        assert_eq!(v["Vendor"], "assemblyai");
        assert!(v["Stage"].is_string());
    }

    use super::*;

    #[test]
    fn rust_log_wins_then_the_lambda_level_then_info() {
        assert_eq!(
            filter_directive(Some("shared=debug"), Some("ERROR")),
            "shared=debug"
        );
        assert_eq!(filter_directive(None, Some("DEBUG")), "debug");
        assert_eq!(filter_directive(Some(""), Some("fatal")), "error");
        assert_eq!(filter_directive(None, None), "info");
    }
}
