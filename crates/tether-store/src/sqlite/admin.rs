//! admin: the sqlite implementation of the `admin` units of work (see `crate::admin`).

#[allow(unused_imports)]
use super::*;
