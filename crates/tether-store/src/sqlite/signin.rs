//! signin: the sqlite implementation of the `signin` units of work (see `crate::signin`).

#[allow(unused_imports)]
use super::*;
