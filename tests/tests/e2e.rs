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

#[tokio::test]
async fn a_recording_round_trips_through_the_real_binaries() {
    let db = parley_tests::TestDb::create().await;
    let moto = parley_tests::Moto::start().await;
    let r2 = moto.bucket_env().await;
    let mut env = parley_tests::borrow(&r2);
    env.push(("DATABASE_URL", db.url.as_str()));
    let watch = Watch::start(&env).await;
    let http = reqwest::Client::new();
    let alice = authjs(
        &db.url,
        &["create-session", "--email", "alice-e2e@example.com"],
    );
    let bob = authjs(
        &db.url,
        &["create-session", "--email", "bob-e2e@example.com"],
    );
    let cookie = |who: &Value| {
        format!(
            "authjs.session-token={}",
            who["session_token"].as_str().unwrap()
        )
    };
    let origin = "http://localhost:3000";
    let wav = shared::audio::silent_wav(0.75, 16000);

    let created = http
        .post(watch.url("/api/recordings/uploads"))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .json(&serde_json::json!({"content_type": "audio/wav", "size_bytes": wav.len(), "file_name": "hello.wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["recording"]["id"].as_str().unwrap().to_owned();
    let upload = &created["upload"];
    let mut put = http.put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    assert!(
        put.body(wav.clone())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    let done = http
        .post(watch.url(&format!("/api/recordings/{id}/complete")))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["recording"]["status"], "ready");
    assert_eq!(done["recording"]["duration_seconds"], 0.75);

    let list: Value = http
        .get(watch.url("/api/recordings?limit=5"))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], id.as_str());
    let bobs: Value = http
        .get(watch.url("/api/recordings"))
        .header("cookie", cookie(&bob))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["items"], serde_json::json!([]));
    let peek = http
        .get(watch.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), 404);

    let got: Value = http
        .get(watch.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = reqwest::get(got["recording"]["download_url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), wav);

    let gone = http
        .delete(watch.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let after = http
        .get(watch.url(&format!("/api/recordings/{id}")))
        .header("cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 404);
    drop(watch);
    drop(moto);
    db.drop_db().await;
}
