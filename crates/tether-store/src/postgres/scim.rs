//! scim: the postgres implementation of the `scim` units of work (see `crate::scim`).

#[allow(unused_imports)]
use super::*;
