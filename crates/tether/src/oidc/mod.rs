//! OpenID Connect sign-in, the relying party side: configuration ([`config`]) and the
//! provider client with ID token validation ([`provider`]). The web layer
//! (`web/oidc.rs`) drives it; the sign-in decision itself is `tether_core::signin`, run by
//! `app::signin`. This module knows no store and no HTTP status codes, and reads no clock.

pub mod config;
pub mod provider;

pub use config::OidcConfig;
pub use provider::Provider;

#[cfg(test)]
mod tests;
