//! Per-user rate limits: which class of route a function is, each class's policy (from the
//! environment), and the figures a request is told in the `RateLimit` and `RateLimit-Policy`
//! fields of draft-ietf-httpapi-ratelimit-headers-10.
//!
//! The state is one GCRA "theoretical arrival time" per (user, class) in the unlogged
//! `rate_limits` table, checked and advanced inside the session statement (see `auth`), so an
//! authenticated request still costs one round trip. A policy `L/W;burst=B` has the emission
//! interval `T = W / L` and the tolerance `τ = (B − 1)·T`: a request is allowed when
//! `max(tat, now) − now ≤ τ`, and then `tat = max(tat, now) + T`. B requests fit at once; after
//! that one more every T. A refused request changes nothing. docs/rate-limits.md explains it.

use std::fmt;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::platform::settings::Reader;

/// The class of route a function belongs to; each class has its own bucket per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Creates paid work: a vendor is paid for what the request starts.
    Paid,
    /// Mints a vendor token (realtime streaming).
    Token,
    /// Changes state without paying a vendor.
    Write,
    /// Only reads (the functions in `api::pipeline::READ_ONLY_FUNCTIONS`).
    Read,
}

impl RateClass {
    pub const ALL: [RateClass; 4] = [
        RateClass::Paid,
        RateClass::Token,
        RateClass::Write,
        RateClass::Read,
    ];

    /// The policy's name in the fields and the `class` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Paid => "paid",
            RateClass::Token => "token",
            RateClass::Write => "write",
            RateClass::Read => "read",
        }
    }

    /// The variable its policy is read from.
    pub fn variable(self) -> &'static str {
        match self {
            RateClass::Paid => "RATE_LIMIT_PAID",
            RateClass::Token => "RATE_LIMIT_TOKEN",
            RateClass::Write => "RATE_LIMIT_WRITE",
            RateClass::Read => "RATE_LIMIT_READ",
        }
    }

    fn default_policy(self) -> &'static str {
        match self {
            RateClass::Paid => DEFAULT_PAID,
            RateClass::Token => DEFAULT_TOKEN,
            RateClass::Write => DEFAULT_WRITE,
            RateClass::Read => DEFAULT_READ,
        }
    }
}

impl fmt::Display for RateClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Functions that start work a vendor bills (or, for billing, a Stripe session).
pub const PAID_FUNCTIONS: &[&str] = &[
    "billing-checkout",
    "billing-portal",
    "calls-create",
    "transcription-translations-create",
    "transcriptions-create",
    "translations-create",
    "tts-create",
];

/// Functions that mint a vendor token.
pub const TOKEN_FUNCTIONS: &[&str] = &["realtime-token"];

/// Functions that authenticate and change state without paying a vendor. Listed rather than
/// inferred so that tests/tests/rate_limits.rs can insist every authenticating function is in
/// exactly one list; a function in none of them is still limited, as `write` (see [`class_of`]).
pub const WRITE_FUNCTIONS: &[&str] = &[
    "calls-hangup",
    "export-create",
    "me-delete",
    "phone-numbers-update",
    "recordings-complete",
    "recordings-delete",
    "recordings-upload",
    "tts-delete",
];

/// The class of `function`: paid, token, read when it is in `read_only` (the pipeline's
/// `READ_ONLY_FUNCTIONS`, passed in so this module depends on nothing above it), and `write` for
/// every other name, so the mapping is total and a new function is never unlimited.
pub fn class_of(function: &str, read_only: &[&str]) -> RateClass {
    if PAID_FUNCTIONS.contains(&function) {
        RateClass::Paid
    } else if TOKEN_FUNCTIONS.contains(&function) {
        RateClass::Token
    } else if read_only.contains(&function) {
        RateClass::Read
    } else {
        RateClass::Write
    }
}

/// 20 paid requests at once, then one every 30 s.
pub const DEFAULT_PAID: &str = "20/10m";
/// 10 realtime tokens at once, then one a minute.
pub const DEFAULT_TOKEN: &str = "10/10m";
/// 30 writes at once, then one a second.
pub const DEFAULT_WRITE: &str = "60/1m;burst=30";
/// 100 reads at once, then five a second.
pub const DEFAULT_READ: &str = "300/1m;burst=100";

/// One class's policy: `limit` requests per `window`, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    pub class: RateClass,
    pub limit: u32,
    pub window: Duration,
    pub burst: u32,
}

const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_COUNT: u32 = 1_000_000;

