//! ElevenLabs' keyless stand-in (feature `local`): `POST /v1/text-to-speech/{voice_id}` answers
//! with real audio of the asked `output_format`, as long as slow speech of the text would last,
//! and a `history-item-id` header naming the history item it keeps; `GET` and `DELETE
//! /v1/history/{history_item_id}` read and delete that item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// History items by id: what each synthesis was (voice, characters).
type History = Arc<Mutex<HashMap<String, Value>>>;

/// The routes to mount on the sandbox server.
pub fn routes() -> Router {
    Router::new()
        .route("/v1/text-to-speech/{voice_id}", post(text_to_speech))
        .route(
            "/v1/history/{history_item_id}",
            get(history_item).delete(delete_history_item),
        )
        .with_state(History::default())
}

async fn history_item(
    State(history): State<History>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !key_present(&headers, "xi-api-key") {
        return elevenlabs_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    match history.lock().expect("not poisoned").get(&id) {
        Some(item) => (StatusCode::OK, Json(item.clone())).into_response(),
        None => elevenlabs_error(
            StatusCode::NOT_FOUND,
            "history_item_not_found",
            "History item not found.",
        ),
    }
}

async fn delete_history_item(
    State(history): State<History>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !key_present(&headers, "xi-api-key") {
        return elevenlabs_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    match history.lock().expect("not poisoned").remove(&id) {
        Some(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        None => elevenlabs_error(
            StatusCode::NOT_FOUND,
            "history_item_not_found",
            "History item not found.",
        ),
    }
}

fn key_present(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty())
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
    State(history): State<History>,
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
    if characters > super::wire::character_limit(model).unwrap_or(10_000) {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "max_character_limit_exceeded",
            "Text exceeds the model's character limit.",
        );
    }
    let format = q.output_format.as_deref().unwrap_or("mp3_44100_128");
    let Some(spec) = super::wire::OutputFormat::parse(format) else {
        return elevenlabs_error(
            StatusCode::BAD_REQUEST,
            "invalid_output_format",
            "Unsupported output_format.",
        );
    };
    // Roughly 14 characters a second, like unhurried speech, and at least half a second.
    let seconds = (characters as f64 / 14.0).clamp(0.5, 120.0);
    let audio = match spec.codec {
        super::wire::Codec::Opus => crate::platform::audio::silent_ogg_opus(seconds),
        _ => match super::wire::synthetic_audio(spec, seconds) {
            Some(audio) => audio,
            None => {
                return elevenlabs_error(
                    StatusCode::BAD_REQUEST,
                    "sandbox_unsupported_format",
                    "The sandbox cannot produce this format.",
                );
            }
        },
    };
    let history_item_id = uuid::Uuid::new_v4().simple().to_string();
    history.lock().expect("not poisoned").insert(
        history_item_id.clone(),
        json!({"history_item_id": history_item_id, "voice_id": voice_id, "character_count_change_to": characters}),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, spec.content_type().to_owned()),
            (
                header::HeaderName::from_static("request-id"),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            (
                header::HeaderName::from_static("history-item-id"),
                history_item_id,
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
