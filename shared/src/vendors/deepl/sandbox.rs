//! DeepL's keyless stand-in (feature `local`): `POST /v2/translate` and `GET /v2/languages` in
//! DeepL's wire format. Each text comes back as `[sandbox DeepL → <target>] <text>`, in order, so
//! alignment is visible; billed characters are the text's characters.
//!
//! The failure switch, so the OpenAI fallback can be seen locally: `POST /sandbox/deepl/failure`
//! with `{"status": 456}` (quota used up) or `{"status": 503}` (down) makes every translation
//! answer that status until `{"status": null}`; `PARLEY_SANDBOX_DEEPL_FAILURE=456|503` sets it at
//! start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// Languages the sandbox claims. Deliberately without Hindi and Vietnamese (which OpenAI
/// translates), so the "pair DeepL lacks" path is visible locally too.
const SOURCE: &[(&str, &str)] = &[
    ("BG", "Bulgarian"),
    ("CS", "Czech"),
    ("DA", "Danish"),
    ("DE", "German"),
    ("EL", "Greek"),
    ("EN", "English"),
    ("ES", "Spanish"),
    ("FI", "Finnish"),
    ("FR", "French"),
    ("IT", "Italian"),
    ("JA", "Japanese"),
    ("KO", "Korean"),
    ("NL", "Dutch"),
    ("PL", "Polish"),
    ("PT", "Portuguese"),
    ("RU", "Russian"),
    ("SV", "Swedish"),
    ("TR", "Turkish"),
    ("UK", "Ukrainian"),
    ("ZH", "Chinese"),
];
const FORMAL_TARGETS: &[&str] = &[
    "DE", "ES", "FR", "IT", "JA", "NL", "PL", "PT-BR", "PT-PT", "RU",
];

#[derive(Clone)]
struct Sandbox {
    /// 0: answer normally; otherwise the status every translation gets.
    failure: Arc<AtomicU16>,
}

/// The routes to mount on the sandbox server.
pub fn routes() -> Router {
    let initial = std::env::var("PARLEY_SANDBOX_DEEPL_FAILURE")
        .ok()
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|s| matches!(s, 429 | 456 | 500 | 503))
        .unwrap_or(0);
    let state = Sandbox {
        failure: Arc::new(AtomicU16::new(initial)),
    };
    Router::new()
        .route("/v2/translate", post(translate))
        .route("/v2/languages", get(languages))
        .route("/sandbox/deepl/failure", post(set_failure))
        .with_state(state)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("DeepL-Auth-Key "))
        .is_some_and(|k| !k.trim().is_empty())
}

fn deepl_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn target_list() -> Vec<Value> {
    let mut out = Vec::new();
    for (code, name) in SOURCE {
        let variants: &[(&str, &str)] = match *code {
            "EN" => &[
                ("EN-GB", "English (British)"),
                ("EN-US", "English (American)"),
            ],
            "PT" => &[
                ("PT-BR", "Portuguese (Brazilian)"),
                ("PT-PT", "Portuguese (European)"),
            ],
            "ZH" => &[("ZH-HANS", "Chinese (simplified)"), ("ZH", "Chinese")],
            _ => &[],
        };
        let all = if variants.is_empty() {
            vec![(*code, *name)]
        } else {
            variants.to_vec()
        };
        for (code, name) in all {
            out.push(json!({"language": code, "name": name, "supports_formality": FORMAL_TARGETS.contains(&code)}));
        }
    }
    out
}

#[derive(Deserialize)]
struct LanguagesQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn languages(headers: HeaderMap, Query(q): Query<LanguagesQuery>) -> Response {
    if !authorized(&headers) {
        return deepl_error(StatusCode::FORBIDDEN, "Authorization failure");
    }
    match q.kind.as_deref().unwrap_or("source") {
        "target" => Json(target_list()).into_response(),
        "source" => Json(
            SOURCE
                .iter()
                .map(|(c, n)| json!({"language": c, "name": n}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        _ => deepl_error(StatusCode::BAD_REQUEST, "Value for 'type' not supported."),
    }
}

async fn set_failure(State(state): State<Sandbox>, Json(body): Json<Value>) -> Response {
    let status = match &body["status"] {
        Value::Null => 0,
        v => match v.as_u64() {
            Some(s @ (429 | 456 | 500 | 503)) => s as u16,
            _ => {
                return deepl_error(
                    StatusCode::BAD_REQUEST,
                    "status must be 429, 456, 500, 503 or null",
                );
            }
        },
    };
    state.failure.store(status, Ordering::SeqCst);
    Json(json!({ "status": (status != 0).then_some(status) })).into_response()
}

async fn translate(State(state): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return deepl_error(StatusCode::FORBIDDEN, "Authorization failure");
    }
    match state.failure.load(Ordering::SeqCst) {
        0 => {}
        456 => return deepl_error(StatusCode::from_u16(456).expect("valid"), "Quota Exceeded"),
        other => {
            let status = StatusCode::from_u16(other).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return deepl_error(status, "Service unavailable (sandbox switch)");
        }
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return deepl_error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(texts) = request["text"].as_array().filter(|t| !t.is_empty()) else {
        return deepl_error(StatusCode::BAD_REQUEST, "Parameter 'text' not specified.");
    };
    if texts.len() > super::MAX_TEXTS || body.len() > 128 * 1024 {
        return deepl_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let target = request["target_lang"].as_str().unwrap_or_default();
    if !target_list().iter().any(|l| l["language"] == target) {
        return deepl_error(
            StatusCode::BAD_REQUEST,
            "Value for 'target_lang' not supported.",
        );
    }
    let detected = request["source_lang"].as_str().unwrap_or("EN");
    let translations: Vec<Value> = texts
        .iter()
        .map(|t| {
            let text = t.as_str().unwrap_or_default();
            json!({
                "detected_source_language": detected,
                "text": format!("[sandbox DeepL → {target}] {text}"),
                "billed_characters": text.chars().count(),
            })
        })
        .collect();
    Json(json!({ "translations": translations })).into_response()
}