impl RatePolicy {
    /// Parses `LIMIT/WINDOW[;burst=B]`: a window is a whole number of seconds, minutes or hours
    /// (`60s`, `10m`, `1h`) up to a day; `burst` (default LIMIT) is how many fit at once.
    pub fn parse(class: RateClass, text: &str) -> Result<RatePolicy, String> {
        let bad = || {
            format!(
                "must be LIMIT/WINDOW[;burst=B], like `30/60s`, `20/10m` or `60/1m;burst=30` \
                 (window in s, m or h, up to 24h; limit and burst from 1 to {MAX_COUNT}); got {text:?}"
            )
        };
        let (rate, burst) = match text.split_once(';') {
            Some((rate, param)) => {
                let value = param.trim().strip_prefix("burst=").ok_or_else(bad)?.trim();
                (rate, Some(value.parse::<u32>().map_err(|_| bad())?))
            }
            None => (text, None),
        };
        let (limit, window) = rate.split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (number, unit) = window.split_at(window.len().saturating_sub(1));
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => number,
            "m" => number.saturating_mul(60),
            "h" => number.saturating_mul(3600),
            _ => return Err(bad()),
        };
        let window = Duration::from_secs(seconds);
        let burst = burst.unwrap_or(limit);
        if !(1..=MAX_COUNT).contains(&limit)
            || !(1..=MAX_COUNT).contains(&burst)
            || window.is_zero()
            || window > MAX_WINDOW
        {
            return Err(bad());
        }
        Ok(RatePolicy {
            class,
            limit,
            window,
            burst,
        })
    }

    /// The emission interval `T = window / limit`, in microseconds (PostgreSQL's resolution).
    pub fn interval_us(&self) -> i64 {
        (self.window.as_micros() / u128::from(self.limit)).max(1) as i64
    }

    /// The tolerance `τ = (burst − 1)·T`, in microseconds.
    pub fn tolerance_us(&self) -> i64 {
        i64::from(self.burst - 1) * self.interval_us()
    }

    /// `RateLimit-Policy`: `"<class>";q=<limit>;w=<window seconds>;parley-burst=<burst>`.
    pub fn policy_field(&self) -> String {
        format!(
            "\"{}\";q={};w={};parley-burst={}",
            self.class,
            self.limit,
            self.window.as_secs(),
            self.burst
        )
    }

    /// What one check found: `ahead_us` is `tat − now` after it (the stored `tat` when refused),
    /// `None` when a refusal could not read the bucket (a race on its first row; assume it full).
    pub fn status(&self, allowed: bool, ahead_us: Option<i64>) -> RateStatus {
        let t = self.interval_us();
        let tolerance = self.tolerance_us();
        let ahead = ahead_us.unwrap_or(tolerance + t).max(0);
        // Units in use: the bucket holds `burst`, one unit drains every T.
        let used = (ahead + t - 1) / t;
        let remaining = (i64::from(self.burst) - used).max(0) as u32;
        // Until one more unit is free: the next drain, or (when none is left) until ahead ≤ τ.
        let until_next_us = if ahead == 0 {
            0
        } else if remaining == 0 {
            (ahead - tolerance).max(1)
        } else {
            ahead - (used - 1) * t
        };
        let reset = ceil_secs(until_next_us);
        RateStatus {
            policy: *self,
            allowed,
            remaining: if allowed { remaining } else { 0 },
            reset_secs: reset,
            retry_after_secs: (!allowed).then(|| reset.max(1)),
        }
    }
}

fn ceil_secs(us: i64) -> u64 {
    (us.max(0) as u64).div_ceil(1_000_000)
}

/// The per-class policies, read once per cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub paid: RatePolicy,
    pub token: RatePolicy,
    pub write: RatePolicy,
    pub read: RatePolicy,
}

impl RateLimitSettings {
    pub fn read(r: &mut Reader) -> RateLimitSettings {
        let mut policy = |class: RateClass| {
            let default = RatePolicy::parse(class, class.default_policy())
                .expect("the default policies parse");
            match r.get(class.variable()) {
                None => default,
                Some(text) => RatePolicy::parse(class, &text).unwrap_or_else(|problem| {
                    r.problem(class.variable(), problem);
                    default
                }),
            }
        };
        RateLimitSettings {
            paid: policy(RateClass::Paid),
            token: policy(RateClass::Token),
            write: policy(RateClass::Write),
            read: policy(RateClass::Read),
        }
    }

    pub fn for_class(&self, class: RateClass) -> RatePolicy {
        match class {
            RateClass::Paid => self.paid,
            RateClass::Token => self.token,
            RateClass::Write => self.write,
            RateClass::Read => self.read,
        }
    }

    /// The policy that limits `function` (see [`class_of`]).
    pub fn for_function(&self, function: &str, read_only: &[&str]) -> RatePolicy {
        self.for_class(class_of(function, read_only))
    }
}

/// One request's standing against its policy, for the response's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub policy: RatePolicy,
    pub allowed: bool,
    /// Requests that would be allowed right now (`r`).
    pub remaining: u32,
    /// Seconds until one more request is allowed (`t`); 0 when the bucket is full.
    pub reset_secs: u64,
    /// `Retry-After` for a refusal: the same instant as `t`, at least a second.
    pub retry_after_secs: Option<u64>,
}

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

