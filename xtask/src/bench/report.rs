//! Figures, ratios to the floor, the table on the terminal and the results block of docs/benchmarks.md.

use std::fmt::Write as _;
use std::time::Duration;

/// Everything measured for one binary.
pub struct Measured {
    pub name: &'static str,
    pub path: &'static str,
    pub cold: Vec<Duration>,
    pub warm: Vec<Duration>,
    pub peak_rss_kib: u64,
    pub binary_bytes: u64,
}

/// pgbench on the session statement, one client: average latency in ms.
pub struct DatabaseFloor {
    pub prepared_ms: f64,
    /// Unnamed statement per execution (what `query_typed` sends): parse and plan every time.
    pub extended_ms: f64,
    /// What opening a connection adds to a transaction (`pgbench -C` minus unprepared): part of
    /// every function's cold start and none of the floor's.
    pub connect_ms: f64,
    pub transactions: usize,
    /// The server's `version()`, first words.
    pub server: String,
}

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    pub rustc: String,
    /// The database server the functions and pgbench used.
    pub postgres: String,
    /// 1-minute load averages around the run: the machine is shared.
    pub load: String,
}

pub struct Settings {
    pub cold_runs: usize,
    pub connect_runs: usize,
    pub warm_up: usize,
    pub invocations: usize,
}

/// The value below which `p` of the samples fall, interpolated between ranks (numpy's default).
pub fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return f64::NAN;
    }
    let rank = p * (ms.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    ms[low] + (ms[high] - ms[low]) * (rank - low as f64)
}

impl Measured {
    pub fn cold_median(&self) -> f64 {
        percentile(&self.cold, 0.5)
    }
    pub fn cold_p90(&self) -> f64 {
        percentile(&self.cold, 0.9)
    }
    pub fn warm_p50(&self) -> f64 {
        percentile(&self.warm, 0.5)
    }
    pub fn warm_p99(&self) -> f64 {
        percentile(&self.warm, 0.99)
    }
    fn rss_mb(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The terminal table: absolute figures, then the ratios.
pub fn table(floor: &Measured, functions: &[Measured], db: &DatabaseFloor) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "binary",
        "cold p50",
        "cold p90",
        "-floor",
        "warm p50",
        "/floor",
        "warm p99",
        "RSS MiB",
        "/floor",
        "size MiB"
    );
    let db_floor = floor.warm_p50() + db.prepared_ms;
    for m in std::iter::once(floor).chain(functions) {
        let _ = writeln!(
            out,
            "{:<20} {:>9.2} {:>9.2} {:>+9.2} {:>9.3} {:>9.2} {:>9.3} {:>9.2} {:>8.2} {:>8.2}",
            m.name,
            m.cold_median(),
            m.cold_p90(),
            m.cold_median() - floor.cold_median(),
            m.warm_p50(),
            m.warm_p50() / db_floor,
            m.warm_p99(),
            m.rss_mb(),
            m.rss_mb() / floor.rss_mb(),
            mib(m.binary_bytes),
        );
    }
    let _ = writeln!(
        out,
        "times in ms; warm /floor = warm p50 ÷ (floor warm p50 {:.3} + pgbench prepared {:.3}); \
         pgbench unprepared (extended) {:.3}",
        floor.warm_p50(),
        db.prepared_ms,
        db.extended_ms
    );
    out
}

/// One goal of issue 12 item 4: what was asked, what was measured, whether it was met.
struct Goal {
    name: &'static str,
    target: String,
    measured: String,
    met: bool,
}

