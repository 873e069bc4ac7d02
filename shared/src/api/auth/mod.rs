//! Auth.js database sessions, resolved from the same `sessions` and `users` tables the Next.js app
//! writes through `@auth/pg-adapter`.
//!
//! One statement on every path: it reads the session and its user, deletes the row if it has
//! expired, slides the expiry forward by Auth.js's rule, and checks and advances the user's rate
//! limit for the function's class (`api::ratelimit`). The token is never logged.

use std::fmt;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use time::OffsetDateTime;

use crate::api::ApiError;
use crate::api::ratelimit::{RatePolicy, RateStatus};
use crate::api::settings::SessionSettings;
use crate::domain::UserId;
use crate::platform::db::{self, DbPool, Type};

/// Cookie names Auth.js v5 and NextAuth v4 use, in the order we prefer them.
pub const SESSION_COOKIES: [&str; 4] = [
    "__Secure-authjs.session-token",
    "authjs.session-token",
    "__Secure-next-auth.session-token",
    "next-auth.session-token",
];

/// Which session cookies count. Outside `local` only the `__Secure-` names do: a browser sets those
/// only over HTTPS with `Secure`, so a cookie planted over plain HTTP (or by a sibling subdomain)
/// cannot pose as a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookiePolicy {
    AnyName,
    SecureOnly,
}

impl CookiePolicy {
    fn accepts(self, name: &str) -> bool {
        self == CookiePolicy::AnyName || name.starts_with("__Secure-")
    }
}

/// What authentication learnt about a request, for its log line and its rate-limit fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestAuth {
    pub user: Option<UserId>,
    /// The user's standing against the function's rate limit (allowed or not).
    pub rate: Option<RateStatus>,
}

tokio::task_local! {
    /// Filled by [`Sessions::authenticate`] for `Http::serve`.
    static REQUEST_USER: std::cell::Cell<RequestAuth>;
}

/// Runs `fut` with a slot that [`Sessions::authenticate`] fills; returns its output and what it
/// learnt (the user, and the rate-limit standing the response's fields report).
pub async fn with_request_user<F: std::future::Future>(fut: F) -> (F::Output, RequestAuth) {
    REQUEST_USER
        .scope(std::cell::Cell::new(RequestAuth::default()), async {
            let out = fut.await;
            (out, REQUEST_USER.with(|u| u.get()))
        })
        .await
}

/// Where the token came from: cookie sessions need CSRF protection, bearer tokens do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Cookie(&'static str),
    Bearer,
}

/// A session token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Accepts what Auth.js (a UUID) or `cargo xtask session` (base64url) produce: 1 to 255 characters
    /// of RFC 6750's token68 alphabet. Anything else cannot be a session and never reaches the database.
    pub fn parse(raw: &str) -> Option<SessionToken> {
        let ok = !raw.is_empty()
            && raw.len() <= 255
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
            });
        ok.then(|| SessionToken(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `None` when something was presented but cannot be a valid token (still a 401, not a lookup).
    pub token: Option<SessionToken>,
    pub source: TokenSource,
}

/// Finds the credentials in a request: `Authorization: Bearer` first, then the session cookies in
/// [`SESSION_COOKIES`] order. Malformed cookie pairs are skipped, not fatal.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    credentials_under(headers, CookiePolicy::AnyName)
}

/// [`credentials`], counting only the cookie names `policy` accepts.
pub fn credentials_under(headers: &HeaderMap, policy: CookiePolicy) -> Option<Credentials> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or("");
        let token = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, token)| SessionToken::parse(token.trim()));
        return Some(Credentials {
            token,
            source: TokenSource::Bearer,
        });
    }
    let mut found: Option<(usize, &str)> = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let Some(rank) = SESSION_COOKIES
                .iter()
                .position(|n| *n == name && policy.accepts(n))
            else {
                continue;
            };
            // The first occurrence of the best-ranked name wins, as a browser orders them.
            if found.is_none_or(|(best, _)| rank < best) {
                found = Some((rank, value.trim().trim_matches('"')));
            }
        }
    }
    found.map(|(rank, value)| Credentials {
        token: SessionToken::parse(value),
        source: TokenSource::Cookie(SESSION_COOKIES[rank]),
    })
}

/// An Auth.js user row, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Auth.js passes ids as strings; so does [`UserId`] on the wire.
    pub id: UserId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub image: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub email_verified: Option<OffsetDateTime>,
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub expires: OffsetDateTime,
    pub source: TokenSource,
    /// True when this request slid the expiry forward; the cookie is then re-set with it.
    pub refreshed: bool,
    /// The rate-limit standing this request was admitted with.
    pub rate: RateStatus,
    /// A deployed stage: a re-set cookie is always `Secure`, whatever its name.
    secure_only: bool,
    token: SessionToken,
}

