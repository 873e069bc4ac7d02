//! Recordings against real PostgreSQL and moto_server (S3), with real HTTP PUT and GET of the presigned
//! URLs and real API Gateway v2 events through the handlers.

use std::collections::HashSet;

use parley_tests::{Answer, Event, Moto, TestDb, TestStack, bearer};
use serde_json::{Value, json};
use shared::App;
use shared::domain::recordings::Recordings;
use shared::platform::idempotency::Idempotency;

struct Ctx {
    db: TestDb,
    app: App,
    recordings: Recordings,
    _moto: Moto,
}

impl Ctx {
    /// Whether R2 (moto) holds the object a presigned URL points at, asked through the S3 API.
    async fn object_exists(&self, url: &str) -> bool {
        let storage =
            shared::platform::storage::Storage::new(self.app.settings.storage.as_ref().unwrap());
        let path = url.split('?').next().unwrap();
        let key = path
            .split_once(&format!("/{}/", storage.bucket()))
            .unwrap()
            .1;
        storage.head(key).await.unwrap().is_some()
    }
}

async fn ctx(extra: &[(&'static str, &str)]) -> Ctx {
    let TestStack { db, app, moto, .. } = TestStack::builder("recordings").env(extra).build().await;
    let recordings = app.recording_deletion().expect("storage configured");
    Ctx {
        db,
        app,
        recordings,
        _moto: moto,
    }
}

impl Ctx {
    async fn call(&self, function: &str, event: Event) -> Answer {
        Box::pin(self.call_unboxed(function, event)).await
    }

    async fn call_unboxed(&self, function: &str, event: Event) -> Answer {
        let req = event.request();
        let app = &self.app;
        let r = &self.recordings;
        let response = match function {
            "upload" => {
                app.http
                    .serve(req, |req| recordings_upload::handle(app, r, req))
                    .await
            }
            "complete" => {
                app.http
                    .serve(req, |req| recordings_complete::handle(app, r, req))
                    .await
            }
            "list" => {
                app.http
                    .serve(req, |req| recordings_list::handle(app, r, req))
                    .await
            }
            "get" => {
                app.http
                    .serve(req, |req| recordings_get::handle(app, r, req))
                    .await
            }
            "delete" => {
                app.http
                    .serve(req, |req| recordings_delete::handle(app, r, req))
                    .await
            }
            other => panic!("no function {other}"),
        };
        Answer::from_response(response.unwrap())
    }

    async fn upload(&self, token: &str, body: Value) -> Answer {
        self.call(
            "upload",
            Event::new("POST", "/api/recordings/uploads")
                .header("authorization", &bearer(token))
                .header("content-type", "application/json")
                .body(&body.to_string()),
        )
        .await
    }

    async fn on(
        &self,
        function: &str,
        method: &'static str,
        id: &str,
        token: &str,
        suffix: &str,
    ) -> Answer {
        self.call(
            function,
            Event::new(method, &format!("/api/recordings/{id}{suffix}"))
                .path_param("id", id)
                .header("authorization", &bearer(token)),
        )
        .await
    }

    async fn list(&self, token: &str, query: &str) -> Answer {
        self.call(
            "list",
            Event::new("GET", "/api/recordings")
                .query(query)
                .header("authorization", &bearer(token)),
        )
        .await
    }
}

/// PUTs `bytes` exactly as the upload instructions say.
async fn put(upload: &Value, bytes: Vec<u8>) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new().put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    request.body(bytes).send().await.unwrap().status()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

#[tokio::test]
async fn a_wav_goes_up_completes_lists_downloads_byte_for_byte_and_is_deleted() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("rec@example.com", 3600).await;
    let wav = shared::platform::audio::silent_wav(1.5, 8000);

    let created = c
        .upload(&token, json!({"content_type": "audio/wav", "size_bytes": wav.len(), "file_name": "../Monday call.wav"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let recording = &created.body["recording"];
    assert_eq!(recording["status"], "pending_upload");
    assert_eq!(recording["file_name"], "Monday call.wav");
    assert_eq!(recording["declared_size_bytes"], wav.len());
    let id = recording["id"].as_str().unwrap().to_owned();
    let upload = &created.body["upload"];
    assert_eq!(upload["method"], "PUT");
    let url = upload["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/users/{user}/recordings/{id}.wav?")),
        "{url}"
    );
    assert_eq!(upload["headers"]["content-type"], "audio/wav");
    assert_eq!(upload["headers"]["content-length"], wav.len().to_string());
    assert_eq!(upload["headers"]["if-none-match"], "*");

    // The signature pins the type, the length and no-overwrite, and dies within 15 minutes.
    let signed = query_param(url, "X-Amz-SignedHeaders").unwrap();
    for header in ["content-length", "content-type", "host", "if-none-match"] {
        assert!(
            signed.split("%3B").any(|h| h == header),
            "{header} not signed in {signed}"
        );
    }
    let expires: u64 = query_param(url, "X-Amz-Expires").unwrap().parse().unwrap();
    assert!(expires <= 900, "{expires}");
    assert!(query_param(url, "X-Amz-Signature").is_some_and(|s| s.len() == 64));

    assert!(put(upload, wav.clone()).await.is_success());
    let done = c.on("complete", "POST", &id, &token, "/complete").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["recording"]["status"], "ready");
    assert_eq!(done.body["recording"]["size_bytes"], wav.len());
    assert_eq!(done.body["recording"]["duration_seconds"], 1.5);
    // Completing again is harmless.
    let again = c.on("complete", "POST", &id, &token, "/complete").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["recording"]["status"], "ready");

    let listed = c.list(&token, "").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert_eq!(listed.body["next_cursor"], Value::Null);
    assert!(
        listed.body["items"][0].get("object_key").is_none(),
        "keys stay server-side"
    );

    let got = c.on("get", "GET", &id, &token, "").await;
    assert_eq!(got.status, 200, "{}", got.body);
    let download = got.body["recording"]["download_url"].as_str().unwrap();
    let expires: u64 = query_param(download, "X-Amz-Expires")
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires <= 3600);
    assert!(
        query_param(download, "response-content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let fetched = reqwest::get(download).await.unwrap();
    assert!(fetched.status().is_success());
    assert!(
        fetched.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(
        fetched.bytes().await.unwrap().to_vec(),
        wav,
        "the same bytes come back"
    );

    let deleted = c.on("delete", "DELETE", &id, &token, "").await;
    assert_eq!(deleted.status, 204);
    assert!(!c.object_exists(download).await, "the object is gone");
    c.on("get", "GET", &id, &token, "")
        .await
        .assert_problem(404, "not-found");
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0);
    c.db.drop_db().await;
}

#[tokio::test]
async fn another_users_recordings_are_invisible_on_every_route() {
    let c = ctx(&[]).await;
    let (_, alice) = c.db.session("alice@example.com", 3600).await;
    let (_, bob) = c.db.session("bob@example.com", 3600).await;
    let wav = shared::platform::audio::silent_wav(0.5, 8000);
    let created = c
        .upload(
            &alice,
            json!({"content_type": "audio/wav", "size_bytes": wav.len()}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    assert!(put(&created.body["upload"], wav).await.is_success());

    c.on("complete", "POST", &id, &bob, "/complete")
        .await
        .assert_problem(404, "not-found");
    c.on("get", "GET", &id, &bob, "")
        .await
        .assert_problem(404, "not-found");
    c.on("delete", "DELETE", &id, &bob, "")
        .await
        .assert_problem(404, "not-found");
    assert_eq!(c.list(&bob, "").await.body["items"], json!([]));
    // An id that does not exist at all looks exactly the same.
    let unknown = uuid::Uuid::now_v7().to_string();
    c.on("get", "GET", &unknown, &alice, "")
        .await
        .assert_problem(404, "not-found");
    c.on("get", "GET", "not-a-uuid", &alice, "")
        .await
        .assert_problem(404, "not-found");

    // Alice still has it, untouched.
    assert_eq!(
        c.on("complete", "POST", &id, &alice, "/complete")
            .await
            .body["recording"]["status"],
        "ready"
    );
    // And nobody without a session gets anywhere.
    for (function, method, suffix) in [
        ("complete", "POST", "/complete"),
        ("get", "GET", ""),
        ("delete", "DELETE", ""),
    ] {
        let event =
            Event::new(method, &format!("/api/recordings/{id}{suffix}")).path_param("id", &id);
        c.call(function, event)
            .await
            .assert_problem(401, "unauthenticated");
    }
    c.call("list", Event::new("GET", "/api/recordings"))
        .await
        .assert_problem(401, "unauthenticated");
    c.call(
        "upload",
        Event::new("POST", "/api/recordings/uploads")
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await
    .assert_problem(401, "unauthenticated");
    c.db.drop_db().await;
}

#[tokio::test]
async fn bad_upload_requests_are_refused_naming_the_field() {
    let c = ctx(&[("RECORDING_MAX_BYTES", "1000000")]).await;
    let (_, token) = c.db.session("bad@example.com", 3600).await;
    let cases = [
        (
            json!({"content_type": "text/html", "size_bytes": 10}),
            "content_type",
        ),
        (
            json!({"content_type": "image/svg+xml", "size_bytes": 10}),
            "content_type",
        ),
        (
            json!({"content_type": "audio/wav", "size_bytes": 0}),
            "size_bytes",
        ),
        (
            json!({"content_type": "audio/wav", "size_bytes": 1_000_001}),
            "size_bytes",
        ),
        (
            json!({"content_type": "audio/wav", "size_bytes": 10, "file_name": "../"}),
            "file_name",
        ),
    ];
    for (body, field) in cases {
        let answer = c.upload(&token, body.clone()).await;
        answer.assert_problem(422, "validation-failed");
        assert_eq!(answer.body["errors"][0]["field"], field, "{body}");
    }
    let wrong_type = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": "big"}),
        )
        .await;
    wrong_type.assert_problem(422, "validation-failed");
    assert_eq!(wrong_type.body["errors"][0]["field"], "size_bytes");
    let extra = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": 10, "key": "users/1/x"}),
        )
        .await;
    extra.assert_problem(422, "validation-failed");
    assert_eq!(extra.body["errors"][0]["field"], "key");
    let not_json = c
        .call(
            "upload",
            Event::new("POST", "/api/recordings/uploads")
                .header("authorization", &bearer(&token))
                .header("content-type", "application/json")
                .body("size_bytes=10"),
        )
        .await;
    not_json.assert_problem(400, "malformed-request");
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0, "nothing half-written");
    c.db.drop_db().await;
}

#[tokio::test]
async fn completion_refuses_missing_lying_and_wrongly_sized_uploads() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("liar@example.com", 3600).await;

    // Nothing uploaded yet: 409, and the recording stays pending.
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": 100}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    c.on("complete", "POST", &id, &token, "/complete")
        .await
        .assert_problem(409, "conflict");

    // HTML pretending to be WAV, with the declared size: refused, object deleted, row failed.
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": html.len()}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    let url = created.body["upload"]["url"].as_str().unwrap().to_owned();
    assert!(put(&created.body["upload"], html).await.is_success());
    let refused = c.on("complete", "POST", &id, &token, "/complete").await;
    refused.assert_problem(422, "validation-failed");
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not audio/wav")
    );
    let status: String =
        c.db.client
            .query_one(
                "SELECT status FROM recordings WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(status, "failed");
    assert!(!c.object_exists(&url).await, "the lying object is deleted");
    // Asking again gives the same verdict.
    c.on("complete", "POST", &id, &token, "/complete")
        .await
        .assert_problem(422, "validation-failed");

    // Real audio, but not the size that was declared (moto does not enforce the signed length; R2 does).
    let wav = shared::platform::audio::silent_wav(0.25, 8000);
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": wav.len() + 10}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    let mut upload = created.body["upload"].clone();
    upload["headers"]["content-length"] = json!(wav.len().to_string());
    assert!(put(&upload, wav).await.is_success());
    let refused = c.on("complete", "POST", &id, &token, "/complete").await;
    refused.assert_problem(422, "validation-failed");
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("declared")
    );
    c.db.drop_db().await;
}

