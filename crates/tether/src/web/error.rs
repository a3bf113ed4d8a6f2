//! The one error type at the HTTP edge: a status, a stable `code` and a human `message`,
//! rendered as JSON (DESIGN §5). Internal errors are logged with the request id and never sent.

use crate::error::AppError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tether_store::StoreError;

/// An API error. `code` is part of the contract: scripts match on it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, snake_case: `unauthorized`, `forbidden`, `not_found`, `invalid_input`,
    /// `conflict`, `too_many_requests`, `payload_too_large`, `internal`, …
    pub code: &'static str,
    pub message: String,
    /// The request parameter or field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details under this request's id",
        )
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Input(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            AppError::Field { field, message } => ApiError::invalid(&field, message),
            AppError::NotFound(message) => ApiError::not_found(message),
            AppError::Conflict(message) => ApiError::conflict(message),
            AppError::Store(err) => ApiError::from(err),
            AppError::Io(message) => {
                tracing::error!(error = %message, "i/o error");
                ApiError::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { message, .. } => ApiError::conflict(message),
            StoreError::NotFound(message) => ApiError::not_found(message),
            StoreError::Invalid(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            err @ (StoreError::InvalidUrl(_)
            | StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::Pool(_)
            | StoreError::Corrupt(_)
            | StoreError::Task(_)) => {
                tracing::error!(error = %err, "store error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
