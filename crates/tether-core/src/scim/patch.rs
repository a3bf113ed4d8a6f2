//! PATCH operations (RFC 7644 §3.5.2) applied to a resource's JSON representation.
//!
//! The rules, by operation (the RFC section's bullets, in order):
//!
//! - **add** (§3.5.2.1). Without a path the value is an object whose members are added one by
//!   one (a member keyed by an extension schema URI holding an object adds each of its
//!   members to that extension). A multi-valued attribute gets the new values appended
//!   (values already present are not added twice: complex values with the same `value`
//!   sub-attribute count as present); a complex attribute gets the given sub-attributes
//!   merged in; anything else is set. With a value filter the matching values are updated,
//!   and when none matches and the filter is a conjunction of `eq` comparisons
//!   (`emails[type eq "work"].value`) a new value is appended carrying those sub-attributes
//!   (what Entra ID and Okta expect); otherwise `noTarget`.
//! - **replace** (§3.5.2.3). Without a path, as add but each attribute is replaced. A complex
//!   attribute gets the given sub-attributes merged in (others are left unchanged); a
//!   multi-valued one is replaced whole; a missing one is added. With a value filter the
//!   matching values (or their sub-attribute) are replaced, and when none matches: `noTarget`.
//!   A `null` value removes the target.
//! - **remove** (§3.5.2.2). A path is required (`noTarget` otherwise). Removing what is not
//!   there succeeds. With a value filter the matching values (or their sub-attribute) are
//!   removed. With a `value` (as Entra ID sends for group members:
//!   `{"op":"Remove","path":"members","value":[{"value":"id"}]}`) the given values are removed
//!   from the multi-valued attribute. An attribute left empty is removed (RFC 7643 §2.5).
//!
//! A `path` that is an extension's schema URI (`urn:…:enterprise:2.0:User`) names the whole
//! extension object: add/replace set the given attributes in it, remove drops it. Extension
//! objects keep `schemas` in step (listed when created, unlisted when left empty).
//!
//! `id`, `meta` and `groups` are read-only (RFC 7643 §3.1, §4.1.2): changing them answers
//! `mutability` (setting them to the value they already have is allowed, as clients echo them).
//! When a value with `primary: true` is added or replaced, the others lose `primary`
//! (RFC 7643 §2.4). Existing member names are matched without case and keep their spelling;
//! new members are spelled as in the request. Types and schema rules (is `userName` a string,
//! is the attribute known) are the caller's to check on the result.

use super::eval::{get_ignore_case, is_core_uri};
use super::filter::{CompValue, CompareOp, Filter};
use super::path::{parse_patch_path, AttrPath, PatchPath};
use super::{core_case_exact, matches, PATCH_OP_SCHEMA};
use serde_json::{Map, Value};

/// Most operations accepted in one PATCH request.
pub const MAX_PATCH_OPERATIONS: usize = 1000;

/// Which PATCH operation (`op`, any case: Entra ID sends `"Add"`, `"Replace"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    Add,
    Replace,
    Remove,
}

impl PatchOpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: PatchOpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Why a PATCH request or operation was refused; [`PatchError::scim_type`] is the RFC 7644
/// §3.12 `scimType` of the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    Mutability(String),
}

impl PatchError {
    pub fn scim_type(&self) -> &'static str {
        match self {
            PatchError::InvalidPath(_) => "invalidPath",
            PatchError::NoTarget(_) => "noTarget",
            PatchError::InvalidValue(_) => "invalidValue",
            PatchError::InvalidSyntax(_) => "invalidSyntax",
            PatchError::Mutability(_) => "mutability",
        }
    }
}

