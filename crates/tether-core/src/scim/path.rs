//! Attribute paths (RFC 7644 §3.10) and PATCH paths (RFC 7644 §3.5.2).

use super::filter::{self, Filter, FilterError};
use std::fmt;

/// An attribute path: `[URI ":"] ATTRNAME ["." subAttr]`, e.g. `userName`, `name.givenName`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
///
/// Names keep the spelling of the text; compare them with [`AttrPath::is`], which ignores case
/// (RFC 7643 §2.1). Inside a value filter (`emails[type eq "work"]`) paths are relative to the
/// outer attribute and have neither URI nor sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URI, without the final `:` (`urn:ietf:params:scim:schemas:core:2.0:User`).
    pub uri: Option<String>,
    pub name: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path of one attribute name.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            uri: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// `name.sub_attr`.
    pub fn with_sub_attr(name: impl Into<String>, sub_attr: impl Into<String>) -> Self {
        AttrPath {
            uri: None,
            name: name.into(),
            sub_attr: Some(sub_attr.into()),
        }
    }

    /// Parses an attribute path alone (as in `attributes=`, `sortBy=`, or a key of a PATCH
    /// value); errors like [`super::parse_filter`].
    pub fn parse(text: &str) -> Result<AttrPath, FilterError> {
        filter::parse_attr_path_only(text)
    }

    /// Is this path `dotted` (`"userName"`, `"emails.value"`), ignoring case and the schema
    /// URI? `is("name")` is false for `name.givenName`: the sub-attribute must match too.
    pub fn is(&self, dotted: &str) -> bool {
        let (name, sub) = match dotted.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (dotted, None),
        };
        self.name.eq_ignore_ascii_case(name)
            && match (&self.sub_attr, sub) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }

    /// Does the attribute name (ignoring URI and sub-attribute) equal `name`, ignoring case?
    pub fn name_is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Is the schema URI absent or equal to `uri` (ignoring case)?
    pub fn uri_is_none_or(&self, uri: &str) -> bool {
        self.uri
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(uri))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// The `path` of a PATCH operation: `attrPath` or `valuePath ["." subAttr]`
/// (RFC 7644 §3.5.2): `members[value eq "x"]`, `emails[type eq "work"].value`,
/// `name.givenName`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
///
/// When `filter` is present `attr.sub_attr` is `None` and `sub_attr` may name the
/// sub-attribute after `]`; without a filter `sub_attr` is `None` and the sub-attribute, if
/// any, is in `attr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub_attr: Option<String>,
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Parses a PATCH path. Errors name the character where the path stopped making sense; the
/// web layer answers them with `scimType` `invalidPath`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, FilterError> {
    filter::parse_patch_path_impl(text)
}
