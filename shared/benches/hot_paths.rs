//! Local CPU on the request path: presigning (budget: well under 100 µs), cursor signing, cookie
//! parsing and format sniffing. Run with `cargo bench -p shared`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use shared::config::StorageSettings;
use shared::pagination::{Cursors, Position};
use shared::storage::Storage;

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
    let encoded = cursors.encode(42, position);
    c.bench_function("cursor_encode", |b| {
        b.iter(|| cursors.encode(black_box(42), position))
    });
    c.bench_function("cursor_decode", |b| {
        b.iter(|| cursors.decode(black_box(42), black_box(&encoded)))
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
        b.iter(|| shared::auth::credentials(black_box(&headers)))
    });
    let wav = shared::audio::silent_wav(1.0, 16_000);
    c.bench_function("sniff_wav_and_duration", |b| {
        b.iter(|| {
            let head = black_box(&wav[..4096]);
            (
                shared::audio::matches("wav", head),
                shared::audio::duration_seconds("wav", head),
            )
        })
    });
}

criterion_group!(benches, presign, cursors, requests);
criterion_main!(benches);
