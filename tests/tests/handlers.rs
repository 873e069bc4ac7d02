//! Handler tests: real API Gateway v2 events through the functions' handlers, against real PostgreSQL.

use parley_tests::{Answer, Event, TestDb, dead_database_url, settings_with};
use shared::App;

async fn me(app: &App, event: Event) -> Answer {
    Answer::from_response(
        app.http
            .serve(event.request(), |req| me::handle(app, req))
            .await
            .unwrap(),
    )
}

async fn sign_out(app: &App, event: Event) -> Answer {
    Answer::from_response(
        app.http
            .serve(event.request(), |req| sign_out::handle(app, req))
            .await
            .unwrap(),
    )
}

async fn health(app: &App, event: Event) -> Answer {
    Answer::from_response(
        app.http
            .serve(event.request(), |req| health::handle(app, req))
            .await
            .unwrap(),
    )
}

/// `me`'s policy: a read-only function, so a cookie GET needs no Origin (sign-out's writes still do).
fn app(db: &TestDb) -> App {
    App::from_settings(me::FUNCTION, db.settings(&[]))
}

#[tokio::test]
async fn health_reports_the_database_and_version() {
    let db = TestDb::create().await;
    let answer = health(&app(&db), Event::new("GET", "/health")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "ok");
    assert_eq!(answer.body["checks"]["database"], "ok");
    assert_eq!(answer.body["version"], env!("CARGO_PKG_VERSION"));
    db.drop_db().await;
}

