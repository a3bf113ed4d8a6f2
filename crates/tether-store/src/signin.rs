//! The `signin` units of work: trait, records, and the dispatch for [`crate::AnyStore`].