impl PatchOp {
    /// Reads a PATCH request body (RFC 7644 §3.5.2): `schemas` must list
    /// `urn:ietf:params:scim:api:messages:2.0:PatchOp`; `Operations` holds 1 to
    /// [`MAX_PATCH_OPERATIONS`] objects with `op`, optional `path` and `value`.
    pub fn from_json(body: &Value) -> Result<Vec<PatchOp>, PatchError> {
        let syntax = |m: String| PatchError::InvalidSyntax(m);
        let body = body
            .as_object()
            .ok_or_else(|| syntax("the PATCH body must be a JSON object".to_string()))?;
        let schemas = get_ignore_case(body, "schemas")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                syntax(format!(
                    "\"schemas\" must be an array holding \"{PATCH_OP_SCHEMA}\""
                ))
            })?;
        if !schemas.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        }) {
            return Err(syntax(format!(
                "\"schemas\" must hold \"{PATCH_OP_SCHEMA}\""
            )));
        }
        let operations = get_ignore_case(body, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| syntax("\"Operations\" must be an array of operations".to_string()))?;
        if operations.is_empty() {
            return Err(syntax("\"Operations\" is empty".to_string()));
        }
        if operations.len() > MAX_PATCH_OPERATIONS {
            return Err(syntax(format!(
                "\"Operations\" holds {} operations; at most {MAX_PATCH_OPERATIONS} are accepted",
                operations.len()
            )));
        }
        operations
            .iter()
            .enumerate()
            .map(|(i, operation)| PatchOp::from_operation(i, operation))
            .collect()
    }

    fn from_operation(index: usize, operation: &Value) -> Result<PatchOp, PatchError> {
        let n = index + 1;
        let operation = operation.as_object().ok_or_else(|| {
            PatchError::InvalidSyntax(format!("operation {n} is not a JSON object"))
        })?;
        let op_name = get_ignore_case(operation, "op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::InvalidSyntax(format!("operation {n} has no \"op\"")))?;
        let op = [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(op_name))
            .ok_or_else(|| {
                PatchError::InvalidSyntax(format!(
                    "operation {n}: \"op\" is {op_name:?}; expected \"add\", \"replace\" or \"remove\""
                ))
            })?;
        let path = match get_ignore_case(operation, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.trim().is_empty() => None,
            Some(Value::String(text)) => Some(parse_patch_path(text).map_err(|e| {
                PatchError::InvalidPath(format!(
                    "operation {n}: invalid path {text:?} at character {}: {}",
                    e.position, e.message
                ))
            })?),
            Some(_) => {
                return Err(PatchError::InvalidPath(format!(
                    "operation {n}: \"path\" must be a string"
                )))
            }
        };
        let value = get_ignore_case(operation, "value").cloned();
        match (op, &path, &value) {
            (PatchOpKind::Remove, None, _) => Err(PatchError::NoTarget(format!(
                "operation {n}: \"remove\" needs a \"path\""
            ))),
            (PatchOpKind::Add | PatchOpKind::Replace, _, None) => Err(PatchError::InvalidValue(
                format!("operation {n}: \"{}\" needs a \"value\"", op.as_str()),
            )),
            (PatchOpKind::Add | PatchOpKind::Replace, None, Some(v)) if !v.is_object() => {
                Err(PatchError::InvalidValue(format!(
                    "operation {n}: without a \"path\", \"value\" must be an object of attributes"
                )))
            }
            _ => Ok(PatchOp { op, path, value }),
        }
    }
}

/// Applies one operation to `resource` (a JSON object), or changes nothing and says why.
/// Apply a request's operations in order on a copy and keep the copy only if all succeed
/// (RFC 7644 §3.5.2: a PATCH is atomic).
pub fn apply_patch(resource: &mut Value, op: &PatchOp) -> Result<(), PatchError> {
    let Value::Object(root) = resource else {
        return Err(PatchError::InvalidValue(
            "the resource is not a JSON object".to_string(),
        ));
    };
    let mut copy = root.clone();
    match &op.path {
        Some(path) => apply_path(&mut copy, op.op, path, op.value.as_ref())?,
        None => apply_without_path(&mut copy, op)?,
    }
    *root = copy;
    Ok(())
}

/// Applies a request's operations in order, all or nothing (RFC 7644 §3.5.2): on error
/// `resource` is unchanged and the error names the operation.
pub fn apply_patches(resource: &mut Value, ops: &[PatchOp]) -> Result<(), PatchError> {
    let mut copy = resource.clone();
    for op in ops {
        apply_patch(&mut copy, op)?;
    }
    *resource = copy;
    Ok(())
}

fn apply_without_path(root: &mut Map<String, Value>, op: &PatchOp) -> Result<(), PatchError> {
    let Some(Value::Object(members)) = &op.value else {
        return Err(match op.op {
            PatchOpKind::Remove => PatchError::NoTarget("\"remove\" needs a \"path\"".to_string()),
            _ => PatchError::InvalidValue(format!(
                "without a \"path\", the value of \"{}\" must be an object of attributes",
                op.op.as_str()
            )),
        });
    };
    for (key, value) in members {
        if key.eq_ignore_ascii_case("schemas") {
            // The server keeps `schemas` in step with the extensions present.
            continue;
        }
        if is_extension_key(root, key, value) {
            apply_extension(root, op.op, key, Some(value))?;
            continue;
        }
        let attr = AttrPath::parse(key).map_err(|e| {
            PatchError::InvalidPath(format!(
                "{key:?} is not an attribute path (character {}: {})",
                e.position, e.message
            ))
        })?;
        let path = PatchPath {
            attr,
            filter: None,
            sub_attr: None,
        };
        apply_path(root, op.op, &path, Some(value))?;
    }
    Ok(())
}

