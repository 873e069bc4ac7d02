//! Reading a request: its JSON body, path parameters and query string.

use lambda_http::{Request, RequestExt};
use serde::de::DeserializeOwned;

use crate::api::error::{ApiError, FieldError};

/// Parses a JSON body into `T`. Text that is not JSON is a 400; JSON with a missing, mistyped or
/// unknown field is a 422 naming that field. Size and content type were checked by [`Http::serve`].
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.is_empty() {
        return Err(ApiError::BadRequest {
            detail: "a JSON body is required".to_owned(),
            field: None,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return ApiError::BadRequest {
                detail: format!("body is not valid JSON: {inner}"),
                field: None,
            };
        }
        let message = inner.to_string();
        // serde reports a missing field at its parent's path, so the name comes from the message.
        let field = match missing_field_name(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        // serde_json appends " at line L column C", which says nothing to an API client.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_owned();
        ApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    // Text after the value would otherwise be ignored silently.
    de.end().map_err(|e| ApiError::BadRequest {
        detail: format!("body is not valid JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

fn missing_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// A UUID path parameter; anything else is a resource that cannot exist (404, not 400).
pub fn path_uuid(req: &Request, name: &str) -> Result<uuid::Uuid, ApiError> {
    req.path_parameters()
        .first(name)
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .ok_or(ApiError::NotFound)
}

/// A query parameter, if present and non-empty.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters()
        .first(name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}
