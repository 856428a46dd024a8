//! Errors as the REST API renders them: [`ApiError`] is a status plus the
//! `{"success": false, "data": null, "error": "…"}` envelope. The extractors here ([`ApiJson`],
//! [`AdminAuth`]) turn axum's rejections into it, with messages that never echo a request body
//! (which may hold an API key).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mesh_types::ApiResponse;
use serde::de::DeserializeOwned;

use crate::ApiState;

/// A failed request: its status and the envelope's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Whether to add `WWW-Authenticate: Bearer` (a missing or wrong admin token).
    bearer_challenge: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), bearer_challenge: false }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn admin_token_required() -> Self {
        Self {
            bearer_challenge: true,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: this endpoint requires the admin token (Authorization: Bearer <token>)",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ApiResponse::<()>::error(self.message))).into_response();
        if self.bearer_challenge {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The envelope for `status` with the standard reason, for errors produced outside the
/// handlers (unknown route, wrong method, a response that arrived without an envelope).
pub(crate) fn status_error(status: StatusCode) -> ApiError {
    let message = match status {
        StatusCode::NOT_FOUND => "Not found: no such endpoint".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed for this endpoint".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type".to_owned(),
        status if status.is_server_error() => "Internal server error".to_owned(),
        status => status.canonical_reason().unwrap_or("Request failed").to_owned(),
    };
    ApiError::new(status, message)
}

/// `axum::Json` whose rejections are envelopes: 415 without `Content-Type: application/json`,
/// 413 beyond the body limit, 400 for malformed JSON or a missing or mistyped field.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection, state.config().max_body_bytes)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type: expected Content-Type: application/json",
        ),
        // serde_json's syntax errors name a position, never the input, so they are safe to
        // repeat.
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::bad_request(format!("Invalid request body: {}", error.body_text()))
        }
        // Type errors may quote the offending value (say, a key sent as a bare JSON string):
        // only the name of a missing field is repeated.
        JsonRejection::JsonDataError(error) => {
            let text = error.body_text();
            let message = match missing_field(&text) {
                Some(field) => format!("Invalid request body: missing field `{field}`"),
                None => "Invalid request body: not the expected JSON object".to_owned(),
            };
            ApiError::bad_request(message)
        }
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large: the limit is {limit} bytes"),
            )
        }
        other => ApiError::new(other.status(), "Invalid request body: cannot read it"),
    }
}

/// The field of serde's "missing field `name`" message.
fn missing_field(text: &str) -> Option<&str> {
    let start = text.find("missing field `")?.checked_add("missing field `".len())?;
    let rest = &text[start..];
    let field = &rest[..rest.find('`')?];
    field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then_some(field)
}

/// Passes when no admin token is configured, or when the request carries
/// `Authorization: Bearer <admin token>`; otherwise a 401 envelope.
pub(crate) struct AdminAuth;

impl FromRequestParts<ApiState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.config().admin_token.as_deref() else { return Ok(Self) };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if !token.is_empty() && constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                Ok(Self)
            }
            _ => {
                tracing::warn!("refused a provider control request without the right admin token");
                Err(ApiError::admin_token_required())
            }
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much of
/// a guess was right (only the length).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_field_names_only_plain_identifiers() {
        let text =
            "Failed to deserialize the JSON body into the target type: missing field `api_key` at line 1";
        assert_eq!(missing_field(text), Some("api_key"));
        assert_eq!(missing_field("invalid type: string \"secret\", expected struct"), None);
        assert_eq!(missing_field("missing field `a b`"), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