/// An operation on a whole extension object (`path` or path-less value key
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`): add and replace set each
/// given attribute of the extension, remove drops the extension.
fn apply_extension(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    uri: &str,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let attributes = match (kind, value) {
        (PatchOpKind::Remove, _) | (PatchOpKind::Replace, Some(Value::Null)) => {
            if let Some(key) = key_ignore_case(root, uri) {
                root.insert(key, Value::Object(Map::new()));
            }
            drop_empty_extension(root, uri);
            return Ok(());
        }
        (_, Some(Value::Object(attributes))) => attributes,
        _ => {
            return Err(PatchError::InvalidValue(format!(
                "the value for extension \"{uri}\" must be an object of its attributes"
            )))
        }
    };
    for (name, member) in attributes {
        check_simple_name(name)?;
        let path = PatchPath {
            attr: AttrPath {
                uri: Some(uri.to_string()),
                name: name.clone(),
                sub_attr: None,
            },
            filter: None,
            sub_attr: None,
        };
        apply_attribute_path(root, kind, &path, Some(member))?;
    }
    Ok(())
}

/// Does `path` name a whole extension (`urn:…:enterprise:2.0:User`) rather than an
/// attribute (`urn:…:enterprise:2.0:User:department`)? See [`is_extension_key`].
fn extension_named(root: &Map<String, Value>, path: &PatchPath) -> Option<String> {
    if path.filter.is_some() || path.attr.sub_attr.is_some() {
        return None;
    }
    let full = format!("{}:{}", path.attr.uri.as_deref()?, path.attr.name);
    let capitalized = path.attr.name.starts_with(|c: char| c.is_ascii_uppercase());
    let known =
        get_ignore_case(root, &full).is_some_and(Value::is_object) || key_listed(root, &full);
    (known || capitalized && !is_core_uri(&full)).then_some(full)
}

fn check_simple_name(name: &str) -> Result<(), PatchError> {
    match AttrPath::parse(name) {
        Ok(p) if p.uri.is_none() && p.sub_attr.is_none() => Ok(()),
        _ => Err(PatchError::InvalidPath(format!(
            "{name:?} is not an attribute name"
        ))),
    }
}

/// Is `key` (a member of a path-less add/replace value) an extension schema URI whose value
/// holds that extension's attributes, rather than a URI-prefixed attribute path? It is if the
/// resource already has it or lists it in `schemas`, or if its last segment is capitalized
/// like schema names (`…:2.0:User`) and unlike attribute names (`…:User:department`).
fn is_extension_key(root: &Map<String, Value>, key: &str, value: &Value) -> bool {
    if !value.is_object() || !key.contains(':') || is_core_uri(key) && !key_listed(root, key) {
        return false;
    }
    let last = key.rsplit(':').next().unwrap_or("");
    get_ignore_case(root, key).is_some()
        || key_listed(root, key)
        || last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

fn key_listed(root: &Map<String, Value>, key: &str) -> bool {
    get_ignore_case(root, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(key)))
        })
}

fn apply_path(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    if let Some(extension) = extension_named(root, path) {
        return apply_extension(root, kind, &extension, value);
    }
    apply_attribute_path(root, kind, path, value)
}

/// [`apply_path`] for a path that names an attribute (not a whole extension).
fn apply_attribute_path(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    check_mutability(root, kind, path, value)?;
    let uri = path.attr.uri.as_deref().filter(|u| !is_core_uri(u));
    let creating = kind != PatchOpKind::Remove && !value.is_some_and(Value::is_null);
    let Some(container) = container(root, uri, creating)? else {
        return Ok(()); // removing from an extension the resource does not have
    };
    let result = match (&path.filter, &path.attr.sub_attr) {
        (None, None) => apply_attribute(container, kind, &path.attr.name, value),
        (None, Some(sub)) => apply_sub_attribute(container, kind, &path.attr.name, sub, value),
        (Some(filter), _) => apply_filtered(container, kind, path, filter, value),
    };
    if let Some(uri) = uri {
        drop_empty_extension(root, uri);
    }
    result
}

/// `id`, `meta` and `groups` cannot change (RFC 7643 §3.1, §4.1.2).
fn check_mutability(
    root: &Map<String, Value>,
    kind: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let attr = &path.attr;
    if attr.uri.as_deref().is_some_and(|u| !is_core_uri(u)) {
        return Ok(());
    }
    let Some(name) = ["id", "meta", "groups"]
        .into_iter()
        .find(|n| attr.name_is(n))
    else {
        return Ok(());
    };
    let unchanged = kind != PatchOpKind::Remove
        && path.filter.is_none()
        && attr.sub_attr.is_none()
        && value.is_some()
        && get_ignore_case(root, name) == value;
    if unchanged {
        return Ok(());
    }
    Err(PatchError::Mutability(format!(
        "\"{name}\" is read-only and cannot be changed with PATCH"
    )))
}

/// The object holding attributes of `uri` (the resource itself for core attributes).
fn container<'a>(
    root: &'a mut Map<String, Value>,
    uri: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, PatchError> {
    let Some(uri) = uri else {
        return Ok(Some(root));
    };
    let key = match key_ignore_case(root, uri) {
        Some(key) => key,
        None if create => {
            root.insert(uri.to_string(), Value::Object(Map::new()));
            list_schema(root, uri);
            uri.to_string()
        }
        None => return Ok(None),
    };
    match root.get_mut(&key) {
        Some(Value::Object(map)) => Ok(Some(map)),
        _ => Err(PatchError::InvalidValue(format!(
            "\"{uri}\" is not an object of extension attributes"
        ))),
    }
}

fn list_schema(root: &mut Map<String, Value>, uri: &str) {
    if let Some(key) = key_ignore_case(root, "schemas") {
        if let Some(Value::Array(schemas)) = root.get_mut(&key) {
            if !schemas
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(uri)))
            {
                schemas.push(Value::String(uri.to_string()));
            }
        }
    }
}

/// An extension left without attributes is removed, with its `schemas` entry.
fn drop_empty_extension(root: &mut Map<String, Value>, uri: &str) {
    let Some(key) = key_ignore_case(root, uri) else {
        return;
    };
    if root.get(&key).is_some_and(|v| !super::eval::is_assigned(v)) {
        root.remove(&key);
        if let Some(schemas_key) = key_ignore_case(root, "schemas") {
            if let Some(Value::Array(schemas)) = root.get_mut(&schemas_key) {
                schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(uri)));
            }
        }
    }
}

fn key_ignore_case(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Sets `map[name]` (keeping an existing member's spelling).
fn set_member(map: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_ignore_case(map, name).unwrap_or_else(|| name.to_string());
    map.insert(key, value);
}

fn remove_member(map: &mut Map<String, Value>, name: &str) {
    if let Some(key) = key_ignore_case(map, name) {
        map.remove(&key);
    }
}

/// `path` = an attribute, no sub-attribute, no filter.
fn apply_attribute(
    map: &mut Map<String, Value>,
    kind: PatchOpKind,
    name: &str,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let key = key_ignore_case(map, name);
    match kind {
        PatchOpKind::Remove => {
            let Some(key) = key else {
                return Ok(());
            };
            match (map.get_mut(&key), value) {
                (Some(Value::Array(items)), Some(given)) if !given.is_null() => {
                    let given: Vec<&Value> = match given {
                        Value::Array(list) => list.iter().collect(),
                        one => vec![one],
                    };
                    items.retain(|item| !given.iter().any(|g| same_value(item, g)));
                    if items.is_empty() {
                        map.remove(&key);
                    }
                }
                _ => {
                    map.remove(&key);
                }
            }
            Ok(())
        }
        PatchOpKind::Add | PatchOpKind::Replace => {
            let Some(value) = value else {
                return Err(PatchError::InvalidValue(format!(
                    "\"{}\" of \"{name}\" needs a value",
                    kind.as_str()
                )));
            };
            if value.is_null() {
                if kind == PatchOpKind::Add {
                    return Err(PatchError::InvalidValue(format!(
                        "cannot add null to \"{name}\""
                    )));
                }
                remove_member(map, name);
                return Ok(());
            }
            let existing = key.as_ref().and_then(|k| map.get_mut(k));
            match (existing, value) {
                (Some(Value::Array(items)), _) if kind == PatchOpKind::Add => {
                    let new: Vec<&Value> = match value {
                        Value::Array(list) => list.iter().collect(),
                        one => vec![one],
                    };
                    for item in new {
                        if !items.iter().any(|have| same_value(have, item)) {
                            if is_primary(item) {
                                clear_primary(items);
                            }
                            items.push(item.clone());
                        }
                    }
                    if items.is_empty() {
                        remove_member(map, name);
                    }
                }
                (Some(Value::Object(have)), Value::Object(given)) => {
                    merge(have, given);
                    if have.is_empty() {
                        remove_member(map, name);
                    }
                }
                (Some(Value::Array(items)), one) if !one.is_array() => {
                    // A multi-valued attribute replaced by one value holds that value.
                    *items = vec![one.clone()];
                }
                _ => {
                    if super::eval::is_assigned(value) {
                        set_member(map, name, value.clone());
                    } else {
                        remove_member(map, name);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Sub-attributes of `given` set into `have` (a `null` one removes).
fn merge(have: &mut Map<String, Value>, given: &Map<String, Value>) {
    for (name, value) in given {
        if value.is_null() {
            remove_member(have, name);
        } else {
            set_member(have, name, value.clone());
        }
    }
}

/// `path` = `attribute.subAttribute`, no filter.
fn apply_sub_attribute(
    map: &mut Map<String, Value>,
    kind: PatchOpKind,
    name: &str,
    sub: &str,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let key = key_ignore_case(map, name);
    if kind != PatchOpKind::Remove && value.is_none() {
        return Err(PatchError::InvalidValue(format!(
            "\"{}\" of \"{name}.{sub}\" needs a value",
            kind.as_str()
        )));
    }
    let removing = kind == PatchOpKind::Remove || value.is_some_and(Value::is_null);
    let target = match key.as_ref().and_then(|k| map.get_mut(k)) {
        Some(target) => target,
        None if removing => return Ok(()),
        None => {
            let mut object = Map::new();
            if let Some(v) = value {
                object.insert(sub.to_string(), v.clone());
            }
            map.insert(name.to_string(), Value::Object(object));
            return Ok(());
        }
    };
    let mut objects: Vec<&mut Map<String, Value>> = match target {
        Value::Object(object) => vec![object],
        // No filter on a multi-valued complex attribute: every value.
        Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
        _ => {
            return Err(PatchError::InvalidPath(format!(
                "\"{name}\" has no sub-attributes, so \"{name}.{sub}\" names nothing"
            )))
        }
    };
    for object in objects.iter_mut() {
        match value {
            Some(v) if !removing => set_member(object, sub, v.clone()),
            _ => remove_member(object, sub),
        }
    }
    if let Some(k) = key {
        if map.get(&k).is_some_and(|v| !super::eval::is_assigned(v)) {
            map.remove(&k);
        }
    }
    Ok(())
}

/// `path` = `attribute[filter]` or `attribute[filter].subAttribute`.
fn apply_filtered(
    map: &mut Map<String, Value>,
    kind: PatchOpKind,
    path: &PatchPath,
    filter: &Filter,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    let name = path.attr.name.as_str();
    let key = key_ignore_case(map, name);
    let outer = AttrPath::new(name);
    let wrapped = Filter::ValuePath {
        path: outer,
        filter: Box::new(filter.clone()),
    };
    // Each value of the attribute, tested as `{name: [value]}` so the filter sees it alone.
    let selects = |item: &Value| {
        let mut alone = Map::new();
        alone.insert(name.to_string(), item.clone());
        matches(&wrapped, &Value::Object(alone), &core_case_exact)
    };
    let removing = kind == PatchOpKind::Remove || value.is_some_and(Value::is_null);
    if kind != PatchOpKind::Remove && value.is_none() {
        return Err(PatchError::InvalidValue(format!(
            "\"{}\" of \"{path}\" needs a value",
            kind.as_str()
        )));
    }
    let mut placeholder = Value::Null;
    let target = match key.as_ref().and_then(|k| map.get_mut(k)) {
        Some(target) => target,
        None => &mut placeholder,
    };
    // A single complex value is filtered like a one-element list.
    let mut matched = 0usize;
    match target {
        Value::Array(items) => {
            if removing && path.sub_attr.is_none() {
                let before = items.len();
                items.retain(|item| !selects(item));
                matched = before - items.len();
            } else {
                let hits: Vec<usize> = (0..items.len()).filter(|i| selects(&items[*i])).collect();
                matched = hits.len();
                let makes_primary = value.is_some_and(|v| {
                    path.sub_attr
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("primary"))
                        && v == &Value::Bool(true)
                        || path.sub_attr.is_none() && is_primary(v)
                });
                if makes_primary && !removing {
                    for (i, item) in items.iter_mut().enumerate() {
                        if !hits.contains(&i) {
                            if let Some(obj) = item.as_object_mut() {
                                remove_primary(obj);
                            }
                        }
                    }
                }
                for i in hits {
                    update_value(&mut items[i], path, value, removing)?;
                }
            }
        }
        Value::Object(_) if selects(target) => {
            matched = 1;
            if removing && path.sub_attr.is_none() {
                *target = Value::Null;
            } else {
                update_value(target, path, value, removing)?;
            }
        }
        _ => {}
    }
    if let Some(k) = &key {
        if map.get(k).is_some_and(|v| !super::eval::is_assigned(v)) {
            map.remove(k);
        }
    }
    if matched > 0 || kind == PatchOpKind::Remove {
        return Ok(());
    }
    // Nothing matched. An `add` may create the value, in a multi-valued attribute only.
    let multi_valued = key
        .as_ref()
        .is_none_or(|k| map.get(k).is_none_or(Value::is_array));
    if kind == PatchOpKind::Add && multi_valued {
        if let (Some(mut fields), Some(value)) = (equalities(filter), value) {
            if value.is_null() {
                return Ok(());
            }
            match (&path.sub_attr, value) {
                (Some(sub), v) => {
                    fields.insert(sub.clone(), v.clone());
                }
                (None, Value::Object(given)) => merge(&mut fields, given),
                (None, _) => {
                    return Err(PatchError::InvalidValue(format!(
                        "the value for \"{path}\" must be an object"
                    )))
                }
            }
            let new = Value::Object(fields);
            return apply_attribute(map, PatchOpKind::Add, name, Some(&Value::Array(vec![new])));
        }
    }
    Err(PatchError::NoTarget(format!(
        "no value of \"{name}\" matches [{filter}]"
    )))
}

/// One selected value: its sub-attribute (or itself) replaced, merged or removed.
fn update_value(
    item: &mut Value,
    path: &PatchPath,
    value: Option<&Value>,
    removing: bool,
) -> Result<(), PatchError> {
    match (&path.sub_attr, item) {
        (Some(sub), Value::Object(object)) => {
            match value {
                Some(v) if !removing => set_member(object, sub, v.clone()),
                _ => remove_member(object, sub),
            }
            Ok(())
        }
        (Some(sub), _) => Err(PatchError::InvalidPath(format!(
            "the values of \"{}\" are not complex, so they have no \"{sub}\"",
            path.attr.name
        ))),
        (None, item) => {
            match (item, value) {
                (Value::Object(have), Some(Value::Object(given))) => merge(have, given),
                (item, Some(v)) => *item = v.clone(),
                (item, None) => *item = Value::Null,
            }
            Ok(())
        }
    }
}

/// `type eq "work" and primary eq true` as `{"type": "work", "primary": true}`; `None` if the
/// filter is anything but a conjunction of `eq` comparisons.
fn equalities(filter: &Filter) -> Option<Map<String, Value>> {
    let mut fields = Map::new();
    let mut stack = vec![filter];
    while let Some(f) = stack.pop() {
        match f {
            Filter::And(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } => {
                let v = match value {
                    CompValue::String(s) => Value::String(s.clone()),
                    CompValue::Number(n) => Value::Number(n.clone()),
                    CompValue::Bool(b) => Value::Bool(*b),
                    CompValue::Null => return None,
                };
                fields.insert(path.name.clone(), v);
            }
            _ => return None,
        }
    }
    Some(fields)
}

/// Are two values of a multi-valued attribute the same value? Complex values with a `value`
/// sub-attribute are the same when those are equal; others when equal as JSON.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            match (get_ignore_case(x, "value"), get_ignore_case(y, "value")) {
                (Some(vx), Some(vy)) => vx == vy,
                _ => a == b,
            }
        }
        _ => a == b,
    }
}

fn is_primary(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|o| get_ignore_case(o, "primary"))
        .is_some_and(|p| p == &Value::Bool(true))
}

fn clear_primary(items: &mut [Value]) {
    for item in items {
        if let Some(obj) = item.as_object_mut() {
            remove_primary(obj);
        }
    }
}

fn remove_primary(obj: &mut Map<String, Value>) {
    if let Some(key) = key_ignore_case(obj, "primary") {
        if obj.get(&key) == Some(&Value::Bool(true)) {
            obj.remove(&key);
        }
    }
}
