//! AssemblyAI's keyless stand-in (feature `local`): `POST /v2/transcript`, `GET` and `DELETE
//! /v2/transcript/{id}` and `GET /v3/token` as AssemblyAI documents them. A job downloads its audio, writes an honest
//! sandbox transcript with the file's real duration, then calls the webhook as AssemblyAI does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::platform::audio;

/// The routes to mount on the sandbox server; jobs finish `processing_delay` after submission.
pub fn routes(processing_delay: Duration) -> Router {
    let state = Sandbox {
        jobs: Arc::default(),
        http: crate::platform::http_client::http_client(Duration::from_secs(10)),
        processing_delay,
    };
    Router::new()
        .route("/v2/transcript", post(create_transcript))
        .route(
            "/v2/transcript/{id}",
            get(get_transcript).delete(delete_transcript),
        )
        .route("/v3/token", get(streaming_token))
        .with_state(state)
}

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

/// Redacts the transcript as AssemblyAI does: 200 with the text replaced, the URLs blanked and
/// `status` still `completed`; an unknown id is 404.
async fn delete_transcript(
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
    let mut jobs = sandbox.jobs.lock().expect("not poisoned");
    let Some(job) = jobs.get_mut(&id) else {
        return assemblyai_error(StatusCode::NOT_FOUND, "Transcript not found");
    };
    let t = &mut job.transcript;
    t["text"] = json!("Deleted by user.");
    t["audio_url"] = json!("http://deleted_by_user");
    t["webhook_url"] = json!("http://deleted_by_user");
    t["words"] = Value::Null;
    t["utterances"] = Value::Null;
    job.request = json!({});
    (StatusCode::OK, Json(job.transcript.clone())).into_response()
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
    let exact = extension.and_then(|e| {
        audio::duration_seconds(e, bytes, bytes.len() as u64)
            .or_else(|| whole_file_duration(e, bytes))
    });
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
    max_session_duration_seconds: Option<String>,
}