impl RateStatus {
    /// `RateLimit`: `"<class>";r=<remaining>;t=<seconds>`.
    pub fn field(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.policy.class, self.remaining, self.reset_secs
        )
    }

    /// Adds `RateLimit` and `RateLimit-Policy` (and `Retry-After` for a refusal).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let value = |s: String| HeaderValue::from_str(&s).expect("ASCII by construction");
        headers.insert(RATELIMIT, value(self.field()));
        headers.insert(RATELIMIT_POLICY, value(self.policy.policy_field()));
        if let Some(after) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, value(after.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> RatePolicy {
        RatePolicy::parse(RateClass::Paid, text).unwrap()
    }

    #[test]
    fn policies_parse_in_every_unit_with_and_without_burst() {
        let p = policy("30/60s");
        assert_eq!((p.limit, p.window.as_secs(), p.burst), (30, 60, 30));
        assert_eq!(p.interval_us(), 2_000_000);
        assert_eq!(p.tolerance_us(), 58_000_000);
        let p = policy(" 60/1m ; burst=30 ");
        assert_eq!((p.limit, p.window.as_secs(), p.burst), (60, 60, 30));
        assert_eq!(policy("5/2h").window.as_secs(), 7200);
        assert_eq!(policy("1/24h;burst=1").tolerance_us(), 0);
        for bad in [
            "",
            "30",
            "30/",
            "/60s",
            "30/60",
            "30/60d",
            "0/60s",
            "30/0s",
            "30/25h",
            "30/60s;b=3",
            "30/60s;burst=0",
            "-1/60s",
            "30/60s;burst=",
            "1.5/60s",
            "30/1m;burst=x",
        ] {
            let e = RatePolicy::parse(RateClass::Read, bad).unwrap_err();
            assert!(e.contains("LIMIT/WINDOW"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_defaults_let_a_client_burst_at_least_ten_per_class() {
        let r = |_: &str| None;
        let mut reader = Reader::new(&r);
        let s = RateLimitSettings::read(&mut reader);
        assert!(reader.problems.is_empty());
        for class in RateClass::ALL {
            let p = s.for_class(class);
            assert_eq!(p.class, class);
            assert!(p.burst >= 10, "{class}: {p:?}");
        }
    }

    #[test]
    fn a_bad_variable_is_a_problem_naming_it() {
        let r = |name: &str| (name == "RATE_LIMIT_TOKEN").then(|| "lots".to_owned());
        let mut reader = Reader::new(&r);
        RateLimitSettings::read(&mut reader);
        assert_eq!(reader.problems.len(), 1);
        assert_eq!(reader.problems[0].variable, "RATE_LIMIT_TOKEN");
    }

    #[test]
    fn classes_come_from_the_function_name_and_default_to_write() {
        let reads = &["me"];
        assert_eq!(class_of("tts-create", reads), RateClass::Paid);
        assert_eq!(class_of("realtime-token", reads), RateClass::Token);
        assert_eq!(class_of("me", reads), RateClass::Read);
        assert_eq!(class_of("recordings-delete", reads), RateClass::Write);
        assert_eq!(class_of("a-function-added-later", reads), RateClass::Write);
    }

    #[test]
    fn the_figures_follow_the_bucket() {
        // 10 at once, then one every 6 s.
        let p = policy("10/60s");
        let t = p.interval_us();
        // A fresh bucket after one request: 9 left, the next unit drains in 6 s.
        let s = p.status(true, Some(t));
        assert_eq!(
            (s.remaining, s.reset_secs, s.retry_after_secs),
            (9, 6, None)
        );
        // The tenth at once: none left, one frees in 6 s.
        let s = p.status(true, Some(10 * t));
        assert_eq!((s.remaining, s.reset_secs), (0, 6));
        // Refused with the bucket full: retry when ahead falls to τ, 6 s.
        let s = p.status(false, Some(10 * t));
        assert_eq!(
            (s.remaining, s.reset_secs, s.retry_after_secs),
            (0, 6, Some(6))
        );
        // 2.5 s later: still none, 3.5 s to wait, rounded up.
        let s = p.status(false, Some(10 * t - 2_500_000));
        assert_eq!(s.retry_after_secs, Some(4));
        // Part-way drained: 5 in use, 1 µs past a boundary.
        let s = p.status(true, Some(4 * t + 1));
        assert_eq!((s.remaining, s.reset_secs), (5, 1));
        // A refusal that could not read the bucket assumes it full.
        assert_eq!(p.status(false, None).retry_after_secs, Some(6));
        assert_eq!(
            s.field(),
            "\"paid\";r=5;t=1",
            "the draft's structured-field syntax"
        );
        assert_eq!(p.policy_field(), "\"paid\";q=10;w=60;parley-burst=10");
    }
}