#[tokio::test]
async fn pages_walk_every_recording_once_newest_first() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("pages@example.com", 3600).await;
    let (other, other_token) = c.db.session("other@example.com", 3600).await;
    // 25 rows, some sharing a timestamp, so the id tie-break matters.
    c.db.client
        .execute(
            "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes, created_at)
             SELECT gen_random_uuid(), $1::integer, 'users/' || $1::integer || '/recordings/' || g || '.wav', 'ready', 'audio/wav', 10,
                    now() - make_interval(secs => (g / 2)::float8)
             FROM generate_series(1, 25) g",
            &[&user],
        )
        .await
        .unwrap();
    c.db.client
        .execute(
            "INSERT INTO recordings (id, owner_id, object_key, status, content_type, declared_size_bytes)
             VALUES (gen_random_uuid(), $1, 'users/x/other.wav', 'ready', 'audio/wav', 10)",
            &[&other],
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=10&cursor={c}"),
            None => "limit=10".to_owned(),
        };
        let page = c.list(&token, &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        for item in page.body["items"].as_array().unwrap() {
            seen.push((
                item["created_at"].as_str().unwrap().to_owned(),
                item["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    assert_eq!(
        seen.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(),
        25,
        "no duplicates"
    );
    let expected: Vec<String> = c
        .db
        .client
        .query(
            "SELECT id::text FROM recordings WHERE owner_id = $1 ORDER BY created_at DESC, id DESC",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let walked: Vec<String> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(walked, expected, "newest first, no gaps");

    // Defaults and caps.
    assert_eq!(
        c.list(&token, "").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        c.list(&token, "limit=1000").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        25
    );
    for bad in ["limit=0", "limit=-3", "limit=ten"] {
        c.list(&token, bad)
            .await
            .assert_problem(422, "validation-failed");
    }
    // A tampered cursor, or one issued to someone else, is refused.
    let first = c.list(&token, "limit=5").await.body["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered = first.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    c.list(&token, &format!("cursor={tampered}"))
        .await
        .assert_problem(422, "validation-failed");
    let stolen = c.list(&other_token, &format!("cursor={first}")).await;
    stolen.assert_problem(422, "validation-failed");
    assert_eq!(stolen.body["errors"][0]["field"], "cursor");
    c.db.drop_db().await;
}

#[tokio::test]
async fn the_sweeper_removes_abandoned_uploads_and_finishes_refused_deletions() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("sweep@example.com", 3600).await;
    let wav = shared::platform::audio::silent_wav(0.2, 8000);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = c
            .upload(
                &token,
                json!({"content_type": "audio/wav", "size_bytes": wav.len()}),
            )
            .await;
        assert!(put(&created.body["upload"], wav.clone()).await.is_success());
        ids.push((
            created.body["recording"]["id"].as_str().unwrap().to_owned(),
            created.body["upload"]["url"]
                .as_str()
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .to_owned(),
        ));
    }
    // First: abandoned a day ago. Second: fresh, pending. Third: its DELETE found R2 down.
    c.db.client
        .execute("UPDATE recordings SET created_at = now() - interval '25 hours' WHERE id = $1::text::uuid", &[&ids[0].0])
        .await
        .unwrap();
    c.db.client
        .execute(
            "UPDATE recordings SET status = 'deleted' WHERE id = $1::text::uuid",
            &[&ids[2].0],
        )
        .await
        .unwrap();

    let event = lambda_runtime::LambdaEvent::new(
        json!({"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
               "source": "aws.events", "account": "123456789012", "time": "2026-11-22T04:00:00Z",
               "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/parley-sweeper"], "detail": {}}),
        lambda_runtime::Context::default(),
    );
    let report = recordings_sweeper::handle(&c.recordings, event)
        .await
        .unwrap();
    assert_eq!(report.abandoned_removed, 1);
    assert_eq!(report.deletions_completed, 1);
    assert_eq!(report.failures, 0);

    let left: Vec<String> =
        c.db.client
            .query("SELECT id::text FROM recordings", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(left, vec![ids[1].0.clone()]);
    assert!(!c.object_exists(&ids[0].1).await);
    assert!(
        c.object_exists(&ids[1].1).await,
        "the fresh upload is untouched"
    );
    assert!(!c.object_exists(&ids[2].1).await);
    c.db.drop_db().await;
}

#[tokio::test]
async fn a_delete_that_r2_refuses_hides_the_row_and_leaves_it_for_the_sweeper() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("down@example.com", 3600).await;
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": 44}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();

    // The same database, but R2 unreachable.
    let dead = App::from_settings(
        "recordings-delete",
        c.db.settings(&[
            (
                "R2_ENDPOINT",
                &format!("http://127.0.0.1:{}", parley_tests::free_port()),
            ),
            ("R2_BUCKET_NAME", "gone"),
            ("R2_ACCESS_KEY_ID", "x"),
            ("R2_SECRET_ACCESS_KEY", "y"),
        ]),
    );
    let dead_recordings = dead.recording_deletion().unwrap();
    let event = Event::new("DELETE", &format!("/api/recordings/{id}"))
        .path_param("id", &id)
        .header("authorization", &bearer(&token));
    let answer = Answer::from_response(
        dead.http
            .serve(event.request(), |req| {
                recordings_delete::handle(&dead, &dead_recordings, req)
            })
            .await
            .unwrap(),
    );
    answer.assert_problem(503, "service-unavailable");
    let status: String =
        c.db.client
            .query_one(
                "SELECT status FROM recordings WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(status, "deleted", "marked for deletion, not orphaned");
    c.on("get", "GET", &id, &token, "")
        .await
        .assert_problem(404, "not-found");
    // Retrying the DELETE once R2 is back finishes the job.
    assert_eq!(c.on("delete", "DELETE", &id, &token, "").await.status, 204);
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0);
    c.db.drop_db().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_upload_and_refuses_a_different_body() {
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("idem@example.com", 3600).await;
    let body = json!({"content_type": "audio/wav", "size_bytes": 44});
    let send = |body: Value, key: &'static str| {
        Event::new("POST", "/api/recordings/uploads")
            .header("authorization", &bearer(&token))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(&body.to_string())
    };
    let first = c.call("upload", send(body.clone(), "upload-1")).await;
    assert_eq!(first.status, 201);
    let again = c.call("upload", send(body.clone(), "upload-1")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["recording"]["id"], first.body["recording"]["id"]);
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 1, "one recording for two deliveries");

    let other = c
        .call(
            "upload",
            send(
                json!({"content_type": "audio/wav", "size_bytes": 45}),
                "upload-1",
            ),
        )
        .await;
    other.assert_problem(422, "validation-failed");
    assert_eq!(other.body["errors"][0]["field"], "Idempotency-Key");

    // While the first request with a key is still running, a repeat is 409.
    let idem = Idempotency::new(c.app.db.clone(), shared::platform::idempotency::DEFAULT_TTL);
    let scope = format!("recordings-upload:{user}");
    let _running = idem.claim(&scope, "upload-2", &body, 0).await.unwrap();
    c.call("upload", send(body.clone(), "upload-2"))
        .await
        .assert_problem(409, "conflict");

    // A failed request releases its key: the retry runs for real.
    let bad = c
        .call(
            "upload",
            send(
                json!({"content_type": "text/html", "size_bytes": 44}),
                "upload-3",
            ),
        )
        .await;
    bad.assert_problem(422, "validation-failed");
    let fixed = c
        .call(
            "upload",
            send(
                json!({"content_type": "text/html", "size_bytes": 44}),
                "upload-3",
            ),
        )
        .await;
    fixed.assert_problem(422, "validation-failed");
    assert!(
        fixed.header("idempotent-replayed").is_none(),
        "failures are not stored"
    );
    c.call("upload", send(body, "bad key with spaces"))
        .await
        .assert_problem(400, "malformed-request");
    c.db.drop_db().await;
}

/// One sweeper run; boxed, so a long test does not hold the run's state on its stack.
async fn sweep(c: &Ctx) -> shared::domain::recordings::SweepReport {
    Box::pin(recordings_sweeper::handle(
        &c.recordings,
        parley_tests::events::scheduled(),
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_refused_upload_put_again_is_swept_until_its_url_has_expired() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("reupload@example.com", 3600).await;
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": html.len()}),
        )
        .await;
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    let upload = created.body["upload"].clone();
    let url = upload["url"].as_str().unwrap().to_owned();
    assert!(put(&upload, html.clone()).await.is_success());
    c.on("complete", "POST", &id, &token, "/complete")
        .await
        .assert_problem(422, "validation-failed");
    assert!(!c.object_exists(&url).await);

    // The presigned PUT is still valid: the same bytes go up again, after the refusal.
    assert!(put(&upload, html.clone()).await.is_success());
    assert!(c.object_exists(&url).await);
    let report = sweep(&c).await;
    assert_eq!(report.failed_objects_removed, 1, "{report:?}");
    assert!(!c.object_exists(&url).await, "the re-upload is swept");

    // While the URL lives, every sweep clears again: a third PUT is swept too.
    assert!(put(&upload, html.clone()).await.is_success());
    assert_eq!(sweep(&c).await.failed_objects_removed, 1);
    assert!(!c.object_exists(&url).await);

    // The URL expired after the last clearing: one more clearing, which catches a PUT made just
    // before the expiry, and then the recording is done with.
    c.db.client
        .execute(
            "UPDATE recordings SET upload_expires_at = now() - interval '1 minute',
                    object_cleared_at = now() - interval '2 minutes'
             WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert!(put(&upload, html.clone()).await.is_success());
    assert_eq!(sweep(&c).await.failed_objects_removed, 1);
    assert!(!c.object_exists(&url).await);
    let after = sweep(&c).await;
    assert_eq!(
        after.failed_objects_removed, 0,
        "nothing can arrive any more"
    );
    assert_eq!(after.failures, 0);
    c.db.drop_db().await;
}

#[tokio::test]
async fn only_a_ready_recording_offers_a_download_link() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("links@example.com", 3600).await;
    // Pending: nothing uploaded yet.
    let pending = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": 100}),
        )
        .await;
    let pending_id = pending.body["recording"]["id"].as_str().unwrap().to_owned();
    let got = c.on("get", "GET", &pending_id, &token, "").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["recording"]["status"], "pending_upload");
    assert_eq!(got.body["recording"]["download_url"], Value::Null);
    assert_eq!(got.body["recording"]["download_expires_at"], Value::Null);

    // Refused: the bytes lied about their type.
    let html = b"<html>not audio</html>".to_vec();
    let refused = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": html.len()}),
        )
        .await;
    let refused_id = refused.body["recording"]["id"].as_str().unwrap().to_owned();
    assert!(put(&refused.body["upload"], html).await.is_success());
    c.on("complete", "POST", &refused_id, &token, "/complete")
        .await
        .assert_problem(422, "validation-failed");
    let got = c.on("get", "GET", &refused_id, &token, "").await;
    assert_eq!(got.body["recording"]["status"], "failed");
    assert_eq!(got.body["recording"]["download_url"], Value::Null);

    // Ready: the link is there and works.
    let wav = shared::platform::audio::silent_wav(0.2, 8000);
    let ready = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": wav.len()}),
        )
        .await;
    let ready_id = ready.body["recording"]["id"].as_str().unwrap().to_owned();
    assert!(put(&ready.body["upload"], wav).await.is_success());
    assert_eq!(
        c.on("complete", "POST", &ready_id, &token, "/complete")
            .await
            .status,
        200
    );
    let got = c.on("get", "GET", &ready_id, &token, "").await;
    let link = got.body["recording"]["download_url"].as_str().unwrap();
    assert!(reqwest::get(link).await.unwrap().status().is_success());
    assert!(got.body["recording"]["download_expires_at"].is_string());
    c.db.drop_db().await;
}