async fn streaming_token(headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if !key_present(&headers, "authorization") {
        return assemblyai_error(
            StatusCode::UNAUTHORIZED,
            "Authentication error, API token missing/invalid",
        );
    }
    if let Some(max) = &q.max_session_duration_seconds
        && !max.parse::<u32>().is_ok_and(|m| (60..=10_800).contains(&m))
    {
        return assemblyai_error(
            StatusCode::BAD_REQUEST,
            "max_session_duration_seconds must be an integer from 60 to 10800",
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

/// Durations the header alone does not state, read from the whole file the sandbox holds anyway.
fn whole_file_duration(extension: &str, bytes: &[u8]) -> Option<f64> {
    match extension {
        "mp3" => mp3_duration(bytes),
        "ogg" => ogg_duration(bytes),
        "m4a" => mp4_duration(bytes),
        _ => None,
    }
}

/// Sums MPEG audio Layer III frames (CBR or VBR alike), after any ID3v2 tag.
fn mp3_duration(bytes: &[u8]) -> Option<f64> {
    const MPEG1: [u32; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const MPEG2: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let mut at = 0usize;
    if bytes.len() >= 10 && bytes.starts_with(b"ID3") {
        // Synchsafe size: 7 bits a byte; a footer adds 10 more.
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |n, b| (n << 7) | usize::from(b & 0x7F));
        at = 10 + size + if bytes[5] & 0x10 != 0 { 10 } else { 0 };
    }
    let mut seconds = 0.0;
    let mut frames = 0u32;
    while at + 4 <= bytes.len() {
        let h = &bytes[at..at + 4];
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 || (h[1] >> 1) & 3 != 1 {
            break; // not a Layer III frame: the end, or a trailing tag
        }
        let version = (h[1] >> 3) & 3; // 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
        let rate_index = usize::from((h[2] >> 2) & 3);
        let bitrate_index = usize::from(h[2] >> 4);
        if version == 1 || rate_index == 3 || bitrate_index == 0 || bitrate_index == 15 {
            break;
        }
        let base = [44_100u32, 48_000, 32_000][rate_index];
        let sample_rate = match version {
            3 => base,
            2 => base / 2,
            _ => base / 4,
        };
        let (kbps, samples, coefficient) = if version == 3 {
            (MPEG1[bitrate_index], 1152u32, 144u32)
        } else {
            (MPEG2[bitrate_index], 576, 72)
        };
        let length =
            (coefficient * kbps * 1000 / sample_rate) as usize + usize::from((h[2] >> 1) & 1);
        seconds += f64::from(samples) / f64::from(sample_rate);
        frames += 1;
        at += length;
    }
    (frames > 0).then_some(seconds)
}

/// The last page's granule position is the stream's length in samples (48 kHz for Opus, less its
/// pre-skip; the identification header's rate for Vorbis).
fn ogg_duration(bytes: &[u8]) -> Option<f64> {
    let first = bytes.get(28..)?;
    let (rate, pre_skip) = if first.starts_with(b"OpusHead") && first.len() >= 12 {
        (
            48_000u64,
            u64::from(u16::from_le_bytes([first[10], first[11]])),
        )
    } else if first.starts_with(b"\x01vorbis") && first.len() >= 16 {
        let rate = u32::from_le_bytes([first[12], first[13], first[14], first[15]]);
        (u64::from(rate), 0)
    } else {
        return None;
    };
    let last = bytes.windows(4).rposition(|w| w == b"OggS")?;
    let granule = u64::from_le_bytes(bytes.get(last + 6..last + 14)?.try_into().ok()?);
    (rate > 0 && granule > pre_skip).then(|| (granule - pre_skip) as f64 / rate as f64)
}

/// The movie header (`mvhd`) states a duration in its own timescale.
fn mp4_duration(bytes: &[u8]) -> Option<f64> {
    let at = bytes.windows(4).position(|w| w == b"mvhd")? + 4;
    let body = bytes.get(at..)?;
    let be32 = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let (timescale, duration) = match body.first()? {
        0 if body.len() >= 20 => (be32(&body[12..16]), be32(&body[16..20])),
        1 if body.len() >= 32 => (
            be32(&body[20..24]),
            u64::from_be_bytes(body[24..32].try_into().ok()?),
        ),
        _ => return None,
    };
    (timescale > 0).then(|| duration as f64 / timescale as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_whole_file_for_formats_whose_header_lacks_one() {
        let mp3 = audio::silent_mp3(3.0, 44_100, 128).unwrap();
        let seconds = whole_file_duration("mp3", &mp3).unwrap();
        assert!((seconds - 3.0).abs() < 0.03, "{seconds}");
        let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05hello".to_vec();
        tagged.extend_from_slice(&audio::silent_mp3(1.0, 16_000, 32).unwrap());
        let seconds = whole_file_duration("mp3", &tagged).unwrap();
        assert!((seconds - 1.0).abs() < 0.04, "{seconds}");

        let opus = audio::silent_ogg_opus(4.2);
        assert_eq!(whole_file_duration("ogg", &opus), Some(4.2));

        // ftyp, then moov > mvhd (version 0): timescale 1000, duration 61 500.
        let mut m4a = b"\x00\x00\x00\x10ftypM4A \x00\x00\x00\x00".to_vec();
        m4a.extend_from_slice(b"\x00\x00\x00\x24moov\x00\x00\x00\x1cmvhd\x00\x00\x00\x00");
        m4a.extend_from_slice(&[0; 8]);
        m4a.extend_from_slice(&1000u32.to_be_bytes());
        m4a.extend_from_slice(&61_500u32.to_be_bytes());
        assert!(audio::matches("m4a", &m4a));
        assert_eq!(whole_file_duration("m4a", &m4a), Some(61.5));

        assert_eq!(whole_file_duration("mp3", b"\xFF\xFB"), None);
        assert_eq!(whole_file_duration("ogg", b"OggS"), None);
        assert_eq!(whole_file_duration("m4a", b"mvhd\x02"), None);
    }
}
