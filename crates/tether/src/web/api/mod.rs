//! The REST API under /api/v1 (DESIGN §5): JSON in and out, bearer token (scope `admin`) or
//! an admin's session with the `X-CSRF-Token` header; errors carry a stable `code`. The
//! OpenAPI 3 document at /api/v1/openapi.json is generated from these handlers.
//!
//! One file per resource. Handlers parse input (with [`ApiJson`] and [`ApiQuery`], whose
//! rejections name the field at fault), call one application function, and render a DTO of
//! this module: the wire format is declared here, not borrowed from the store's records.
//! No handler knows SQL; no secret (source credential, token value or hash) is ever rendered.

pub mod audit;
pub mod openapi;
pub mod settings;
pub mod sources;
pub mod tokens;
pub mod users;

use super::error::{ApiError, ApiResult};
use super::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Router;
use serde::de::DeserializeOwned;
use tether_store::Timestamp;

/// Page sizes: `limit` defaults to this...
pub const DEFAULT_LIMIT: u32 = 50;
/// ... and may not exceed this.
pub const MAX_LIMIT: u32 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(users::routes())
        .merge(sources::routes())
        .merge(settings::routes())
        .merge(audit::routes())
        .merge(tokens::routes())
        .merge(openapi::routes())
}

/// A JSON request body. Refusals are [`ApiError`]s: `invalid_input` naming the field at
/// fault (unknown, missing or of the wrong type), or `unsupported_media_type`. An empty body
/// reads as `{}`, so endpoints whose fields are all optional accept no body at all.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let json_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the request body exceeds {} bytes", super::MAX_BODY_BYTES),
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_input",
                        format!("cannot read the request body: {e}"),
                    )
                }
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            if json_type != Some(true) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with 'Content-Type: application/json'",
                ));
            }
            &bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| json_error(e.path().to_string(), e.inner()))?;
        deserializer
            .end()
            .map_err(|e| ApiError::invalid("body", format!("invalid JSON: {e}")))?;
        Ok(ApiJson(value))
    }
}

/// Names the field of a JSON error: the path where it happened, or the field a
/// `missing field`/`unknown field` message names.
fn json_error(path: String, error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    if error.is_syntax() || error.is_eof() {
        return ApiError::invalid("body", format!("invalid JSON: {message}"));
    }
    let named = field_in_message(&message);
    let field = match (named, path.as_str()) {
        (Some(name), "." | "") => name,
        (Some(name), parent) if message.starts_with("missing field") => format!("{parent}.{name}"),
        (Some(name), parent) if message.starts_with("unknown field") => {
            if parent.ends_with(&name) {
                parent.to_owned()
            } else {
                format!("{parent}.{name}")
            }
        }
        (_, "." | "") => "body".to_owned(),
        (_, path) => path.to_owned(),
    };
    ApiError::invalid(&field, format!("{field}: {message}"))
}

/// `x` out of "unknown field `x`, expected …" or "missing field `x`".
fn field_in_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next().map(str::to_owned)
}

/// Query parameters. Unknown parameters are refused (`invalid_input` naming them), so a
/// typo such as `?situaton=` does not silently list everyone.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| {
                let message = e.to_string();
                let field = field_in_message(&message).unwrap_or_else(|| "query".to_owned());
                ApiError::invalid(&field, format!("query parameter {field}: {message}"))
            })
    }
}

/// A page size from `?limit=`: default [`DEFAULT_LIMIT`], 1 to [`MAX_LIMIT`].
pub fn page_limit(limit: Option<&str>) -> ApiResult<u32> {
    match limit {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("limit must be a whole number from 1 to {MAX_LIMIT}, not '{text}'"),
            )),
        },
    }
}

/// A keyset cursor from `?after=` or `?before=`: the `next` of the previous page.
pub fn cursor(field: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                field,
                format!("{field} must be the 'next' value of the previous page, not '{text}'"),
            )),
        },
    }
}

/// Cuts a page fetched with `limit + 1` rows to `limit`, and says where the next one starts.
pub fn paginate<T>(
    mut rows: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|row| key(row).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}

/// RFC 3339, as every timestamp of the API.
pub fn rfc3339(at: Timestamp) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses a contract name (situation, origin, External ID field), naming the parameter.
pub fn parse_name<T>(field: &str, text: &str) -> ApiResult<T>
where
    T: std::str::FromStr<Err = tether_core::UnknownName>,
{
    text.parse::<T>()
        .map_err(|e| ApiError::invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(page_limit(Some("500")).unwrap(), 500);
        for bad in ["0", "501", "-1", "ten"] {
            let e = page_limit(Some(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("limit"), "{bad}");
        }
    }

    #[test]
    fn pages_say_where_the_next_starts() {
        let (rows, next) = paginate(vec![1, 2, 3], 2, |n| *n);
        assert_eq!((rows, next), (vec![1, 2], Some("2".to_owned())));
        let (rows, next) = paginate(vec![1, 2], 2, |n| *n);
        assert_eq!((rows, next), (vec![1, 2], None));
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            reason: String,
            n: Option<u32>,
        }
        let parse = |text: &str| {
            let mut d = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, Body>(&mut d)
                .map_err(|e| json_error(e.path().to_string(), e.inner()))
                .unwrap_err()
        };
        assert_eq!(
            parse(r#"{"reason":"x","bogus":1}"#).field.as_deref(),
            Some("bogus")
        );
        assert_eq!(parse(r#"{}"#).field.as_deref(), Some("reason"));
        assert_eq!(
            parse(r#"{"reason":"x","n":"seven"}"#).field.as_deref(),
            Some("n")
        );
        assert_eq!(parse(r#"{"reason":"#).field.as_deref(), Some("body"));
    }
}