#[tokio::test]
async fn a_replay_after_the_upload_url_expired_gets_a_fresh_url_for_the_same_recording() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("stale@example.com", 3600).await;
    let wav = shared::platform::audio::silent_wav(0.2, 8000);
    let body = json!({"content_type": "audio/wav", "size_bytes": wav.len()});
    let send = || {
        Event::new("POST", "/api/recordings/uploads")
            .header("authorization", &bearer(&token))
            .header("content-type", "application/json")
            .header("idempotency-key", "stale-1")
            .body(&body.to_string())
    };
    let first = c.call("upload", send()).await;
    assert_eq!(first.status, 201);
    let id = first.body["recording"]["id"].as_str().unwrap().to_owned();
    // A fresh replay hands back the stored answer as it is.
    let fresh = c.call("upload", send()).await;
    assert_eq!(fresh.body["upload"], first.body["upload"]);

    // The stored URL has expired (the record outlives it by days).
    let expire_stored = "UPDATE idempotency_records
         SET response = jsonb_set(response, '{body,upload,expires_at}', '\"2026-01-01T00:00:00Z\"')";
    c.db.client.execute(expire_stored, &[]).await.unwrap();
    let replay = c.call("upload", send()).await;
    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replay.body["recording"]["id"],
        id.as_str(),
        "the same recording"
    );
    let expires_at = time::OffsetDateTime::parse(
        replay.body["upload"]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expires_at > time::OffsetDateTime::now_utc() + time::Duration::minutes(10));
    let url = replay.body["upload"]["url"].as_str().unwrap();
    assert!(url.contains(&format!("/recordings/{id}.wav?")), "{url}");
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 1, "no second recording");
    // The fresh URL works and the recording completes.
    assert!(put(&replay.body["upload"], wav).await.is_success());
    let done = c.on("complete", "POST", &id, &token, "/complete").await;
    assert_eq!(done.status, 200, "{}", done.body);

    // Once uploaded, a stale replay gets a clear 409, never a dead link.
    c.db.client.execute(expire_stored, &[]).await.unwrap();
    let late = c.call("upload", send()).await;
    late.assert_problem(409, "conflict");
    assert!(
        late.body["detail"]
            .as_str()
            .unwrap()
            .contains("already uploaded"),
        "{}",
        late.body
    );
    c.db.drop_db().await;
}

