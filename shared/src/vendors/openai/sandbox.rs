//! OpenAI's keyless stand-in (feature `local`): `POST /chat/completions` (and `/v1/chat/completions`)
//! in OpenAI's wire format. A plain completion answers `[sandbox OpenAI → <target>] <text>`; a
//! structured one answers the same for every key of the user's JSON object, so alignment holds.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

/// The routes to mount on the sandbox server.
pub fn routes() -> Router {
    Router::new()
        .route("/chat/completions", post(chat))
        .route("/v1/chat/completions", post(chat))
}

fn openai_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})),
    )
        .into_response()
}

/// `German (DE)` from "… into German (DE). …".
fn target(system: &str) -> String {
    system
        .split_once(" into ")
        .and_then(|(_, rest)| rest.split_once('.'))
        .map(|(t, _)| t.to_owned())
        .unwrap_or_else(|| "the target language".to_owned())
}

async fn chat(headers: HeaderMap, body: Bytes) -> Response {
    let key_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| !k.trim().is_empty());
    if !key_ok {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Incorrect API key provided.",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "We could not parse the JSON body of your request.",
        );
    };
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let content = |role: &str| {
        messages
            .iter()
            .find(|m| m["role"] == role)
            .and_then(|m| m["content"].as_str())
            .map(str::to_owned)
    };
    let (Some(system), Some(user)) = (content("system"), content("user")) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_messages",
            "A system and a user message are required.",
        );
    };
    let prefix = format!("[sandbox OpenAI → {}]", target(&system));
    let structured = request["response_format"]["type"] == "json_schema";
    let answer = if structured {
        let Ok(object) = serde_json::from_str::<Map<String, Value>>(&user) else {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "The sandbox expects a JSON object for a structured output.",
            );
        };
        let out: Map<String, Value> = object
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    json!(format!("{prefix} {}", v.as_str().unwrap_or_default())),
                )
            })
            .collect();
        Value::Object(out).to_string()
    } else {
        format!("{prefix} {user}")
    };
    let model = request["model"].as_str().unwrap_or("sandbox");
    let prompt_tokens = (system.len() + user.len()) / 4;
    let completion_tokens = answer.len() / 4;
    Json(json!({
        "id": format!("chatcmpl-sandbox{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": time::OffsetDateTime::now_utc().unix_timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}
