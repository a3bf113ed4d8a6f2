//! jobs: the postgres implementation of the `jobs` units of work (see `crate::jobs`).

#[allow(unused_imports)]
use super::*;
