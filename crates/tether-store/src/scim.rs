//! The `scim` units of work: trait, records, and the dispatch for [`crate::AnyStore`].
