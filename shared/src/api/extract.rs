//! Reading a request: its JSON body, path parameters and query string.

use lambda_http::{Request, RequestExt};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_json::{Map, Number, Value};

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
    // Text after the value is refused here too, rather than ignored silently.
    let json: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
        detail: format!("body is not valid JSON: {e}"),
        field: None,
    })?;
    let value = serde_path_to_error::deserialize(Strict(json)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde reports a missing field at its parent's path, so the name comes from the message.
        let field = match missing_field_name(&message) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    Ok(value)
}

/// A JSON value read the way the API contract (JSON Schema) reads it, where serde's derive is
/// laxer: a struct is only ever an object (serde would also take an array, by position), and a
/// number with no fractional part is an integer (JSON Schema counts `10.0` as one).
struct Strict(Value);

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Number(n) => match whole(&n) {
                Some(Whole::Signed(i)) => visitor.visit_i64(i),
                Some(Whole::Unsigned(u)) => visitor.visit_u64(u),
                None => Value::Number(n).deserialize_any(visitor),
            },
            Value::Array(items) => visitor.visit_seq(StrictSeq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(StrictMap {
                entries: map.into_iter(),
                pending: None,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

enum Whole {
    Signed(i64),
    Unsigned(u64),
}

/// `10.0` as the integer 10; `None` for a true fraction or a number already an integer.
fn whole(n: &Number) -> Option<Whole> {
    let f = n.as_f64().filter(|_| n.is_f64())?;
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    if f >= 0.0 && f <= u64::MAX as f64 {
        Some(Whole::Unsigned(f as u64))
    } else if f >= i64::MIN as f64 {
        Some(Whole::Signed(f as i64))
    } else {
        None
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }
}

struct StrictMap {
    entries: <Map<String, Value> as IntoIterator>::IntoIter,
    pending: Option<Value>,
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self.pending.take().unwrap_or(Value::Null);
        seed.deserialize(Strict(value))
    }
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

/// `?limit=` of a list: `default` when absent; larger values are capped rather than refused (the
/// cursor tells the client there is more); anything but a positive integer is a 422.
pub fn page_limit(req: &Request, default: i64, max: i64) -> Result<i64, ApiError> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(ApiError::Validation(vec![crate::domain::FieldError::new(
                "limit",
                format!("must be an integer from 1 to {max}"),
            )])),
        },
    }
}

/// The deadline for vendor calls made while the user waits (a deletion tried at once): the
/// Lambda deadline, but never more than five seconds away, since a refusal is retried by the
/// sweeper anyway and the user should get the answer quickly.
pub fn inline_vendor_deadline(req: &Request) -> u64 {
    use lambda_http::RequestExt;
    const INLINE: u64 = 5_000;
    let soon = crate::platform::lambda::now_ms() + INLINE;
    let lambda = crate::platform::lambda::effective_deadline(
        req.lambda_context_ref().map(|c| c.deadline).unwrap_or(0),
    );
    if lambda == 0 { soon } else { lambda.min(soon) }
}

/// True for `application/x-www-form-urlencoded` (parameters allowed).
pub fn is_form_content_type(value: Option<&http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
