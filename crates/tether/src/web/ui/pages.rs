//! The admin screens.

use super::layout::{page, situation_badge, Nav};
use crate::web::auth::AdminPage;
use crate::web::AppState;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(dashboard))
}

async fn dashboard(State(state): State<AppState>, AdminPage(session): AdminPage) -> Response {
    let source = state.app.source(None).await.ok();
    let board = match state.app.dashboard(source.as_ref()).await {
        Ok(b) => b,
        Err(e) => return crate::web::error::ApiError::from(e).into_response(),
    };
    let body = html! {
        section.card {
            p { (board.users) " users." }
            div.grid {
                @for (name, n) in &board.situations {
                    a.tile href={"/users?situation=" (name)} { div.n { (n) } (situation_badge(name)) }
                }
            }
        }
    };
    Html(page("Dashboard", Nav::Dashboard, &session, body).into_string()).into_response()
}
