//! The REST API under /api/v1 (DESIGN §5): JSON in and out, bearer token (scope `admin`) or
//! an admin's session with the `X-CSRF-Token` header; errors carry a stable `code`. The
//! OpenAPI 3 document at /api/v1/openapi.json is generated from these handlers.

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
