//! Lambda helpers every function shares: the clock and the invocation deadline.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of Lambda's deadline.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The invocation deadline in ms since the epoch. Lambda sends exactly that; `cargo lambda watch`
/// sends the timeout itself (e.g. `600000`), so a value too small to be a date is read as "this
/// long from now". 0 stays 0 (unknown).
pub fn effective_deadline(raw_ms: u64) -> u64 {
    // 2001-09-09 in ms: no real deadline is earlier, no timeout is longer.
    const EPOCH_FLOOR: u64 = 1_000_000_000_000;
    if raw_ms == 0 || raw_ms >= EPOCH_FLOOR {
        raw_ms
    } else {
        now_ms() + raw_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_from_lambda_pass_and_relative_ones_are_anchored() {
        let real = now_ms() + 5_000;
        assert_eq!(effective_deadline(real), real);
        assert_eq!(effective_deadline(0), 0);
        let anchored = effective_deadline(60_000);
        assert!(anchored >= now_ms() + 59_000 && anchored <= now_ms() + 60_000);
    }
}