#[tokio::test]
async fn a_signed_cursor_with_an_extreme_time_is_a_422_not_a_500() {
    use shared::domain::paging::{Cursors, Position};
    let c = ctx(&[]).await;
    let (user, token) = c.db.session("cursor@example.com", 3600).await;
    // Signed with the stage's own key, as the hostile client did with the local one.
    let cursors = Cursors::new(c.app.settings.require_cursor_key().unwrap(), "recordings");
    for year in [-5000, 1] {
        let created_at = time::Date::from_calendar_date(year, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc();
        let cursor = cursors.encode(
            shared::domain::UserId::new(user),
            Position {
                created_at,
                id: uuid::Uuid::now_v7(),
            },
        );
        let answer = c.list(&token, &format!("cursor={cursor}")).await;
        answer.assert_problem(422, "validation-failed");
        assert_eq!(answer.body["errors"][0]["field"], "cursor");
    }
    c.db.drop_db().await;
}

#[tokio::test]
async fn a_json_array_is_not_an_upload_request() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("array@example.com", 3600).await;
    // The hostile client's body: serde would read a struct from it by position.
    let answer = c
        .upload(&token, json!(["audio/wav", 1000, "array.wav"]))
        .await;
    answer.assert_problem(422, "validation-failed");
    assert_eq!(answer.body["errors"][0]["field"], "body");
    let rows: i64 =
        c.db.client
            .query_one("SELECT count(*) FROM recordings", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 0, "nothing was created");
    c.db.drop_db().await;
}

#[tokio::test]
async fn a_forged_header_never_stretches_the_duration_past_what_the_file_holds() {
    let c = ctx(&[]).await;
    let (_, token) = c.db.session("forged-header@example.com", 3600).await;
    // 44 bytes whose header claims 4,294,967,295 data bytes at 1 byte a second.
    let mut wav = shared::platform::audio::silent_wav(0.0, 8000);
    wav.truncate(44);
    wav[28..32].copy_from_slice(&1u32.to_le_bytes());
    wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let created = c
        .upload(
            &token,
            json!({"content_type": "audio/wav", "size_bytes": 44, "file_name": "forged.wav"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["recording"]["id"].as_str().unwrap().to_owned();
    assert!(put(&created.body["upload"], wav).await.is_success());
    let done = c.on("complete", "POST", &id, &token, "/complete").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["recording"]["duration_seconds"], 0.0);
}
