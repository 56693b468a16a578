//! A JSON body extractor whose errors say what is wrong and where.
//!
//! actix-web's own `web::Json` reports "Json deserialize error" without the
//! field and answers every decode failure with 400. Here: a body over the limit
//! is 413, a non-JSON content type 415, bytes that are not JSON (syntax, early
//! end, invalid UTF-8) 400, and JSON of the wrong shape 422 naming the field.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request body limit in bytes (`MAX_BODY_BYTES`), as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(usize::MAX, |limit| limit.0);
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = body
                .await
                .map_err(|err| match err.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit },
                    _ => ApiError::BadRequest("could not read the request body".into()),
                })?;
            parse(&bytes).map(Json)
        })
    }
}

/// A body that is one object or an array of them; `array` says which.
#[derive(Debug)]
pub struct OneOrMany<T> {
    pub items: Vec<T>,
    pub array: bool,
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);

        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object or an array of objects")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany { items, array: true })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let item = T::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany {
                    items: vec![item],
                    array: false,
                })
            }
        }

        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(shape_error)?;
    // Bytes after the value make the body malformed too.
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Reads a typed body out of JSON already parsed (a handler that also needs
/// the JSON itself, to hash it), with the same field-naming errors.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(shape_error)
}

fn shape_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.classify() != serde_json::error::Category::Data {
        return ApiError::MalformedJson(inner.to_string());
    }
    // serde reports a missing field at its parent; name the field itself.
    let message = inner.to_string();
    let field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(|name| join_path(&path, name))
        .unwrap_or(path);
    ApiError::InvalidField {
        field,
        message: strip_position(&message),
    }
}

fn join_path(parent: &str, name: &str) -> String {
    if parent == "." || parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn field_of(json: &str) -> String {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert_eq!(field_of(r#"{"name": 5}"#), "name");
        assert_eq!(field_of(r#"{}"#), "name");
        assert_eq!(
            field_of(r#"{"name": "x", "nested": {"count": -1}}"#),
            "nested.count"
        );
        assert_eq!(field_of(r#"{"name": "x", "nested": {}}"#), "nested.count");
        assert_eq!(
            field_of(r#"{"name": "x", "nested": {"count": 1, "extra": 2}}"#),
            "nested.extra"
        );
    }

    #[test]
    fn one_or_many_names_the_element_at_fault() {
        let many: OneOrMany<Nested> = parse(br#"[{"count": 1}, {"count": 2}]"#).unwrap();
        assert!(many.array);
        assert_eq!(many.items.len(), 2);
        let one: OneOrMany<Nested> = parse(br#"{"count": 1}"#).unwrap();
        assert!(!one.array);
        let err = parse::<OneOrMany<Nested>>(br#"[{"count": 1}, {"count": "x"}]"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidField { field, .. } if field == "[1].count"));
        let err = parse::<OneOrMany<Nested>>(br#"{"count": "x"}"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidField { field, .. } if field == "count"));
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in [
            &b"{"[..],
            b"{\"name\": \"x\"} trailing",
            b"not json",
            b"{\"name\": \"\xff\"}",
        ] {
            assert!(
                matches!(parse::<Body>(body), Err(ApiError::MalformedJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/jsonx"));
    }
}
