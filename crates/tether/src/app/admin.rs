//! admin use cases (see the parent module).

#[allow(unused_imports)]
use super::*;
