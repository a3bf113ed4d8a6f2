//! Jobs routes: the API under /api/v1/jobs and the Jobs pages (filled in by the jobs work).

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Starts the background job runner of `tether serve` (called once by `web::serve`).
pub fn start_background(_state: &AppState) {}
