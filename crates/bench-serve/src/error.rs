//! Errors as OpenAI's API writes them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`, so OpenAI clients raise their usual
//! exceptions (`BadRequestError`, `NotFoundError`, `RateLimitError`, ...).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<&'static str>,
    /// OpenAI's `code`.
    pub code: Option<&'static str>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, kind: &'static str) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400: malformed or out-of-range input.
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError { param, ..Self::new(StatusCode::BAD_REQUEST, message, "invalid_request_error") }
    }

    /// 400: the prompt does not fit the context.
    pub fn context_length(prompt: usize, context: usize, param: &'static str) -> Self {
        ApiError {
            param: Some(param),
            code: Some("context_length_exceeded"),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "This model's context holds {context} tokens, but the prompt is {prompt} tokens (at least one more is needed to answer); shorten the prompt or start the server with a larger --max-seq-len"
                ),
                "invalid_request_error",
            )
        }
    }

    /// 404: a model this server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        ApiError {
            param: Some("model"),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                format!("The model '{asked}' does not exist on this server; it serves '{served}' (GET /v1/models)"),
                "invalid_request_error",
            )
        }
    }

    /// 413: a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("The request body is larger than this server's limit of {limit} bytes"), "invalid_request_error")
    }

    /// 429: the queue is full.
    pub fn queue_full(message: String) -> Self {
        ApiError { code: Some("rate_limit_exceeded"), retry_after: Some(1), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message, "rate_limit_error") }
    }

    /// 503: loading or shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message, "server_error") }
    }

    /// 500: the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error")
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
