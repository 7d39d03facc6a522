//! The server HTTP API for backends: `POST /api/<method>` with a JSON body, Centrifugo's
//! shapes and codes (see `docs/api.md`).
//!
//! What a request goes through, and the HTTP answer at each step:
//!
//! 1. the key (`X-API-Key: <key>` or `Authorization: apikey <key>`) against `http_api.key`,
//!    compared in constant time: missing, wrong or unconfigured → **401**, empty body;
//! 2. the method from the path: unknown → **404** with error 104;
//! 3. `POST` only → **405** otherwise;
//! 4. the body, at most `http_api.max_request_body_size` bytes → **413** with error 107;
//! 5. JSON decoding → **400** with error 107;
//! 6. the command itself → **200** with `{"result": ..}` or `{"error": ..}` (`batch`:
//!    `{"replies": [..]}`).
//!
//! `cluster` holds Starling's own `GET /api/cluster` and `POST /api/cluster/remove`, which
//! share the key check but answer failures with HTTP statuses.

pub(crate) mod cluster;
mod command;
mod error;
mod execute;
mod pattern;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::SerializeMap;
use starling_node::Node;
use tracing::{debug, warn};

use self::command::{ApiRequest, DecodeError, METHODS, decode};
use self::error::{ApiError, ApiErrorCode};
use self::execute::{ApiResult, Outcome, execute, execute_batch};

/// `POST /api/{method}`.
pub(crate) async fn handle(
    State(node): State<Node>,
    Path(method): Path<String>,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers, &node.config().http_api.key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if method != "batch" && !METHODS.contains(&method.as_str()) {
        debug!(%method, "server API: unknown method");
        return error_response(StatusCode::NOT_FOUND, ApiErrorCode::NotFound);
    }
    if http_method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST"))],
        )
            .into_response();
    }
    let limit = node.config().http_api.max_request_body_size;
    let body = match to_bytes(body, limit).await {
        Ok(body) => body,
        Err(error) => {
            debug!(%method, %error, limit, "server API: body refused");
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, ApiErrorCode::BadRequest);
        }
    };
    let request = match decode(&method, &body) {
        Ok(request) => request,
        Err(error @ DecodeError::UnknownMethod { .. }) => {
            debug!(%error, "server API: unknown method");
            return error_response(StatusCode::NOT_FOUND, ApiErrorCode::NotFound);
        }
        Err(error @ DecodeError::Malformed { .. }) => {
            debug!(%error, "server API: malformed request");
            return error_response(StatusCode::BAD_REQUEST, ApiErrorCode::BadRequest);
        }
    };
    match request {
        ApiRequest::Single(command) => {
            let outcome = execute(&node, command).await;
            if let Err(error) = &outcome {
                debug!(%method, %error, "server API command failed");
            }
            json_response(&Outcome::<ApiResult>::from(outcome))
        }
        ApiRequest::Batch { commands, parallel } => {
            let replies = execute_batch(&node, commands, parallel).await;
            json_response(&BatchResponse { replies })
        }
    }
}

/// Whether `headers` carry `key`. An empty configured key authorizes nothing: the API is off.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let given = headers
        .get("x-api-key")
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            let value = headers.get(header::AUTHORIZATION)?.as_bytes();
            let (scheme, rest) = value.split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"apikey ").then_some(rest)
        });
    given.is_some_and(|given| keys_match(given, key.as_bytes()))
}

/// Compares in time that depends only on the length of the expected key, so a caller learns
/// nothing about how much of a guess was right.
fn keys_match(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(i).copied().unwrap_or(!byte);
    }
    std::hint::black_box(difference) == 0
}

/// `{"replies": [{"publish": {..}}, {"error": {..}}, ..]}`: Centrifugo's batch answer has no
/// `result` wrapper.
struct BatchResponse {
    replies: Vec<(&'static str, Result<ApiResult, ApiError>)>,
}

impl Serialize for BatchResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Reply<'a>(&'a (&'static str, Result<ApiResult, ApiError>));
        impl Serialize for Reply<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let (method, outcome) = self.0;
                let mut map = serializer.serialize_map(Some(1))?;
                match outcome {
                    Ok(result) => map.serialize_entry(method, result)?,
                    Err(error) => map.serialize_entry("error", &error.code().body())?,
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(
            "replies",
            &self.replies.iter().map(Reply).collect::<Vec<_>>(),
        )?;
        map.end()
    }
}

fn json_response(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(error) => {
            // Every value serialized here is built from checked JSON; reaching this is a bug.
            warn!(%error, "server API: cannot encode reply");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn error_response(status: StatusCode, code: ApiErrorCode) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: error::ErrorBody,
    }
    let mut response = json_response(&Body { error: code.body() });
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn key_is_accepted_in_either_header() {
        assert!(authorized(&headers(&[("x-api-key", "k3y")]), "k3y"));
        assert!(authorized(
            &headers(&[("authorization", "apikey k3y")]),
            "k3y"
        ));
        assert!(authorized(
            &headers(&[("authorization", "ApiKey k3y")]),
            "k3y"
        ));
    }

    #[test]
    fn missing_wrong_or_unconfigured_key_is_refused() {
        assert!(!authorized(&headers(&[]), "k3y"));
        assert!(!authorized(&headers(&[("x-api-key", "k3")]), "k3y"));
        assert!(!authorized(&headers(&[("x-api-key", "k3yy")]), "k3y"));
        assert!(!authorized(
            &headers(&[("authorization", "bearer k3y")]),
            "k3y"
        ));
        assert!(!authorized(&headers(&[("authorization", "apikey")]), "k3y"));
        assert!(!authorized(&headers(&[("x-api-key", "")]), ""));
    }

    #[test]
    fn key_comparison_is_exact() {
        assert!(keys_match(b"abc", b"abc"));
        assert!(!keys_match(b"abd", b"abc"));
        assert!(!keys_match(b"ab", b"abc"));
        assert!(!keys_match(b"abcd", b"abc"));
        assert!(!keys_match(b"", b"abc"));
    }
}