fn goals(floor: &Measured, me: &Measured, db: &DatabaseFloor) -> Vec<Goal> {
    let warm_limit = 1.3 * (floor.warm_p50() + db.prepared_ms);
    let cold_limit = floor.cold_median() + 5.0;
    vec![
        Goal {
            name: "warm p50",
            target: format!(
                "≤ 1.3 × ({:.3} + {:.3}) = {warm_limit:.3} ms",
                floor.warm_p50(),
                db.prepared_ms
            ),
            measured: format!("{:.3} ms", me.warm_p50()),
            met: me.warm_p50() <= warm_limit,
        },
        Goal {
            name: "warm p99",
            target: "≤ 1 ms".to_owned(),
            measured: format!("{:.3} ms", me.warm_p99()),
            met: me.warm_p99() <= 1.0,
        },
        Goal {
            name: "cold start (median)",
            target: format!("≤ {:.2} + 5 = {cold_limit:.2} ms", floor.cold_median()),
            measured: format!(
                "{:.2} ms (floor {:+.2}; pgbench -C prices a connection at {:.2})",
                me.cold_median(),
                me.cold_median() - floor.cold_median(),
                db.connect_ms
            ),
            met: me.cold_median() <= cold_limit,
        },
        Goal {
            name: "peak RSS",
            target: "≤ 5 MB".to_owned(),
            measured: format!(
                "{:.2} MiB ({:.2} MB)",
                me.rss_mb(),
                me.peak_rss_kib as f64 * 1024.0 / 1e6
            ),
            met: me.peak_rss_kib * 1024 <= 5_000_000,
        },
    ]
}

/// The `me` goals on the terminal.
pub fn goal_lines(floor: &Measured, me: &Measured, db: &DatabaseFloor) -> String {
    goals(floor, me, db)
        .iter()
        .map(|g| {
            format!(
                "  {:<20} {:<28} measured {:<50} {}\n",
                g.name,
                g.target,
                g.measured,
                if g.met { "met" } else { "NOT met" }
            )
        })
        .collect()
}