impl Session {
    /// A `Set-Cookie` carrying the new expiry, when the session came from a cookie and was refreshed,
    /// as Auth.js itself does on each session read.
    pub fn refreshed_cookie(&self) -> Option<HeaderValue> {
        let TokenSource::Cookie(name) = self.source else {
            return None;
        };
        if !self.refreshed {
            return None;
        }
        let expires = self
            .expires
            .format(&time::format_description::well_known::Rfc2822)
            .ok()?;
        let secure = if self.secure_only || name.starts_with("__Secure-") {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{name}={}; Path=/; Expires={expires}; HttpOnly; SameSite=Lax{secure}",
            self.token.expose()
        ))
        .ok()
    }
}

/// A `Set-Cookie` that removes the named session cookie.
pub fn clearing_cookie(name: &str) -> HeaderValue {
    let secure = if name.starts_with("__Secure-") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie names are static ASCII")
}

/// Resolves and ends sessions against the shared Auth.js tables.
#[derive(Debug, Clone)]
pub struct Sessions {
    pool: DbPool,
    settings: SessionSettings,
    /// The rate limit of the function these sessions are read by.
    limit: RatePolicy,
}

/// The session statement: one round trip per authenticated request.
///
/// Auth.js: expired when `expires < now` (then deleted); refreshed when
/// `expires - maxAge + updateAge <= now` (then `expires = now + maxAge`).
///
/// Rate limit (GCRA, `api::ratelimit`), only for a live session's user: `$4` the class, `$5` the
/// emission interval T and `$6` the tolerance τ in microseconds. `charged` inserts or advances the
/// bucket only when `max(tat, now) − now ≤ τ` (ON CONFLICT locks the row and judges its latest
/// version, so concurrent requests are serialised); a refusal writes no new `tat`. Only for a
/// refusal (COALESCE evaluates lazily) does the sub-select read the bucket, `FOR UPDATE` so it
/// sees the latest version rather than the statement's snapshot, to say how long to wait. `now()`
/// is one instant for the whole statement. Every function shares this text, so each connection
/// prepares it once.
pub const RESOLVE_SQL: &str = r#"
WITH found AS (
    SELECT id, "userId", expires FROM sessions WHERE "sessionToken" = $1
), expired AS (
    DELETE FROM sessions WHERE id IN (SELECT id FROM found WHERE expires < now()) RETURNING id
), refreshed AS (
    UPDATE sessions SET expires = now() + make_interval(secs => $2)
    WHERE id IN (
        SELECT id FROM found
        WHERE expires >= now()
          AND expires - make_interval(secs => $2) + make_interval(secs => $3) <= now()
    )
    RETURNING id, expires
), charged AS (
    INSERT INTO rate_limits AS l (user_id, class, tat)
    SELECT "userId", $4, now() + $5 * interval '1 microsecond' FROM found WHERE expires >= now()
    ON CONFLICT (user_id, class) DO UPDATE
        SET tat = greatest(l.tat, now()) + $5 * interval '1 microsecond'
        WHERE greatest(l.tat, now()) - now() <= $6 * interval '1 microsecond'
    RETURNING tat
)
SELECT u.id, u.name, u.email, u.image, u."emailVerified",
       COALESCE(r.expires, f.expires) AS expires, r.id IS NOT NULL AS refreshed,
       c.tat IS NOT NULL AS allowed,
       (extract(epoch FROM COALESCE(c.tat, (
           SELECT l.tat FROM rate_limits l
           WHERE l.user_id = f."userId" AND l.class = $4
           FOR UPDATE
       )) - now()) * 1000000)::int8 AS ahead_us
FROM found f
JOIN users u ON u.id = f."userId"
LEFT JOIN refreshed r ON r.id = f.id
LEFT JOIN charged c ON true
WHERE f.expires >= now()
"#;

impl Sessions {
    /// Sessions read by a function whose requests are limited by `limit`.
    pub fn new(pool: DbPool, settings: SessionSettings, limit: RatePolicy) -> Self {
        Sessions {
            pool,
            settings,
            limit,
        }
    }

    /// The rate limit these sessions check.
    pub fn limit(&self) -> RatePolicy {
        self.limit
    }

    fn policy(&self) -> CookiePolicy {
        if self.settings.secure_cookies_only {
            CookiePolicy::SecureOnly
        } else {
            CookiePolicy::AnyName
        }
    }

