//! End to end: the real binaries under `cargo lambda watch`, sessions made by the real Auth.js adapter.

use parley_tests::{TestDb, Watch, authjs};
use serde_json::Value;

#[tokio::test]
async fn the_api_serves_health_me_and_sign_out_for_auth_js_sessions() {
    let db = TestDb::create().await;
    let watch = Watch::start(&[("DATABASE_URL", db.url.as_str()), ("PARLEY_STAGE", "local")]).await;
    let http = reqwest::Client::new();

    let health = http.get(watch.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");

    // A session created by @auth/pg-adapter, exactly as the Next.js app would.
    let made = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "interop@example.com",
            "--name",
            "Interop",
        ],
    );
    let token = made["session_token"].as_str().unwrap();
    let cookie = format!("authjs.session-token={token}");
    let me = http
        .get(watch.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["user"]["id"], made["user_id"]);
    assert_eq!(body["user"]["email"], "interop@example.com");
    assert_eq!(body["user"]["name"], "Interop");

    // The same token as a bearer (what a Next.js server forwards).
    let bearer = http
        .get(watch.url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    // An adapter session that has expired is refused, and deleted as Auth.js would.
    let expired = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "late@example.com",
            "--expires-in-seconds",
            "-60",
        ],
    );
    let late = expired["session_token"].as_str().unwrap();
    let refused = http
        .get(watch.url("/api/me"))
        .header("cookie", format!("authjs.session-token={late}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        authjs(&db.url, &["get-session", "--token", late])["session"],
        Value::Null
    );

    // A forged token is 401 too.
    let forged = http
        .get(watch.url("/api/me"))
        .header("cookie", "authjs.session-token=forged-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Sign out: CSRF-checked, deletes the row the adapter sees, clears the cookie.
    let csrf = http
        .post(watch.url("/api/auth/sign-out"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(csrf.status(), 403);
    let out = http
        .post(watch.url("/api/auth/sign-out"))
        .header("cookie", &cookie)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        authjs(&db.url, &["get-session", "--token", token])["session"],
        Value::Null
    );
    let after = http
        .get(watch.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    drop(watch);
    db.drop_db().await;
}

#[tokio::test]
async fn a_session_refreshed_by_the_api_is_seen_by_the_adapter() {
    let db = TestDb::create().await;
    let watch = Watch::start(&[("DATABASE_URL", db.url.as_str())]).await;
    // 29 days left: the API slides it to 30, and Auth.js reads the new expiry from the same row.
    let made = authjs(
        &db.url,
        &[
            "create-session",
            "--email",
            "slide@example.com",
            "--expires-in-seconds",
            "2505600",
        ],
    );
    let token = made["session_token"].as_str().unwrap();
    let me = reqwest::Client::new()
        .get(watch.url("/api/me"))
        .header("cookie", format!("authjs.session-token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.headers().get("set-cookie").is_some());
    let seen = authjs(&db.url, &["get-session", "--token", token]);
    let expires = time::OffsetDateTime::parse(
        seen["session"]["expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((2_592_000 - left).abs() < 60, "adapter sees {left} s left");
    drop(watch);
    db.drop_db().await;
}