/// The generated block of docs/benchmarks.md.
pub fn markdown(
    floor: &Measured,
    functions: &[Measured],
    db: &DatabaseFloor,
    machine: &Machine,
    settings: &Settings,
) -> String {
    let mut md = String::new();
    let db_floor = floor.warm_p50() + db.prepared_ms;
    let _ = writeln!(
        md,
        "## Latest run\n\n\
         Measured by `cargo xtask bench` on {date}, commit `{commit}`.\n\n\
         - Machine: {cpu}, {cores} cores, {memory} RAM, Linux {kernel} (x86_64); load average \
           {load} the run (the machine is shared: p99s move with it).\n\
         - Toolchain: {rustc}; release profile of the workspace (fat LTO, one codegen unit, \
           `panic = \"abort\"`, stripped). Database: {postgres} on loopback, no TLS, a fresh migrated database.\n\
         - Cold start: exec → first response, including the first database connection, \
           median and p90 of {cold} runs (each a new process; runs of the binaries are interleaved).\n\
         - Warm: p50 and p99 of {warm} invocations of one process per binary, after {warm_up} \
           unmeasured ones, in interleaved blocks; from the event being queued to the response \
           body read by the emulator (so both Runtime API calls are included).\n\
         - Peak RSS: `VmHWM` of the process after its warm invocations.\n\
         - Database floor: pgbench, one client, {tx} transactions of the session-resolving statement \
           with the seeded token: **{prepared:.3} ms** prepared (`-M prepared`), {extended:.3} ms \
           unprepared (`-M extended`, an unnamed statement per execution, as `query_typed` sends); \
           a new connection per transaction (`-C`, {connect_runs} of them) adds {connect:.2} ms \
           there (libpq's side included): a cost every function's cold start pays and the floor's does not.\n",
        date = machine.date,
        commit = machine.commit,
        cpu = machine.cpu,
        cores = machine.cores,
        memory = machine.memory,
        kernel = machine.kernel,
        load = machine.load,
        rustc = machine.rustc,
        postgres = machine.postgres,
        cold = settings.cold_runs,
        warm = settings.invocations,
        warm_up = settings.warm_up,
        tx = db.transactions,
        prepared = db.prepared_ms,
        extended = db.extended_ms,
        connect = db.connect_ms,
        connect_runs = settings.connect_runs,
    );
    let _ = writeln!(
        md,
        "### Against the floor\n\n\
         The floor is `{name}` (hello world on `lambda_runtime`, built in the same run). \
         \"Warm p50 ÷ DB floor\" divides by the floor's warm p50 plus pgbench's prepared latency \
         ({db_floor:.3} ms): the least a route doing the session statement can cost. Routes doing \
         more than that statement have a higher true floor.\n\n\
         | binary | cold start − floor (median) | warm p50 ÷ DB floor | warm p99 | peak RSS ÷ floor | stripped size |\n\
         |---|---|---|---|---|---|",
        name = floor.name,
    );
    for m in functions {
        let _ = writeln!(
            md,
            "| `{}` | +{:.2} ms | {:.2} × | {:.3} ms ({:.2} × floor p99) | {:.2} × ({:.2} MiB) | {:.2} MiB |",
            m.name,
            m.cold_median() - floor.cold_median(),
            m.warm_p50() / db_floor,
            m.warm_p99(),
            m.warm_p99() / floor.warm_p99(),
            m.rss_mb() / floor.rss_mb(),
            m.rss_mb(),
            mib(m.binary_bytes),
        );
    }
    let _ = writeln!(
        md,
        "\n### Absolute figures (ms, MiB)\n\n\
         | binary | what one invocation does | cold p50 | cold p90 | warm p50 | warm p99 | peak RSS | stripped size (x86_64) |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for m in std::iter::once(floor).chain(functions) {
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} | {:.2} |",
            m.name,
            m.path,
            m.cold_median(),
            m.cold_p90(),
            m.warm_p50(),
            m.warm_p99(),
            m.rss_mb(),
            mib(m.binary_bytes),
        );
    }
    if let Some(me) = functions.iter().find(|m| m.name == "me") {
        let _ = writeln!(
            md,
            "\n### `me` against issue 12's goals\n\n| goal | target | measured | met |\n|---|---|---|---|"
        );
        for g in goals(floor, me, db) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                g.name,
                g.target,
                g.measured,
                if g.met { "yes" } else { "**no**" }
            );
        }
    }
    md
}

/// Markers around the generated block, so the hand-written rest of the file survives a rerun.
pub const BEGIN: &str = "<!-- cargo xtask bench: generated from here -->";
pub const END: &str = "<!-- cargo xtask bench: generated up to here -->";

/// `existing` with its generated block replaced by `block` (or the block added after the title).
pub fn splice(existing: &str, block: &str) -> String {
    let generated = format!("{BEGIN}\n{}\n{END}", block.trim_end());
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(start), Some(end)) if start < end => format!(
            "{}{generated}{}",
            &existing[..start],
            &existing[end + END.len()..]
        ),
        _ => {
            let (title, rest) = existing
                .split_once("\n\n")
                .unwrap_or((existing.trim_end(), ""));
            format!("{title}\n\n{generated}\n\n{rest}")
                .trim_end()
                .to_owned()
                + "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert!((percentile(&samples, 0.5) - 5.5).abs() < 1e-9);
        assert!((percentile(&samples, 0.9) - 9.1).abs() < 1e-9);
        assert!((percentile(&samples, 1.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_rerun_replaces_only_the_generated_block() {
        let first = splice(
            "# Benchmarks\n\nIntro.\n\n## Previous\nold\n",
            "## Latest\nA\n",
        );
        assert!(first.starts_with("# Benchmarks\n\n<!--"));
        assert!(first.contains("## Latest\nA") && first.contains("Intro.\n\n## Previous\nold"));
        let second = splice(&first, "## Latest\nB\n");
        assert!(second.contains("## Latest\nB") && !second.contains("## Latest\nA"));
        assert!(second.ends_with("## Previous\nold\n"));
    }
}
