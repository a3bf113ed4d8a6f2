//! `tether serve --demo`: fills an empty database with a demo organisation (filled in below).

use crate::app::App;
use crate::error::AppResult;
use tether_store::Timestamp;

/// Seeds the demo and returns how to sign in.
pub async fn seed(_app: &App, _at: Timestamp) -> AppResult<String> {
    Ok(String::new())
}
