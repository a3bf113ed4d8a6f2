//! tether-core: the pure domain of tether.
//!
//! E-mail match keys, the vocabulary of situations and fields, the link engine that plans
//! External ID changes, and the explanations shown to administrators.
//!
//! Architecture invariant: this crate knows nothing of SQL, HTTP, files, threads or the
//! clock. Every function is deterministic in its arguments.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod email;
pub mod engine;
pub mod explain;
pub mod model;
pub mod scim;
pub mod signin;

pub use email::{match_key, EmailKey, EmailNormalizer, InvalidEmail};
pub use engine::{
    plan_links, settle, AccountRow, Change, ChangeResult, Evidence, Outcome, Plan, Rules, UserRow,
};
pub use explain::{explain, AccountView, Context, Explanation, UserView};
pub use model::{AccountType, ExternalIdField, Origin, Situation, UnknownName};
