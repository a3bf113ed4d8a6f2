//! The contract cases, by area. Each is `pub async fn case(store: &impl Store)` (or
//! `(db: &TestDb)` when it needs a raw connection) and is listed in `contract.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod admin;
pub mod audit;
pub mod import;
pub mod jobs;
pub mod linking;
pub mod misc;
pub mod reading;
pub mod scim;
pub mod signin;
pub mod sources;
