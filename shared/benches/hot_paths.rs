//! Local CPU on the request path: presigning (budget: well under 100 µs), cursor signing, cookie
//! parsing and format sniffing. Run with `cargo bench -p shared`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use shared::domain::paging::{Cursors, Position};
use shared::platform::storage::Storage;
use shared::platform::storage::StorageSettings;

/// The job paths: a callback's secret check and hint parse (budget ≤ 5 µs, like an HMAC verify), an
/// hour-long transcript's validation, and a 10-record SQS batch through the runner.
fn jobs(c: &mut Criterion) {
    use subtle::ConstantTimeEq;
    let secret = "8Jq3nX0uYw9bZk1VtR4sLm7PaQe2HcGdFo6iNjK5y-_";
    let presented = secret.to_owned();
    let body = br#"{"transcript_id":"5552493-16d8-42d8-8feb-c2a16b56f6e8","status":"completed"}"#;
    c.bench_function("callback_verify_and_parse", |b| {
        b.iter(|| {
            let ok: bool = secret
                .as_bytes()
                .ct_eq(black_box(presented.as_bytes()))
                .into();
            let hint =
                serde_json::from_slice::<shared::vendors::assemblyai::Callback>(black_box(body))
                    .ok();
            (ok, hint)
        })
    });

    // ~150 words a minute for an hour.
    let words: Vec<serde_json::Value> = (0..9_000)
        .map(|i| serde_json::json!({"text": "word", "start": i * 400, "end": i * 400 + 350, "confidence": 0.93, "speaker": "A"}))
        .collect();
    let transcript = serde_json::json!({
        "id": "5552493-16d8-42d8-8feb-c2a16b56f6e8", "status": "completed",
        "text": "word ".repeat(9_000), "words": words, "confidence": 0.93, "audio_duration": 3600.0,
        "language_code": "en_us"
    })
    .to_string();
    c.bench_function("transcript_parse_and_validate_1h", |b| {
        b.iter(|| {
            let t: shared::vendors::assemblyai::Transcript =
                serde_json::from_str(black_box(&transcript)).unwrap();
            t.validate().unwrap();
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({
            "messageId": format!("059f36b4-87a3-44ab-83d2-66197{i:07}"), "receiptHandle": "AQEB",
            "body": format!("{{\"transcription_id\":\"01934f6e-7a1b-7c3d-9e8f-0a1b2c3d4e{i:02}\"}}"),
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"
        }))
        .collect();
    let event = serde_json::json!({ "Records": records });
    let options = shared::platform::queue::BatchOptions {
        concurrency: 5,
        per_record_budget: Duration::from_millis(1),
    };
    c.bench_function("sqs_batch_of_10_through_the_runner", |b| {
        b.iter(|| {
            let event = serde_json::from_value(black_box(event.clone())).unwrap();
            runtime.block_on(shared::platform::queue::run_batch(
                event,
                shared::platform::lambda::now_ms() + 60_000,
                options,
                |_: shared::domain::transcriptions::TranscriptionJob, _| async { Ok(()) },
            ))
        })
    });
}

fn presign(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = Storage::new(&StorageSettings {
        endpoint: "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com".to_owned(),
        bucket: "parley-recordings".to_owned(),
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    });
    let key = "users/42/recordings/01934f6e-7a1b-7c3d-9e8f-0a1b2c3d4e5f.wav";
    c.bench_function("presign_put_recording", |b| {
        b.iter(|| {
            runtime.block_on(storage.presign_put(
                black_box(key),
                "audio/wav",
                1_048_576,
                Duration::from_secs(900),
            ))
        })
    });
    c.bench_function("presign_get_recording", |b| {
        b.iter(|| {
            runtime.block_on(storage.presign_get(
                black_box(key),
                "call.wav",
                "audio/wav",
                Duration::from_secs(3600),
            ))
        })
    });
}

fn cursors(c: &mut Criterion) {
    let cursors = Cursors::new(
        &SecretString::from("bench-secret-of-at-least-thirty-two-characters"),
        "recordings",
    );
    let position = Position {
        created_at: time::OffsetDateTime::now_utc(),
        id: uuid::Uuid::now_v7(),
    };
    let encoded = cursors.encode(shared::domain::UserId::new(42), position);
    c.bench_function("cursor_encode", |b| {
        b.iter(|| cursors.encode(black_box(shared::domain::UserId::new(42)), position))
    });
    c.bench_function("cursor_decode", |b| {
        b.iter(|| {
            cursors.decode(
                black_box(shared::domain::UserId::new(42)),
                black_box(&encoded),
            )
        })
    });
}

fn requests(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_static(
            "theme=dark; authjs.callback-url=http%3A%2F%2Flocalhost%3A3000; __Secure-authjs.session-token=6f1c2d7e-8a9b-4c3d-9e8f-7a6b5c4d3e2f",
        ),
    );
    c.bench_function("session_credentials_from_cookies", |b| {
        b.iter(|| shared::api::auth::credentials(black_box(&headers)))
    });
    let wav = shared::platform::audio::silent_wav(1.0, 16_000);
    c.bench_function("sniff_wav_and_duration", |b| {
        b.iter(|| {
            let head = black_box(&wav[..4096]);
            (
                shared::platform::audio::matches("wav", head),
                shared::platform::audio::duration_seconds("wav", head, wav.len() as u64),
            )
        })
    });
}

criterion_group!(benches, presign, cursors, requests, jobs);
criterion_main!(benches);