    /// The caller's live session, or 401; 429 when the user is over the function's rate limit
    /// (before the handler does anything: nothing is queued or paid for a refused request).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let creds = credentials_under(headers, self.policy()).ok_or(ApiError::Unauthenticated)?;
        let token = creds.token.ok_or(ApiError::Unauthenticated)?;
        let class = self.limit.class.as_str();
        let interval = self.limit.interval_us();
        let tolerance = self.limit.tolerance_us();
        let rows = db::fetch(
            &self.pool,
            RESOLVE_SQL,
            &[
                (&token.expose(), Type::TEXT),
                (&secs(self.settings.max_age), Type::FLOAT8),
                (&secs(self.settings.update_age), Type::FLOAT8),
                (&class, Type::TEXT),
                (&interval, Type::INT8),
                (&tolerance, Type::INT8),
            ],
        )
        .await?;
        let row = rows.first().ok_or(ApiError::Unauthenticated)?;
        let id: UserId = row.get(0);
        let rate = self.limit.status(row.get(7), row.get(8));
        // Outside a request scope (tests calling this directly) there is no log line to fill.
        let _ = REQUEST_USER.try_with(|u| {
            u.set(RequestAuth {
                user: Some(id),
                rate: Some(rate),
            })
        });
        if !rate.allowed {
            return Err(ApiError::RateLimited(rate));
        }
        Ok(Session {
            user: User {
                id: row.get(0),
                name: row.get(1),
                email: row.get(2),
                image: row.get(3),
                email_verified: row.get(4),
            },
            expires: row.get(5),
            refreshed: row.get(6),
            rate,
            secure_only: self.settings.secure_cookies_only,
            source: creds.source,
            token,
        })
    }

    /// Deletes the presented session, whatever its state: signing out twice is not an error.
    /// Returns the cookie to clear, if the token came from one; 401 when nothing was presented.
    pub async fn sign_out(&self, headers: &HeaderMap) -> Result<Option<&'static str>, ApiError> {
        let creds = credentials_under(headers, self.policy()).ok_or(ApiError::Unauthenticated)?;
        if let Some(token) = &creds.token {
            db::fetch(
                &self.pool,
                r#"DELETE FROM sessions WHERE "sessionToken" = $1"#,
                &[(&token.expose(), Type::TEXT)],
            )
            .await?;
        }
        Ok(match creds.source {
            TokenSource::Cookie(name) => Some(name),
            TokenSource::Bearer => None,
        })
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn secure_authjs_cookie_wins_over_the_others_in_any_order() {
        let h = headers(&[(
            "cookie",
            "next-auth.session-token=old; theme=dark; __Secure-authjs.session-token=abc-123; authjs.session-token=plain",
        )]);
        let c = credentials(&h).unwrap();
        assert_eq!(
            c.source,
            TokenSource::Cookie("__Secure-authjs.session-token")
        );
        assert_eq!(c.token.unwrap().expose(), "abc-123");
    }

    #[test]
    fn a_deployed_policy_reads_only_the_secure_cookie_names() {
        let plain = headers(&[(
            "cookie",
            "authjs.session-token=plain; next-auth.session-token=old",
        )]);
        assert!(credentials_under(&plain, CookiePolicy::SecureOnly).is_none());
        assert!(credentials_under(&plain, CookiePolicy::AnyName).is_some());
        let both = headers(&[(
            "cookie",
            "authjs.session-token=plain; __Secure-next-auth.session-token=v4",
        )]);
        let c = credentials_under(&both, CookiePolicy::SecureOnly).unwrap();
        assert_eq!(
            c.source,
            TokenSource::Cookie("__Secure-next-auth.session-token")
        );
        assert_eq!(c.token.unwrap().expose(), "v4");
        let bearer = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(
            credentials_under(&bearer, CookiePolicy::SecureOnly)
                .unwrap()
                .source,
            TokenSource::Bearer
        );
    }

    #[test]
    fn cookies_split_over_several_headers_are_all_read() {
        let h = headers(&[("cookie", "a=1"), ("cookie", "authjs.session-token=tok")]);
        assert_eq!(credentials(&h).unwrap().token.unwrap().expose(), "tok");
    }

    #[test]
    fn malformed_cookie_headers_are_survived() {
        let h = headers(&[(
            "cookie",
            ";;=;junk; =x; authjs.session-token ; authjs.session-token=ok;",
        )]);
        assert_eq!(credentials(&h).unwrap().token.unwrap().expose(), "ok");
        assert!(credentials(&headers(&[("cookie", "junk;;;")])).is_none());
    }

    #[test]
    fn bearer_tokens_are_read_and_take_precedence() {
        let h = headers(&[
            ("authorization", "Bearer 1a2b"),
            ("cookie", "authjs.session-token=c"),
        ]);
        let c = credentials(&h).unwrap();
        assert_eq!(c.source, TokenSource::Bearer);
        assert_eq!(c.token.unwrap().expose(), "1a2b");
        let basic = credentials(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])).unwrap();
        assert!(basic.token.is_none());
    }

    #[test]
    fn tokens_outside_the_token68_alphabet_are_refused_before_the_database() {
        for bad in [
            "",
            "' OR 1=1 --",
            "a b",
            "tok;en",
            &"x".repeat(256),
            "ünïcode",
        ] {
            assert!(SessionToken::parse(bad).is_none(), "{bad:?}");
        }
        assert!(SessionToken::parse("6f1c2d7e-8a9b-4c3d-9e8f-7a6b5c4d3e2f").is_some());
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = SessionToken::parse("super-secret").unwrap();
        assert!(!format!("{t:?}").contains("super-secret"));
    }

    #[test]
    fn clearing_cookie_expires_immediately_and_keeps_the_prefix_rules() {
        let c = clearing_cookie("__Secure-authjs.session-token");
        let s = c.to_str().unwrap();
        assert!(s.starts_with("__Secure-authjs.session-token=;"));
        assert!(s.contains("Max-Age=0") && s.contains("Secure") && s.contains("Path=/"));
        assert!(
            !clearing_cookie("authjs.session-token")
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }
}
