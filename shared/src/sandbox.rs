//! The keyless local sandbox (feature `local`): one HTTP server that speaks each vendor's documented
//! protocol, so `cargo xtask dev` works offline with no keys, and end-to-end tests have a vendor.
//!
//! Its answers are honest: transcripts say they are sandbox transcripts and carry the real audio's
//! duration; speech is a real audio file in the requested format. It accepts any non-empty key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audio;

#[derive(Debug, Clone)]
struct Job {
    request: Value,
    transcript: Value,
}

#[derive(Clone)]
struct Sandbox {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    http: reqwest::Client,
    processing_delay: Duration,
}

/// A running sandbox; dropping it does not stop the server (it lives as long as the runtime).
#[derive(Debug, Clone)]
pub struct Running {
    pub base_url: String,
}

/// Serves on `addr` (port 0 picks one) and returns the base URL every vendor's `*_BASE_URL` can use.
pub async fn start(addr: SocketAddr, processing_delay: Duration) -> std::io::Result<Running> {
    let state = Sandbox {
        jobs: Arc::default(),
        http: crate::vendor::http_client(Duration::from_secs(10)),
        processing_delay,
    };
    let app = Router::new()
        .route("/v2/transcript", post(create_transcript))
        .route("/v2/transcript/{id}", get(get_transcript))
        .route("/v3/token", get(streaming_token))
        .route("/v1/text-to-speech/{voice_id}", post(text_to_speech))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("sandbox stopped: {e}");
        }
    });
    Ok(Running {
        base_url: format!("http://{bound}"),
    })
}

fn key_present(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty())
}