#[tokio::test]
async fn health_is_503_without_leaking_the_url_when_the_database_is_down() {
    let url = dead_database_url();
    let app = App::from_settings(
        "health",
        settings_with(&url, &[("DB_CONNECT_TIMEOUT_MS", "500")]),
    );
    let started = std::time::Instant::now();
    let answer = health(&app, Event::new("GET", "/health")).await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    answer.assert_problem(503, "service-unavailable");
    assert_eq!(answer.header("retry-after"), Some("2"));
    let text = answer.body.to_string();
    assert!(
        !text.contains("not-a-real-password") && !text.contains("127.0.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn me_is_503_with_no_stack_trace_when_the_database_is_down() {
    let app = App::from_settings(
        "me",
        settings_with(&dead_database_url(), &[("DB_CONNECT_TIMEOUT_MS", "500")]),
    );
    let answer = me(
        &app,
        Event::new("GET", "/api/me").cookie("authjs.session-token=6f1c2d7e-8a9b"),
    )
    .await;
    answer.assert_problem(503, "service-unavailable");
    assert_eq!(
        answer.body["detail"],
        "a dependency is unavailable; retry shortly"
    );
}

#[tokio::test]
async fn me_returns_the_user_and_session_for_a_cookie_session() {
    let db = TestDb::create().await;
    let (user, token) = db.session("ada@example.com", 30 * 24 * 3600 - 60).await;
    let answer = me(
        &app(&db),
        Event::new("GET", "/api/me").cookie(&format!("authjs.session-token={token}")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["user"]["id"], user.to_string());
    assert_eq!(answer.body["user"]["email"], "ada@example.com");
    assert_eq!(answer.body["user"]["name"], "Test User");
    assert_eq!(answer.body["user"]["image"], "https://example.com/a.png");
    assert!(answer.body["user"]["email_verified"].is_string());
    assert!(
        answer.body["session"]["expires"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert!(
        answer
            .header("strict-transport-security")
            .unwrap()
            .starts_with("max-age=")
    );
    // Updated a minute ago, well inside updateAge: no refresh, no cookie.
    assert!(answer.header("set-cookie").is_none());
    db.drop_db().await;
}

#[tokio::test]
async fn me_accepts_every_auth_js_cookie_name_and_bearer_tokens() {
    let db = TestDb::create().await;
    let app = app(&db);
    for name in shared::api::auth::SESSION_COOKIES {
        let (_, token) = db
            .session(&format!("{name}@example.com"), 3600 * 24 * 29 + 3000)
            .await;
        let answer = me(
            &app,
            Event::new("GET", "/api/me")
                .cookie("theme=dark")
                .cookie(&format!("{name}={token}")),
        )
        .await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(answer.body["user"]["email"], format!("{name}@example.com"));
    }
    let (_, token) = db.session("bearer@example.com", 3600).await;
    let answer = me(
        &app,
        Event::new("GET", "/api/me").header("authorization", &format!("Bearer {token}")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["user"]["email"], "bearer@example.com");
    db.drop_db().await;
}

#[tokio::test]
async fn me_refuses_missing_unknown_garbage_and_sql_looking_tokens() {
    let db = TestDb::create().await;
    let app = app(&db);
    let cases = [
        Event::new("GET", "/api/me"),
        Event::new("GET", "/api/me")
            .cookie("authjs.session-token=6f1c2d7e-8a9b-4c3d-9e8f-7a6b5c4d3e2f"),
        Event::new("GET", "/api/me").cookie("authjs.session-token=%00%ff garbage"),
        Event::new("GET", "/api/me").cookie("authjs.session-token=' OR '1'='1"),
        Event::new("GET", "/api/me").header("authorization", "Bearer x'; DROP TABLE sessions; --"),
        Event::new("GET", "/api/me").header("authorization", "Basic dXNlcjpwYXNz"),
        Event::new("GET", "/api/me").header("cookie", ";;;=;==; authjs.session-token"),
    ];
    for event in cases {
        me(&app, event).await.assert_problem(401, "unauthenticated");
    }
    let tables: i64 = db
        .client
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the sessions table survived");
    db.drop_db().await;
}

#[tokio::test]
async fn an_expired_session_is_401_and_its_row_is_deleted() {
    let db = TestDb::create().await;
    let (_, token) = db.session("old@example.com", -1).await;
    let answer = me(
        &app(&db),
        Event::new("GET", "/api/me").cookie(&format!("authjs.session-token={token}")),
    )
    .await;
    answer.assert_problem(401, "unauthenticated");
    assert_eq!(db.session_count(&token).await, 0);
    db.drop_db().await;
}

#[tokio::test]
async fn a_session_older_than_update_age_slides_forward_and_resets_the_cookie() {
    let db = TestDb::create().await;
    // 29 days left of 30: a day has passed since the last update, so Auth.js would refresh it.
    let (_, token) = db.session("slide@example.com", 29 * 24 * 3600 - 60).await;
    let answer = me(
        &app(&db),
        Event::new("GET", "/api/me").cookie(&format!("__Secure-authjs.session-token={token}")),
    )
    .await;
    assert_eq!(answer.status, 200);
    let left = db.seconds_left(&token).await;
    assert!(
        (30.0 * 86400.0 - left).abs() < 30.0,
        "expiry now {left} s away"
    );
    let cookie = answer.header("set-cookie").expect("refreshed cookie");
    assert!(
        cookie.starts_with(&format!("__Secure-authjs.session-token={token};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax")
    );
    db.drop_db().await;
}

#[tokio::test]
async fn session_ages_are_configurable() {
    let db = TestDb::create().await;
    let app = App::from_settings(
        "me",
        db.settings(&[
            ("SESSION_MAX_AGE_SECONDS", "3600"),
            ("SESSION_UPDATE_AGE_SECONDS", "60"),
        ]),
    );
    let (_, token) = db.session("short@example.com", 3000).await;
    let answer = me(
        &app,
        Event::new("GET", "/api/me").header("authorization", &format!("Bearer {token}")),
    )
    .await;
    assert_eq!(answer.status, 200);
    let left = db.seconds_left(&token).await;
    assert!((3600.0 - left).abs() < 30.0, "expiry now {left} s away");
    db.drop_db().await;
}

#[tokio::test]
async fn sign_out_deletes_the_session_and_clears_the_cookie() {
    let db = TestDb::create().await;
    let app = app(&db);
    let (_, token) = db.session("bye@example.com", 3600).await;
    let event = Event::new("POST", "/api/auth/sign-out")
        .header("origin", "http://localhost:3000")
        .cookie(&format!("authjs.session-token={token}"));
    let answer = sign_out(&app, event).await;
    assert_eq!(answer.status, 204);
    let cookie = answer.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("authjs.session-token=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(db.session_count(&token).await, 0);
    // The session is gone for /api/me too, and signing out again is harmless.
    me(
        &app,
        Event::new("GET", "/api/me").cookie(&format!("authjs.session-token={token}")),
    )
    .await
    .assert_problem(401, "unauthenticated");
    let again = Event::new("POST", "/api/auth/sign-out")
        .header("origin", "http://localhost:3000")
        .cookie(&format!("authjs.session-token={token}"));
    assert_eq!(sign_out(&app, again).await.status, 204);
    db.drop_db().await;
}

#[tokio::test]
async fn cookie_sign_out_without_an_allowed_origin_is_refused_as_csrf() {
    let db = TestDb::create().await;
    let app = app(&db);
    let (_, token) = db.session("csrf@example.com", 3600).await;
    for origin in [None, Some("https://evil.example"), Some("null")] {
        let mut event = Event::new("POST", "/api/auth/sign-out")
            .cookie(&format!("authjs.session-token={token}"));
        if let Some(origin) = origin {
            event = event.header("origin", origin);
        }
        let answer = sign_out(&app, event).await;
        answer.assert_problem(403, "forbidden");
        assert!(answer.header("access-control-allow-origin").is_none());
    }
    assert_eq!(
        db.session_count(&token).await,
        1,
        "the session must survive a forged sign-out"
    );
    // A bearer token is not sent by browsers on their own, so it needs no Origin.
    let answer = sign_out(
        &app,
        Event::new("POST", "/api/auth/sign-out")
            .header("authorization", &format!("Bearer {token}")),
    )
    .await;
    assert_eq!(answer.status, 204);
    assert!(answer.header("set-cookie").is_none());
    assert_eq!(db.session_count(&token).await, 0);
    sign_out(&app, Event::new("POST", "/api/auth/sign-out"))
        .await
        .assert_problem(401, "unauthenticated");
    db.drop_db().await;
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_refused_before_the_handler() {
    let db = TestDb::create().await;
    let app = app(&db);
    let (_, token) = db.session("body@example.com", 3600).await;
    let bearer = format!("Bearer {token}");
    let big = vec![b'a'; 10 * 1024 * 1024];
    let answer = sign_out(
        &app,
        Event::new("POST", "/api/auth/sign-out")
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .base64_body(&big),
    )
    .await;
    answer.assert_problem(413, "payload-too-large");
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let answer = sign_out(
            &app,
            Event::new("POST", "/api/auth/sign-out")
                .header("authorization", &bearer)
                .header("content-type", content_type)
                .body("a=b"),
        )
        .await;
        answer.assert_problem(415, "unsupported-media-type");
    }
    assert_eq!(
        db.session_count(&token).await,
        1,
        "a refused request changes nothing"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let db = TestDb::create().await;
    let app = App::from_settings(
        "me",
        db.settings(&[("CORS_ORIGINS", "https://app.example.com")]),
    );
    let preflight = |origin: &str| {
        Event::new("OPTIONS", "/api/me")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
    };
    let answer = me(&app, preflight("https://app.example.com")).await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        answer
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(answer.header("vary"), Some("Origin"));

    let answer = me(&app, preflight("http://localhost:3000")).await;
    answer.assert_problem(403, "forbidden");
    assert!(answer.header("access-control-allow-origin").is_none());
    db.drop_db().await;
}

#[tokio::test]
async fn a_recorded_api_gateway_event_resolves_through_me() {
    let db = TestDb::create().await;
    let (_, token) = db.session("fixture@example.com", 3600).await;
    let fixture = std::fs::read_to_string(
        parley_tests::workspace_root().join("tests/fixtures/apigw-v2-get-me.json"),
    )
    .unwrap();
    let request = lambda_http::request::from_str(&fixture.replace("{{TOKEN}}", &token)).unwrap();
    let app = app(&db);
    let answer = Answer::from_response(
        app.http
            .serve(request, |req| me::handle(&app, req))
            .await
            .unwrap(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["user"]["email"], "fixture@example.com");
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    db.drop_db().await;
}