fn assemblyai_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn create_transcript(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !key_present(&headers, "authorization") {
        return assemblyai_error(
            StatusCode::UNAUTHORIZED,
            "Authentication error, API token missing/invalid",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return assemblyai_error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(audio_url) = request["audio_url"].as_str().map(str::to_owned) else {
        return assemblyai_error(StatusCode::BAD_REQUEST, "audio_url is required");
    };
    let id = uuid::Uuid::new_v4().to_string();
    let transcript = json!({
        "id": id,
        "status": "queued",
        "audio_url": audio_url,
        "webhook_url": request.get("webhook_url"),
        "webhook_auth": request.get("webhook_auth_header_value").is_some(),
        "webhook_auth_header_name": request.get("webhook_auth_header_name"),
        "language_code": request.get("language_code").cloned().unwrap_or(json!("en_us")),
        "speaker_labels": request.get("speaker_labels").cloned().unwrap_or(json!(false)),
        "text": null, "words": null, "utterances": null, "confidence": null, "audio_duration": null,
        "error": null,
    });
    sandbox.jobs.lock().expect("not poisoned").insert(
        id.clone(),
        Job {
            request: request.clone(),
            transcript: transcript.clone(),
        },
    );
    tokio::spawn(run_job(sandbox.clone(), id));
    (StatusCode::OK, Json(transcript)).into_response()
}

async fn get_transcript(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !key_present(&headers, "authorization") {
        return assemblyai_error(
            StatusCode::UNAUTHORIZED,
            "Authentication error, API token missing/invalid",
        );
    }
    match sandbox.jobs.lock().expect("not poisoned").get(&id) {
        Some(job) => (StatusCode::OK, Json(job.transcript.clone())).into_response(),
        None => assemblyai_error(StatusCode::NOT_FOUND, "Transcript not found"),
    }
}

/// Downloads the audio, writes an honest transcript, then calls the webhook as AssemblyAI does.
async fn run_job(sandbox: Sandbox, id: String) {
    let request = {
        let mut jobs = sandbox.jobs.lock().expect("not poisoned");
        let Some(job) = jobs.get_mut(&id) else { return };
        job.transcript["status"] = json!("processing");
        job.request.clone()
    };
    tokio::time::sleep(sandbox.processing_delay).await;
    let audio_url = request["audio_url"].as_str().unwrap_or_default();
    let outcome = match sandbox.http.get(audio_url).send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("audio_url answered {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    let update = match outcome {
        Ok(bytes) => sandbox_transcript(&bytes, &request),
        Err(reason) => json!({
            "status": "error",
            "error": format!("Download error: the sandbox could not fetch audio_url ({reason})"),
        }),
    };
    let status = update["status"].as_str().unwrap_or("error").to_owned();
    {
        let mut jobs = sandbox.jobs.lock().expect("not poisoned");
        if let Some(job) = jobs.get_mut(&id)
            && let (Some(t), Some(u)) = (job.transcript.as_object_mut(), update.as_object())
        {
            for (k, v) in u {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    let Some(webhook_url) = request["webhook_url"].as_str() else {
        return;
    };
    // Up to 10 attempts; a 4xx ends delivery for good, exactly AssemblyAI's rule.
    for _ in 0..10 {
        let mut call = sandbox
            .http
            .post(webhook_url)
            .json(&json!({ "transcript_id": id, "status": status }));
        if let (Some(name), Some(value)) = (
            request["webhook_auth_header_name"].as_str(),
            request["webhook_auth_header_value"].as_str(),
        ) {
            call = call.header(name, value);
        }
        match call.send().await {
            Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// A transcript that says what it is, timed to the real audio.
fn sandbox_transcript(bytes: &[u8], request: &Value) -> Value {
    let extension = ["wav", "flac", "mp3", "m4a", "ogg", "webm"]
        .into_iter()
        .find(|e| audio::matches(e, bytes));
    let exact = extension.and_then(|e| audio::duration_seconds(e, bytes));
    // Without a header duration, assume 128 kbit/s and say so.
    let duration = exact.unwrap_or(bytes.len() as f64 / 16_000.0);
    let text = format!(
        "This is a Parley sandbox transcript. No speech recognition was run. The audio lasts {:.1} seconds{}.",
        duration,
        if exact.is_some() { "" } else { " (estimated)" }
    );
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let total_ms = (duration * 1000.0).round().max(tokens.len() as f64) as i64;
    let step = total_ms / tokens.len() as i64;
    let speakers = request["speakers_expected"]
        .as_i64()
        .unwrap_or(2)
        .clamp(1, 10);
    let labels = request["speaker_labels"].as_bool() == Some(true);
    let speaker_of =
        |sentence: i64| -> String { char::from(b'A' + (sentence % speakers) as u8).to_string() };
    let mut words = Vec::new();
    let mut utterances: Vec<Value> = Vec::new();
    let mut sentence = 0;
    let mut current: Vec<Value> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (start, end) = (i as i64 * step, (i as i64 + 1) * step);
        let mut word = json!({"text": token, "start": start, "end": end, "confidence": 1.0});
        if labels {
            word["speaker"] = json!(speaker_of(sentence));
        }
        words.push(word.clone());
        current.push(word);
        if token.ends_with('.') {
            let text: Vec<&str> = current.iter().filter_map(|w| w["text"].as_str()).collect();
            utterances.push(json!({
                "speaker": speaker_of(sentence),
                "text": text.join(" "),
                "start": current[0]["start"],
                "end": current[current.len() - 1]["end"],
                "confidence": 1.0,
                "words": current,
            }));
            current = Vec::new();
            sentence += 1;
        }
    }
    json!({
        "status": "completed",
        "text": text,
        "words": words,
        "utterances": if labels { json!(utterances) } else { Value::Null },
        "confidence": 1.0,
        "audio_duration": (duration * 1000.0).round() / 1000.0,
    })
}

#[derive(Deserialize)]
struct TokenQuery {
    expires_in_seconds: Option<String>,
}

async fn streaming_token(headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if !key_present(&headers, "authorization") {
        return assemblyai_error(
            StatusCode::UNAUTHORIZED,
            "Authentication error, API token missing/invalid",
        );
    }
    match q.expires_in_seconds.and_then(|s| s.parse::<u32>().ok()) {
        Some(n) if (1..=600).contains(&n) => (
            StatusCode::OK,
            Json(json!({
                "token": format!("sandbox-{}", uuid::Uuid::new_v4().simple()),
                "expires_in_seconds": n
            })),
        )
            .into_response(),
        _ => assemblyai_error(
            StatusCode::BAD_REQUEST,
            "expires_in_seconds must be an integer from 1 to 600",
        ),
    }
}

fn elevenlabs_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "detail": { "status": code, "message": message } })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TtsQuery {
    output_format: Option<String>,
}

async fn text_to_speech(
    Path(voice_id): Path<String>,
    Query(q): Query<TtsQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !key_present(&headers, "xi-api-key") {
        return elevenlabs_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    if voice_id.is_empty() || !voice_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return elevenlabs_error(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            "A voice with the voice_id was not found.",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid JSON body",
        );
    };
    let Some(text) = request["text"].as_str().filter(|t| !t.is_empty()) else {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "text is required",
        );
    };
    let characters = text.chars().count();
    let model = request["model_id"]
        .as_str()
        .unwrap_or("eleven_multilingual_v2");
    if characters > crate::tts::character_limit(model).unwrap_or(10_000) {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "max_character_limit_exceeded",
            "Text exceeds the model's character limit.",
        );
    }
    let format = q.output_format.as_deref().unwrap_or("mp3_44100_128");
    let Some(spec) = crate::tts::OutputFormat::parse(format) else {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "invalid_output_format",
            "Unsupported output_format.",
        );
    };
    // Roughly 14 characters a second, like unhurried speech, and at least half a second.
    let seconds = (characters as f64 / 14.0).clamp(0.5, 120.0);
    let Some(audio) = crate::tts::synthetic_audio(spec, seconds) else {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "sandbox_unsupported_format",
            "The sandbox cannot produce opus; choose an mp3, wav, pcm, ulaw or alaw format.",
        );
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, spec.content_type().to_owned()),
            (
                header::HeaderName::from_static("request-id"),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            (
                header::HeaderName::from_static("x-character-count"),
                characters.to_string(),
            ),
        ],
        audio,
    )
        .into_response()
}
