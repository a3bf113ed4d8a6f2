//! SCIM 2.0 use cases (RFC 7643/7644) over the application's users and groups.
//!
//! The web layer (`web/scim`) parses the request, calls one function here, and renders the
//! JSON it returns with the status its [`ScimErrorKind`] maps to. This module owns the SCIM
//! meaning: the schemas ([`schema`]), rendering users and groups as resources, checking and
//! canonicalizing request bodies, filters (answered from an index when they are equalities
//! on `id`, `userName`, `externalId` or `emails.value`, else by evaluating
//! [`tether_core::scim::matches`] over a bounded scan), sorting, paging, `attributes` /
//! `excludedAttributes`, ETags (`W/"…"`, a hash of the resource) and `If-Match`.
//!
//! A user's `externalId` is its External ID: the store writes it only inside the transaction
//! that read the state the request was applied to, refuses a value another user holds
//! (naming the holder), and audits it with origin `scim`.

pub mod schema;

use super::App;
use schema::{ResourceSchema, ERROR_SCHEMA, GROUP, LIST_SCHEMA, USER};
use serde_json::{json, Map, Value};
use tether_core::scim::{
    apply_patch, parse_filter, AttrPath, CompValue, CompareOp, Filter, PatchOp,
};
use tether_core::{match_key, EmailKey};
use tether_store::scim::{
    name_key, ScimContext, ScimGroup, ScimGroupOrder, ScimGroupWrite, ScimLookup, ScimPage,
    ScimStore, ScimUser, ScimUserOrder, ScimUserWrite,
};
use tether_store::{StoreError, Timestamp};

/// The largest page (`count`) served; advertised as `filter.maxResults`.
pub const MAX_RESULTS: u32 = 200;
/// A filter no index answers is evaluated over at most this many resources; on a larger
/// store it is refused with `tooMany`, naming the filters that are answered from an index.
pub const SCAN_LIMIT: u64 = 50_000;
/// An indexed filter matching more users than this is refused with `tooMany`.
pub const MAX_CANDIDATES: u32 = 10_000;

/// What kind of failure, for the web layer to turn into a status (RFC 7644 §3.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimErrorKind {
    /// 400: the request is wrong; `scim_type` says how.
    Invalid,
    /// 404.
    NotFound,
    /// 409 (`uniqueness`).
    Conflict,
    /// 412: `If-Match` does not match the resource's current version.
    PreconditionFailed,
    /// 501: a part of SCIM tether does not implement (e.g. `/Bulk`).
    NotImplemented,
    /// 413: the request body is larger than the server accepts.
    TooLarge,
    /// 500: logged, never sent.
    Internal,
}

/// A SCIM error: its kind, RFC 7644 §3.12 `scimType`, and a detail for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimError {
    pub kind: ScimErrorKind,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl ScimError {
    fn invalid(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError {
            kind: ScimErrorKind::Invalid,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }
    pub fn syntax(detail: impl Into<String>) -> Self {
        Self::invalid("invalidSyntax", detail)
    }
    pub fn value(detail: impl Into<String>) -> Self {
        Self::invalid("invalidValue", detail)
    }
    pub fn filter(detail: impl Into<String>) -> Self {
        Self::invalid("invalidFilter", detail)
    }
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::invalid("tooMany", detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::invalid("mutability", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        ScimError {
            kind: ScimErrorKind::NotFound,
            scim_type: None,
            detail: detail.into(),
        }
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        ScimError {
            kind: ScimErrorKind::NotImplemented,
            scim_type: None,
            detail: detail.into(),
        }
    }
    fn precondition(detail: impl Into<String>) -> Self {
        ScimError {
            kind: ScimErrorKind::PreconditionFailed,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// The RFC 7644 §3.12 body; `status` is the HTTP status the web layer chose.
    pub fn body(&self, status: u16) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.to_string(),
            "detail": self.detail,
        });
        if let (Some(scim_type), Value::Object(map)) = (self.scim_type, &mut body) {
            map.insert("scimType".into(), Value::from(scim_type));
        }
        body
    }
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { message, .. } => ScimError {
                kind: ScimErrorKind::Conflict,
                scim_type: Some("uniqueness"),
                detail: message,
            },
            StoreError::NotFound(what) => ScimError::not_found(format!("{what} not found")),
            StoreError::Invalid(message) => ScimError::value(message),
            other => ScimError {
                kind: ScimErrorKind::Internal,
                scim_type: None,
                detail: other.to_string(),
            },
        }
    }
}

pub type ScimResult<T> = Result<T, ScimError>;

/// Who calls, when, and the service's base URL (`http://host/scim/v2`) for `location`s.
#[derive(Clone, Copy, Debug)]
pub struct ScimCall<'a> {
    /// For the audit trail, e.g. `scim:okta` (the token's name).
    pub actor: &'a str,
    pub at: Timestamp,
    pub base: &'a str,
}

impl ScimCall<'_> {
    fn context(&self) -> ScimContext<'_> {
        ScimContext {
            actor: self.actor,
            at: self.at,
        }
    }
}

/// A rendered resource with what the web layer puts in headers.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub body: Value,
    /// `W/"…"`, also in `meta.version`.
    pub etag: String,
    pub location: String,
    /// The resource's core schema URI (for [`Projection::apply`]).
    pub core: &'static str,
}

/// The query of a list or `.search` (RFC 7644 §3.4.2, §3.4.3).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: u64,
    pub count: u32,
    pub projection: Projection,
}

fn parse_integer(name: &str, text: &str) -> ScimResult<i64> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::value(format!("\"{name}\" must be an integer, not \"{text}\"")))
}

impl ListQuery {
    /// From URL query parameters (RFC 7644 §3.4.2); unknown parameters are ignored.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> ScimResult<Self> {
        let mut filter = None;
        let mut sort_by = None;
        let mut sort_order = None;
        let mut start_index = None;
        let mut count = None;
        let mut attributes = None;
        let mut excluded = None;
        for (key, value) in params {
            match key {
                "filter" => filter = Some(value.to_owned()),
                "sortBy" => sort_by = Some(value.to_owned()),
                "sortOrder" => sort_order = Some(value.to_owned()),
                "startIndex" => start_index = Some(parse_integer(key, value)?),
                "count" => count = Some(parse_integer(key, value)?),
                "attributes" => attributes = Some(value.to_owned()),
                "excludedAttributes" => excluded = Some(value.to_owned()),
                _ => {}
            }
        }
        Self::build(
            filter,
            sort_by,
            sort_order,
            start_index,
            count,
            attributes.as_deref(),
            excluded.as_deref(),
        )
    }

    /// From a `.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> ScimResult<Self> {
        let Value::Object(object) = body else {
            return Err(ScimError::syntax(
                "the search request must be a JSON object",
            ));
        };
        let text = |name: &str| -> ScimResult<Option<String>> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::value(format!("\"{name}\" must be a string"))),
            }
        };
        let list = |name: &str| -> ScimResult<Option<String>> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Array(items)) => {
                    let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                    match names {
                        Some(names) => Ok(Some(names.join(","))),
                        None => Err(ScimError::value(format!("\"{name}\" must list strings"))),
                    }
                }
                Some(_) => Err(ScimError::value(format!("\"{name}\" must list strings"))),
            }
        };
        let integer = |name: &str| -> ScimResult<Option<i64>> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::value(format!("\"{name}\" must be an integer"))),
                Some(Value::String(s)) => parse_integer(name, s).map(Some),
                Some(_) => Err(ScimError::value(format!("\"{name}\" must be an integer"))),
            }
        };
        Self::build(
            text("filter")?,
            text("sortBy")?,
            text("sortOrder")?,
            integer("startIndex")?,
            integer("count")?,
            list("attributes")?.as_deref(),
            list("excludedAttributes")?.as_deref(),
        )
    }

    fn build(
        filter: Option<String>,
        sort_by: Option<String>,
        sort_order: Option<String>,
        start_index: Option<i64>,
        count: Option<i64>,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> ScimResult<Self> {
        let descending = match sort_order.as_deref() {
            None => false,
            Some(order) if order.eq_ignore_ascii_case("ascending") => false,
            Some(order) if order.eq_ignore_ascii_case("descending") => true,
            Some(order) => {
                return Err(ScimError::value(format!(
                    "\"sortOrder\" must be \"ascending\" or \"descending\", not \"{order}\""
                )))
            }
        };
        // RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0.
        let start_index = start_index.unwrap_or(1).max(1) as u64;
        let count = count.unwrap_or(i64::from(MAX_RESULTS)).max(0);
        if count > i64::from(MAX_RESULTS) {
            return Err(ScimError::too_many(format!(
                "\"count\" is {count}; at most {MAX_RESULTS} resources are returned per page \
                 (ServiceProviderConfig filter.maxResults): page with startIndex"
            )));
        }
        let filter = filter.filter(|f| !f.trim().is_empty());
        Ok(ListQuery {
            filter,
            sort_by: sort_by.filter(|s| !s.trim().is_empty()),
            descending,
            start_index,
            count: count as u32,
            projection: Projection::parse(attributes, excluded)?,
        })
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5). `id` and `schemas` are always
/// returned (`returned: always`), as is `meta` when `attributes` does not name it... only if
/// it is not excluded.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    attributes: Vec<AttrPath>,
    excluded: Vec<AttrPath>,
}

fn parse_paths(name: &str, text: Option<&str>) -> ScimResult<Vec<AttrPath>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            AttrPath::parse(p).map_err(|e| {
                ScimError::value(format!(
                    "\"{name}\": invalid attribute path \"{p}\": {}",
                    e.message
                ))
            })
        })
        .collect()
}

/// Finds `key` in `object` ignoring case.
fn key_of<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    object.keys().find(|k| k.eq_ignore_ascii_case(name))
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Self> {
        Ok(Projection {
            attributes: parse_paths("attributes", attributes)?,
            excluded: parse_paths("excludedAttributes", excluded)?,
        })
    }

    /// Applies the projection to a rendered resource whose core schema is `core`.
    pub fn apply(&self, resource: Value, core: &str) -> Value {
        let Value::Object(mut object) = resource else {
            return resource;
        };
        const ALWAYS: [&str; 2] = ["id", "schemas"];
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for key in ALWAYS {
                if let Some(value) = object.remove(key) {
                    kept.insert(key.to_owned(), value);
                }
            }
            for path in &self.attributes {
                // The container: the top level, or an extension's object.
                let (source, target): (Option<&mut Map<String, Value>>, &mut Map<String, Value>) =
                    match &path.uri {
                        Some(uri) if !uri.eq_ignore_ascii_case(core) => {
                            let Some(key) = key_of(&object, uri).cloned() else {
                                continue;
                            };
                            let entry = kept
                                .entry(key.clone())
                                .or_insert_with(|| Value::Object(Map::new()));
                            let (Some(Value::Object(src)), Value::Object(dst)) =
                                (object.get_mut(&key), entry)
                            else {
                                continue;
                            };
                            (Some(src), dst)
                        }
                        _ => (Some(&mut object), &mut kept),
                    };
                let Some(source) = source else { continue };
                let Some(key) = key_of(source, &path.name).cloned() else {
                    continue;
                };
                match &path.sub_attr {
                    None => {
                        if let Some(value) = source.get(&key) {
                            target.insert(key, value.clone());
                        }
                    }
                    Some(sub) => {
                        let Some(value) = source.get(&key) else {
                            continue;
                        };
                        let picked = pick_sub(value, sub, target.get(&key));
                        if let Some(picked) = picked {
                            target.insert(key, picked);
                        }
                    }
                }
            }
            object = kept;
        }
        for path in &self.excluded {
            if ALWAYS.iter().any(|a| path.is(a)) {
                continue;
            }
            let container = match &path.uri {
                Some(uri) if !uri.eq_ignore_ascii_case(core) => {
                    let Some(key) = key_of(&object, uri).cloned() else {
                        continue;
                    };
                    match object.get_mut(&key) {
                        Some(Value::Object(inner)) => inner,
                        _ => continue,
                    }
                }
                _ => &mut object,
            };
            let Some(key) = key_of(container, &path.name).cloned() else {
                continue;
            };
            match &path.sub_attr {
                None => {
                    container.remove(&key);
                }
                Some(sub) => match container.get_mut(&key) {
                    Some(Value::Object(inner)) => {
                        if let Some(k) = key_of(inner, sub).cloned() {
                            inner.remove(&k);
                        }
                    }
                    Some(Value::Array(items)) => {
                        for item in items {
                            if let Value::Object(inner) = item {
                                if let Some(k) = key_of(inner, sub).cloned() {
                                    inner.remove(&k);
                                }
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
        // An extension emptied by the projection is dropped.
        object.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()));
        Value::Object(object)
    }
}

/// `value` (an object or array of objects) with only sub-attribute `sub`, merged into what
/// an earlier path of the same attribute already picked.
fn pick_sub(value: &Value, sub: &str, already: Option<&Value>) -> Option<Value> {
    let pick = |item: &Value, prior: Option<&Value>| -> Option<Value> {
        let Value::Object(inner) = item else {
            return None;
        };
        let mut out = match prior {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(k) = key_of(inner, sub) {
            out.insert(k.clone(), inner[k].clone());
        }
        Some(Value::Object(out))
    };
    match value {
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let prior = match already {
                        Some(Value::Array(prior)) => prior.get(i),
                        _ => None,
                    };
                    pick(item, prior)
                })
                .collect(),
        )),
        Value::Object(_) => pick(value, already),
        _ => None,
    }
}

// --- rendering -------------------------------------------------------------------------------

fn rfc3339(at: Timestamp) -> Option<String> {
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// `W/"…"`: the first 64 bits of the SHA-256 of the resource without `meta`, so every change
/// by any path (an import, a reconcile, SCIM) changes it and no version column is needed.
fn etag_of(body: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.to_string().as_bytes());
    format!("W/\"{}\"", hex::encode(&digest[..8]))
}

/// Marks, in the stored attributes, a user whose SCIM `active` is unassigned (a name no SCIM
/// attribute can have, so it never reaches a client).
const ACTIVE_UNASSIGNED: &str = "tether:activeUnassigned";

/// The e-mail a resource's `emails` project onto the user's e-mail column: the primary one,
/// else the first (RFC 7643 §2.4).
fn chosen_email(emails: Option<&Value>) -> Option<(usize, String)> {
    let Some(Value::Array(items)) = emails else {
        return None;
    };
    let index = items
        .iter()
        .position(|e| e.get("primary") == Some(&Value::Bool(true)))
        .unwrap_or(0);
    let value = items.get(index)?.get("value")?.as_str()?;
    Some((index, value.to_owned()))
}

fn render_user(user: &ScimUser, base: &str) -> Rendered {
    let mut object = Map::new();
    let extras = match &user.attributes {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut schemas = vec![Value::from(schema::USER_SCHEMA)];
    if extras.contains_key(schema::ENTERPRISE_SCHEMA) {
        schemas.push(Value::from(schema::ENTERPRISE_SCHEMA));
    }
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert("id".into(), Value::from(user.id.as_str()));
    if let Some(external_id) = &user.external_id {
        object.insert("externalId".into(), Value::from(external_id.as_str()));
    }
    object.insert("userName".into(), Value::from(user.username.as_str()));
    if !user.display_name.is_empty() {
        object.insert(
            "displayName".into(),
            Value::from(user.display_name.as_str()),
        );
    }
    let mut extras = extras;
    if extras.remove(ACTIVE_UNASSIGNED).is_none() || !user.active {
        object.insert("active".into(), Value::Bool(user.active));
    }
    for (key, value) in extras {
        object.insert(key, value);
    }
    // The e-mail column is the truth (an import may have changed it since SCIM wrote).
    let chosen = chosen_email(object.get("emails"));
    match (&user.email, chosen) {
        (Some(email), Some((index, value))) if *email != value => {
            if let Some(Value::Array(items)) = object.get_mut("emails") {
                if let Some(Value::Object(item)) = items.get_mut(index) {
                    item.insert("value".into(), Value::from(email.as_str()));
                }
            }
        }
        (Some(email), None) => {
            object.insert("emails".into(), json!([{"value": email, "primary": true}]));
        }
        (None, Some((index, _))) => {
            if let Some(Value::Array(items)) = object.get_mut("emails") {
                items.remove(index);
                if items.is_empty() {
                    object.remove("emails");
                }
            }
        }
        _ => {}
    }
    let mut body = Value::Object(object);
    let etag = etag_of(&body);
    let location = format!("{base}/Users/{}", user.id);
    let mut meta = Map::new();
    meta.insert("resourceType".into(), Value::from("User"));
    if let Some(created) = user.created_at.and_then(rfc3339) {
        meta.insert("created".into(), Value::from(created));
    }
    if let Some(modified) = user.modified_at.and_then(rfc3339) {
        meta.insert("lastModified".into(), Value::from(modified));
    }
    meta.insert("location".into(), Value::from(location.as_str()));
    meta.insert("version".into(), Value::from(etag.as_str()));
    if let Value::Object(object) = &mut body {
        object.insert("meta".into(), Value::Object(meta));
    }
    Rendered {
        body,
        etag,
        location,
        core: USER_CORE,
    }
}

fn render_group(group: &ScimGroup, base: &str) -> Rendered {
    let mut object = Map::new();
    object.insert("schemas".into(), json!([schema::GROUP_SCHEMA]));
    object.insert("id".into(), Value::from(group.id.as_str()));
    if let Some(external_id) = &group.external_id {
        object.insert("externalId".into(), Value::from(external_id.as_str()));
    }
    object.insert(
        "displayName".into(),
        Value::from(group.display_name.as_str()),
    );
    if let Value::Object(extras) = &group.attributes {
        for (key, value) in extras {
            object.insert(key.clone(), value.clone());
        }
    }
    if !group.members.is_empty() {
        let members: Vec<Value> = group
            .members
            .iter()
            .map(|m| {
                json!({
                    "value": m.user_id,
                    "$ref": format!("{base}/Users/{}", m.user_id),
                    "type": "User",
                })
            })
            .collect();
        object.insert("members".into(), Value::Array(members));
    }
    let mut body = Value::Object(object);
    let etag = etag_of(&body);
    let location = format!("{base}/Groups/{}", group.id);
    if let Value::Object(object) = &mut body {
        object.insert(
            "meta".into(),
            json!({
                "resourceType": "Group",
                "created": rfc3339(group.created_at),
                "lastModified": rfc3339(group.modified_at),
                "location": location,
                "version": etag,
            }),
        );
    }
    Rendered {
        body,
        etag,
        location,
        core: GROUP_CORE,
    }
}

/// The resource without `meta`, as PATCH operations see it.
fn without_meta(mut body: Value) -> Value {
    if let Value::Object(object) = &mut body {
        object.remove("meta");
    }
    body
}

// --- request bodies --------------------------------------------------------------------------

fn user_write(mut resource: Map<String, Value>) -> ScimUserWrite {
    let username = match resource.remove("userName") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let external_id = match resource.remove("externalId") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let display_name = match resource.remove("displayName") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let active = match resource.remove("active") {
        Some(Value::Bool(active)) => active,
        // Unassigned (omitted or removed by a PATCH): the user stays usable in the
        // application, and SCIM shows the attribute unassigned, as it was written.
        _ => {
            resource.insert(ACTIVE_UNASSIGNED.into(), Value::Bool(true));
            true
        }
    };
    resource.remove("schemas");
    let email = chosen_email(resource.get("emails")).map(|(_, value)| value);
    let email = email.filter(|e| !e.trim().is_empty());
    let email_key = match match_key(email.as_deref()) {
        EmailKey::Valid(key) => Some(key),
        _ => None,
    };
    ScimUserWrite {
        username_key: name_key(&username),
        username,
        email,
        email_key,
        display_name,
        active,
        external_id,
        attributes: if resource.is_empty() {
            Value::Null
        } else {
            Value::Object(resource)
        },
    }
}

fn group_write(mut resource: Map<String, Value>) -> ScimResult<ScimGroupWrite> {
    let display_name = match resource.remove("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        _ => return Err(ScimError::value("\"displayName\" is required")),
    };
    let external_id = match resource.remove("externalId") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    resource.remove("schemas");
    let mut members = Vec::new();
    if let Some(Value::Array(items)) = resource.remove("members") {
        for item in items {
            if let Some(kind) = item.get("type").and_then(Value::as_str) {
                if !kind.eq_ignore_ascii_case("User") {
                    return Err(ScimError::value(format!(
                        "members of type \"{kind}\" are not supported: tether groups hold users"
                    )));
                }
            }
            let value = match item.get("value").and_then(Value::as_str) {
                Some(value) => value.to_owned(),
                None => match item.get("$ref").and_then(Value::as_str) {
                    Some(reference) => reference.rsplit('/').next().unwrap_or_default().to_owned(),
                    None => {
                        return Err(ScimError::value(
                            "every member needs a \"value\" (a user's id)",
                        ))
                    }
                },
            };
            if !members.contains(&value) {
                members.push(value);
            }
        }
    }
    Ok(ScimGroupWrite {
        display_name_key: name_key(&display_name),
        display_name,
        external_id,
        attributes: Value::Object(resource),
        members,
    })
}

/// Refuses an `If-Match` that does not name the current version (RFC 7644 §3.14).
fn check_if_match(if_match: Option<&str>, etag: &str) -> ScimResult<()> {
    let Some(if_match) = if_match else {
        return Ok(());
    };
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let current = strip(etag);
    if if_match
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == current)
    {
        Ok(())
    } else {
        Err(ScimError::precondition(format!(
            "If-Match {if_match} does not match the current version {etag}"
        )))
    }
}

/// One step of a PATCH request.
enum PatchStep {
    Op(Box<PatchOp>),
    /// `remove` of a whole extension (`path` is its schema URI).
    RemoveExtension(&'static str),
}

/// Reads a PATCH body. An operation whose `path` is an extension's schema URI names the
/// whole extension object (RFC 7644 §3.5.2: "urn:…:enterprise:2.0:User" is the extension, not
/// attribute `User` of schema `urn:…:2.0`): `add`/`replace` become path-less operations
/// whose value holds the extension, `remove` drops it.
fn patch_steps(body: &Value, schema: &ResourceSchema) -> ScimResult<Vec<PatchStep>> {
    let invalid =
        |e: tether_core::scim::PatchError| ScimError::invalid(e.scim_type(), e.to_string());
    // Checks the request as a whole first (schemas, Operations, count, each op's shape).
    let ops = PatchOp::from_json(body).map_err(invalid)?;
    let raw = body
        .as_object()
        .and_then(|o| key_of(o, "Operations").and_then(|k| o.get(k)))
        .and_then(Value::as_array);
    let Some(raw) = raw else {
        return Ok(ops
            .into_iter()
            .map(|op| PatchStep::Op(Box::new(op)))
            .collect());
    };
    let mut steps = Vec::with_capacity(ops.len());
    for (op, raw_op) in ops.into_iter().zip(raw) {
        let object = raw_op.as_object();
        let path = object
            .and_then(|o| key_of(o, "path").and_then(|k| o.get(k)))
            .and_then(Value::as_str)
            .map(str::trim);
        let extension = path.and_then(|p| {
            schema
                .extensions
                .iter()
                .map(|(uri, _)| *uri)
                .find(|uri| uri.eq_ignore_ascii_case(p))
        });
        let Some(uri) = extension else {
            steps.push(PatchStep::Op(Box::new(op)));
            continue;
        };
        match op.op {
            tether_core::scim::PatchOpKind::Remove => steps.push(PatchStep::RemoveExtension(uri)),
            _ => {
                let value = op.value.clone().unwrap_or(Value::Null);
                let whole = json!({
                    "schemas": [tether_core::scim::PATCH_OP_SCHEMA],
                    "Operations": [{"op": op.op.as_str(), "value": {uri: value}}],
                });
                let rewritten = PatchOp::from_json(&whole).map_err(invalid)?;
                steps.extend(rewritten.into_iter().map(|op| PatchStep::Op(Box::new(op))));
            }
        }
    }
    Ok(steps)
}

/// Applies PATCH steps to a rendered resource (without `meta`), atomically. `schemas` is
/// derived again from the attributes present, so operations need not maintain it.
fn patched(current: Value, steps: &[PatchStep]) -> ScimResult<Value> {
    let id = current.get("id").cloned();
    let mut resource = current;
    for step in steps {
        match step {
            PatchStep::Op(op) => apply_patch(&mut resource, op)
                .map_err(|e| ScimError::invalid(e.scim_type(), e.to_string()))?,
            PatchStep::RemoveExtension(uri) => {
                if let Value::Object(object) = &mut resource {
                    if let Some(key) = key_of(object, uri).cloned() {
                        object.remove(&key);
                    }
                }
            }
        }
    }
    if resource.get("id") != id.as_ref() {
        return Err(ScimError::mutability("\"id\" is read-only"));
    }
    if let Value::Object(object) = &mut resource {
        object.remove("schemas");
    }
    Ok(resource)
}

/// What the store may write for a user, given what it holds now: an External ID change of a
/// user an admin excluded from linking is refused (excluded users are never changed).
fn guard_user_write(current: &ScimUser, new: &ScimUserWrite) -> ScimResult<()> {
    if current.excluded && current.external_id != new.external_id {
        return Err(ScimError::mutability(format!(
            "user '{}' is excluded from linking by an administrator: its externalId (External ID) \
             does not change",
            current.id
        )));
    }
    Ok(())
}

// --- filters ---------------------------------------------------------------------------------

fn is_user_path(path: &AttrPath, dotted: &str) -> bool {
    path.uri_is_none_or(schema::USER_SCHEMA) && path.is(dotted)
}

fn email_lookup(value: &str) -> ScimLookup {
    match match_key(Some(value)) {
        EmailKey::Valid(key) => ScimLookup::EmailKey(key),
        // No user has an invalid address as its key: this lookup matches nothing.
        _ => ScimLookup::EmailKey(String::new()),
    }
}

/// The index lookups whose union is exactly the users `filter` matches, when there are.
fn exact_user_lookups(filter: &Filter) -> Option<Vec<ScimLookup>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(value),
        } => {
            if is_user_path(path, "id") {
                Some(vec![ScimLookup::Id(value.clone())])
            } else if is_user_path(path, "userName") {
                Some(vec![ScimLookup::UserNameKey(name_key(value))])
            } else if is_user_path(path, "externalId") {
                Some(vec![ScimLookup::ExternalId(value.clone())])
            } else if is_user_path(path, "emails.value") {
                Some(vec![email_lookup(value)])
            } else {
                None
            }
        }
        Filter::ValuePath { path, filter } if is_user_path(path, "emails") => match &**filter {
            Filter::Compare {
                path: inner,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            } if inner.is("value") => Some(vec![email_lookup(value)]),
            _ => None,
        },
        Filter::Or(a, b) => {
            let mut lookups = exact_user_lookups(a)?;
            lookups.extend(exact_user_lookups(b)?);
            Some(lookups)
        }
        _ => None,
    }
}

/// Index lookups whose union holds every user `filter` matches (and maybe more).
fn candidate_user_lookups(filter: &Filter) -> Option<Vec<ScimLookup>> {
    match filter {
        Filter::And(a, b) => candidate_user_lookups(a).or_else(|| candidate_user_lookups(b)),
        Filter::Or(a, b) => {
            let mut lookups = candidate_user_lookups(a)?;
            lookups.extend(candidate_user_lookups(b)?);
            Some(lookups)
        }
        other => exact_user_lookups(other),
    }
}

fn parse_scim_filter(text: &str) -> ScimResult<Filter> {
    parse_filter(text).map_err(|e| {
        ScimError::filter(format!(
            "invalid filter at character {}: {}",
            e.position, e.message
        ))
    })
}

const INDEXED: &str =
    "userName eq, externalId eq, id eq, emails.value eq (and or-combinations of them)";

/// The value a resource sorts by (RFC 7644 §3.4.2.3): for a multi-valued attribute, the
/// primary value, else the first.
fn sort_value(resource: &Value, path: &AttrPath) -> Option<Value> {
    let object = resource.as_object()?;
    let container = match &path.uri {
        Some(uri)
            if !uri.to_ascii_lowercase().ends_with(":core:2.0:user")
                && !uri.to_ascii_lowercase().ends_with(":core:2.0:group") =>
        {
            object.get(key_of(object, uri)?)?.as_object()?
        }
        _ => object,
    };
    let value = container.get(key_of(container, &path.name)?)?;
    let value = match value {
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first())?,
        other => other,
    };
    match &path.sub_attr {
        Some(sub) => {
            let inner = value.as_object()?;
            inner.get(key_of(inner, sub)?).cloned()
        }
        None => Some(value.clone()),
    }
}

fn compare_sort(a: &Option<Value>, b: &Option<Value>, exact: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        // Unassigned values sort last ascending (RFC 7644 §3.4.2.3).
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Value::String(x)), Some(Value::String(y))) => {
            if exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

fn sort_rendered(items: &mut [Rendered], sort_by: Option<&AttrPath>, descending: bool) {
    let Some(path) = sort_by else { return };
    let exact = schema::case_exact(path);
    let mut keyed: Vec<(Option<Value>, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, r)| (sort_value(&r.body, path), i))
        .collect();
    keyed.sort_by(|(a, i), (b, j)| {
        let ordering = compare_sort(a, b, exact);
        let ordering = if descending {
            ordering.reverse()
        } else {
            ordering
        };
        ordering.then(i.cmp(j))
    });
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let sorted: Vec<Rendered> = order.iter().map(|&i| items[i].clone()).collect();
    items.clone_from_slice(&sorted);
}

fn parse_sort_by(sort_by: Option<&str>) -> ScimResult<Option<AttrPath>> {
    sort_by
        .map(|s| {
            AttrPath::parse(s).map_err(|e| {
                ScimError::value(format!(
                    "\"sortBy\": invalid attribute path \"{s}\": {}",
                    e.message
                ))
            })
        })
        .transpose()
}

fn user_order(path: &AttrPath) -> Option<ScimUserOrder> {
    let core = path.uri_is_none_or(schema::USER_SCHEMA);
    if !core {
        return None;
    }
    Some(if path.is("id") {
        ScimUserOrder::Id
    } else if path.is("userName") {
        ScimUserOrder::UserName
    } else if path.is("displayName") {
        ScimUserOrder::DisplayName
    } else if path.is("emails.value") || path.is("emails") {
        ScimUserOrder::Email
    } else if path.is("meta.created") {
        ScimUserOrder::Created
    } else if path.is("meta.lastModified") {
        ScimUserOrder::Modified
    } else {
        return None;
    })
}

fn group_order(path: &AttrPath) -> Option<ScimGroupOrder> {
    Some(if path.is("id") {
        ScimGroupOrder::Id
    } else if path.is("displayName") {
        ScimGroupOrder::DisplayName
    } else if path.is("meta.created") {
        ScimGroupOrder::Created
    } else if path.is("meta.lastModified") {
        ScimGroupOrder::Modified
    } else {
        return None;
    })
}

/// A ListResponse (RFC 7644 §3.4.2) of one page of `items`, counted from `total`.
fn list_response(total: u64, query: &ListQuery, page: Vec<Rendered>) -> Value {
    let resources: Vec<Value> = page
        .into_iter()
        .map(|r| query.projection.apply(r.body, r.core))
        .collect();
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// One page of already filtered and sorted resources.
fn page_of(items: Vec<Rendered>, query: &ListQuery) -> Vec<Rendered> {
    let skip = usize::try_from(query.start_index - 1).unwrap_or(usize::MAX);
    items
        .into_iter()
        .skip(skip)
        .take(query.count as usize)
        .collect()
}

/// Formats 16 random bytes as a version 4 UUID (RFC 9562 §5.4), the id of a new resource.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The discovery documents (RFC 7644 §4): they need no store.
pub mod discovery {
    use super::*;

    pub fn service_provider_config(base: &str) -> Value {
        schema::service_provider_config(base, MAX_RESULTS)
    }

    pub fn resource_types(base: &str) -> Value {
        let resources: Vec<Value> = schema::RESOURCE_TYPE_NAMES
            .iter()
            .filter_map(|name| schema::resource_type_json(name, base))
            .collect();
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })
    }

    pub fn resource_type(base: &str, name: &str) -> ScimResult<Value> {
        schema::RESOURCE_TYPE_NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .and_then(|n| schema::resource_type_json(n, base))
            .ok_or_else(|| ScimError::not_found(format!("resource type '{name}' not found")))
    }

    pub fn schemas(base: &str) -> Value {
        let resources: Vec<Value> = schema::SCHEMA_IDS
            .iter()
            .filter_map(|id| schema::schema_json(id, base))
            .collect();
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })
    }

    pub fn schema(base: &str, id: &str) -> ScimResult<Value> {
        schema::SCHEMA_IDS
            .iter()
            .find(|s| s.eq_ignore_ascii_case(id))
            .and_then(|s| schema::schema_json(s, base))
            .ok_or_else(|| ScimError::not_found(format!("schema '{id}' not found")))
    }
}

/// The core schema URI of users, for [`Projection::apply`].
pub const USER_CORE: &str = schema::USER_SCHEMA;
/// The core schema URI of groups, for [`Projection::apply`].
pub const GROUP_CORE: &str = schema::GROUP_SCHEMA;

fn canonical(schema: &ResourceSchema, body: &Value) -> ScimResult<Map<String, Value>> {
    schema.canonicalize(body)
}

impl App {
    // --- users ---------------------------------------------------------------------------

    /// `GET /Users` and `POST /Users/.search` (RFC 7644 §3.4.2, §3.4.3).
    pub async fn scim_list_users(
        &self,
        call: &ScimCall<'_>,
        query: &ListQuery,
    ) -> ScimResult<Value> {
        let sort_by = parse_sort_by(query.sort_by.as_deref())?;
        let Some(text) = &query.filter else {
            // No filter: SQL pages, in an order SQL can sort by.
            let order = match &sort_by {
                None => Some(ScimUserOrder::Pk),
                Some(path) => user_order(path),
            };
            let total = self.store.count_scim_users().await?;
            if let Some(order) = order {
                let users = self
                    .store
                    .list_scim_users(&ScimPage {
                        order,
                        descending: query.descending,
                        offset: query.start_index - 1,
                        limit: query.count,
                    })
                    .await?;
                let page = users.iter().map(|u| render_user(u, call.base)).collect();
                return Ok(list_response(total, query, page));
            }
            let everything = self.scan_users(call, total, "sortBy").await?;
            return Ok(self.finish_list(everything, sort_by.as_ref(), query));
        };
        let filter = parse_scim_filter(text)?;
        let matched = self.user_matches(call, &filter).await?;
        Ok(self.finish_list(matched, sort_by.as_ref(), query))
    }

    fn finish_list(
        &self,
        mut items: Vec<Rendered>,
        sort_by: Option<&AttrPath>,
        query: &ListQuery,
    ) -> Value {
        sort_rendered(&mut items, sort_by, query.descending);
        let total = items.len() as u64;
        list_response(total, query, page_of(items, query))
    }

    /// Every user `filter` matches: from an index when it can, else by a bounded scan.
    async fn user_matches(
        &self,
        call: &ScimCall<'_>,
        filter: &Filter,
    ) -> ScimResult<Vec<Rendered>> {
        let matches =
            |r: &Rendered| tether_core::scim::matches(filter, &r.body, &schema::case_exact);
        Ok(if let Some(lookups) = exact_user_lookups(filter) {
            self.indexed_users(call, &lookups).await?
        } else if let Some(lookups) = candidate_user_lookups(filter) {
            self.indexed_users(call, &lookups)
                .await?
                .into_iter()
                .filter(|r| matches(r))
                .collect()
        } else {
            let total = self.store.count_scim_users().await?;
            self.scan_users(call, total, "filter")
                .await?
                .into_iter()
                .filter(|r| matches(r))
                .collect()
        })
    }

    async fn indexed_users(
        &self,
        call: &ScimCall<'_>,
        lookups: &[ScimLookup],
    ) -> ScimResult<Vec<Rendered>> {
        let users = self
            .store
            .find_scim_users(lookups, MAX_CANDIDATES + 1)
            .await?;
        if users.len() > MAX_CANDIDATES as usize {
            return Err(ScimError::too_many(format!(
                "the filter matches more than {MAX_CANDIDATES} users: narrow it"
            )));
        }
        Ok(users.iter().map(|u| render_user(u, call.base)).collect())
    }

    async fn scan_users(
        &self,
        call: &ScimCall<'_>,
        total: u64,
        what: &str,
    ) -> ScimResult<Vec<Rendered>> {
        if total > SCAN_LIMIT {
            return Err(ScimError::too_many(format!(
                "this {what} is evaluated by reading every user, and there are {total} (more than \
                 {SCAN_LIMIT}); filters answered from an index: {INDEXED}; sortBy on large lists: \
                 userName, id, displayName, emails.value, meta.created, meta.lastModified"
            )));
        }
        let users = self
            .store
            .list_scim_users(&ScimPage {
                order: ScimUserOrder::Pk,
                descending: false,
                offset: 0,
                limit: u32::try_from(SCAN_LIMIT).unwrap_or(u32::MAX),
            })
            .await?;
        Ok(users.iter().map(|u| render_user(u, call.base)).collect())
    }

    /// `GET /Users/{id}` (RFC 7644 §3.4.1).
    pub async fn scim_get_user(&self, call: &ScimCall<'_>, id: &str) -> ScimResult<Rendered> {
        match self.store.find_scim_user(id).await? {
            Some(user) => Ok(render_user(&user, call.base)),
            None => Err(ScimError::not_found(format!("user '{id}' not found"))),
        }
    }

    /// `POST /Users` (RFC 7644 §3.3): `new_id` is 16 random bytes for the id.
    pub async fn scim_create_user(
        &self,
        call: &ScimCall<'_>,
        body: &Value,
        new_id: [u8; 16],
    ) -> ScimResult<Rendered> {
        let write = user_write(canonical(&USER, body)?);
        let id = uuid_v4(new_id);
        let user = self
            .store
            .insert_scim_user(&id, &write, call.context())
            .await?;
        Ok(render_user(&user, call.base))
    }

    /// `PUT /Users/{id}` (RFC 7644 §3.5.1).
    pub async fn scim_replace_user(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Rendered> {
        let write = user_write(canonical(&USER, body)?);
        let base = call.base;
        let updated = self
            .store
            .update_scim_user(id, call.context(), |current| -> ScimResult<ScimUserWrite> {
                check_if_match(if_match, &render_user(current, base).etag)?;
                guard_user_write(current, &write)?;
                Ok(write)
            })
            .await?;
        Ok(render_user(&updated?, base))
    }

    /// `PATCH /Users/{id}` (RFC 7644 §3.5.2): the operations apply, in order and all or
    /// nothing, to the resource as the store holds it in the same transaction.
    pub async fn scim_patch_user(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Rendered> {
        let ops = patch_steps(body, &USER)?;
        let base = call.base;
        let updated = self
            .store
            .update_scim_user(id, call.context(), |current| -> ScimResult<ScimUserWrite> {
                let rendered = render_user(current, base);
                check_if_match(if_match, &rendered.etag)?;
                let resource = patched(without_meta(rendered.body), &ops)?;
                let write = user_write(canonical(&USER, &resource)?);
                guard_user_write(current, &write)?;
                Ok(write)
            })
            .await?;
        Ok(render_user(&updated?, base))
    }

    /// `DELETE /Users/{id}` (RFC 7644 §3.6): hides the user from SCIM and deactivates it;
    /// the row, its External ID and its audit trail stay.
    pub async fn scim_delete_user(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        if_match: Option<&str>,
    ) -> ScimResult<()> {
        let base = call.base;
        self.store
            .delete_scim_user(id, call.context(), |current| {
                check_if_match(if_match, &render_user(current, base).etag)
            })
            .await?
    }

    // --- groups --------------------------------------------------------------------------

    /// `GET /Groups` and `POST /Groups/.search`.
    pub async fn scim_list_groups(
        &self,
        call: &ScimCall<'_>,
        query: &ListQuery,
    ) -> ScimResult<Value> {
        let sort_by = parse_sort_by(query.sort_by.as_deref())?;
        let total = self.store.count_scim_groups().await?;
        let Some(text) = &query.filter else {
            let order = match &sort_by {
                None => Some(ScimGroupOrder::Pk),
                Some(path) => group_order(path),
            };
            if let Some(order) = order {
                let groups = self
                    .store
                    .list_scim_groups(&ScimPage {
                        order,
                        descending: query.descending,
                        offset: query.start_index - 1,
                        limit: query.count,
                    })
                    .await?;
                let page = groups.iter().map(|g| render_group(g, call.base)).collect();
                return Ok(list_response(total, query, page));
            }
            let everything = self.scan_groups(call, total).await?;
            return Ok(self.finish_list(everything, sort_by.as_ref(), query));
        };
        let filter = parse_scim_filter(text)?;
        let matched = self.group_matches(call, &filter, total).await?;
        Ok(self.finish_list(matched, sort_by.as_ref(), query))
    }

    /// Every group `filter` matches (`displayName eq` and `id eq` from an index).
    async fn group_matches(
        &self,
        call: &ScimCall<'_>,
        filter: &Filter,
        total: u64,
    ) -> ScimResult<Vec<Rendered>> {
        let candidates: Vec<Rendered> = match filter {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            } if path.uri_is_none_or(schema::GROUP_SCHEMA) && path.is("displayName") => self
                .store
                .find_scim_groups_by_name(&name_key(value))
                .await?
                .iter()
                .map(|g| render_group(g, call.base))
                .collect(),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            } if path.uri_is_none_or(schema::GROUP_SCHEMA) && path.is("id") => self
                .store
                .find_scim_group(value)
                .await?
                .iter()
                .map(|g| render_group(g, call.base))
                .collect(),
            _ => self.scan_groups(call, total).await?,
        };
        Ok(candidates
            .into_iter()
            .filter(|r| tether_core::scim::matches(filter, &r.body, &schema::case_exact))
            .collect())
    }

    /// `POST /.search` (RFC 7644 §3.4.3): users and groups together, users first.
    pub async fn scim_search_all(
        &self,
        call: &ScimCall<'_>,
        query: &ListQuery,
    ) -> ScimResult<Value> {
        let sort_by = parse_sort_by(query.sort_by.as_deref())?;
        let users = self.store.count_scim_users().await?;
        let groups = self.store.count_scim_groups().await?;
        let Some(text) = &query.filter else {
            if sort_by.is_some() {
                let mut everything = self.scan_users(call, users, "sortBy").await?;
                everything.extend(self.scan_groups(call, groups).await?);
                return Ok(self.finish_list(everything, sort_by.as_ref(), query));
            }
            let offset = query.start_index - 1;
            let mut page: Vec<Rendered> = self
                .store
                .list_scim_users(&ScimPage {
                    order: ScimUserOrder::Pk,
                    descending: false,
                    offset,
                    limit: query.count,
                })
                .await?
                .iter()
                .map(|u| render_user(u, call.base))
                .collect();
            let room = query.count.saturating_sub(page.len() as u32);
            if room > 0 {
                let group_page = self
                    .store
                    .list_scim_groups(&ScimPage {
                        order: ScimGroupOrder::Pk,
                        descending: false,
                        offset: offset.saturating_sub(users),
                        limit: room,
                    })
                    .await?;
                page.extend(group_page.iter().map(|g| render_group(g, call.base)));
            }
            return Ok(list_response(users + groups, query, page));
        };
        let filter = parse_scim_filter(text)?;
        let mut matched = self.user_matches(call, &filter).await?;
        matched.extend(self.group_matches(call, &filter, groups).await?);
        Ok(self.finish_list(matched, sort_by.as_ref(), query))
    }

    async fn scan_groups(&self, call: &ScimCall<'_>, total: u64) -> ScimResult<Vec<Rendered>> {
        if total > SCAN_LIMIT {
            return Err(ScimError::too_many(format!(
                "this query reads every group, and there are {total} (more than {SCAN_LIMIT}); \
                 filters answered from an index: displayName eq, id eq"
            )));
        }
        let groups = self
            .store
            .list_scim_groups(&ScimPage {
                order: ScimGroupOrder::Pk,
                descending: false,
                offset: 0,
                limit: u32::try_from(SCAN_LIMIT).unwrap_or(u32::MAX),
            })
            .await?;
        Ok(groups.iter().map(|g| render_group(g, call.base)).collect())
    }

    /// `GET /Groups/{id}`.
    pub async fn scim_get_group(&self, call: &ScimCall<'_>, id: &str) -> ScimResult<Rendered> {
        match self.store.find_scim_group(id).await? {
            Some(group) => Ok(render_group(&group, call.base)),
            None => Err(ScimError::not_found(format!("group '{id}' not found"))),
        }
    }

    /// `POST /Groups`.
    pub async fn scim_create_group(
        &self,
        call: &ScimCall<'_>,
        body: &Value,
        new_id: [u8; 16],
    ) -> ScimResult<Rendered> {
        let write = group_write(canonical(&GROUP, body)?)?;
        let id = uuid_v4(new_id);
        let group = self
            .store
            .insert_scim_group(&id, &write, call.context())
            .await?;
        Ok(render_group(&group, call.base))
    }

    /// `PUT /Groups/{id}`.
    pub async fn scim_replace_group(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Rendered> {
        let write = group_write(canonical(&GROUP, body)?)?;
        let base = call.base;
        let updated = self
            .store
            .update_scim_group(
                id,
                call.context(),
                |current| -> ScimResult<ScimGroupWrite> {
                    check_if_match(if_match, &render_group(current, base).etag)?;
                    Ok(write)
                },
            )
            .await?;
        Ok(render_group(&updated?, base))
    }

    /// `PATCH /Groups/{id}`.
    pub async fn scim_patch_group(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Rendered> {
        let ops = patch_steps(body, &GROUP)?;
        let base = call.base;
        let updated = self
            .store
            .update_scim_group(
                id,
                call.context(),
                |current| -> ScimResult<ScimGroupWrite> {
                    let rendered = render_group(current, base);
                    check_if_match(if_match, &rendered.etag)?;
                    let resource = patched(without_meta(rendered.body), &ops)?;
                    group_write(canonical(&GROUP, &resource)?)
                },
            )
            .await?;
        Ok(render_group(&updated?, base))
    }

    /// `DELETE /Groups/{id}`: the group and its memberships go; users stay.
    pub async fn scim_delete_group(
        &self,
        call: &ScimCall<'_>,
        id: &str,
        if_match: Option<&str>,
    ) -> ScimResult<()> {
        let base = call.base;
        self.store
            .delete_scim_group(id, |current| {
                check_if_match(if_match, &render_group(current, base).etag)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_version_4() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn if_match_compares_weak_tags() {
        assert!(check_if_match(Some("W/\"abc\""), "W/\"abc\"").is_ok());
        assert!(check_if_match(Some("\"abc\""), "W/\"abc\"").is_ok());
        assert!(check_if_match(Some("*"), "W/\"abc\"").is_ok());
        assert!(check_if_match(None, "W/\"abc\"").is_ok());
        let refused = check_if_match(Some("W/\"old\""), "W/\"abc\"").unwrap_err();
        assert_eq!(refused.kind, ScimErrorKind::PreconditionFailed);
    }

    #[test]
    fn only_equalities_on_indexed_attributes_are_exact() {
        let exact = |f: &str| exact_user_lookups(&parse_filter(f).unwrap());
        assert_eq!(
            exact("userName eq \"Ann\""),
            Some(vec![ScimLookup::UserNameKey("ann".into())])
        );
        assert_eq!(
            exact("emails[value eq \"Ann@Example.COM\"] or externalId eq \"x\""),
            Some(vec![
                ScimLookup::EmailKey("ann@example.com".into()),
                ScimLookup::ExternalId("x".into())
            ])
        );
        assert_eq!(exact("userName sw \"a\""), None);
        assert_eq!(exact("userName eq \"a\" and active eq true"), None);
        let candidates =
            candidate_user_lookups(&parse_filter("userName eq \"a\" and active eq true").unwrap());
        assert_eq!(candidates, Some(vec![ScimLookup::UserNameKey("a".into())]));
    }

    #[test]
    fn projection_keeps_always_returned_attributes() {
        let resource = json!({
            "schemas": [USER_CORE], "id": "1", "userName": "ann", "displayName": "Ann",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "meta": {"resourceType": "User"}
        });
        let only = Projection::parse(Some("userName,name.givenName"), None).unwrap();
        assert_eq!(
            only.apply(resource.clone(), USER_CORE),
            json!({"schemas": [USER_CORE], "id": "1", "userName": "ann", "name": {"givenName": "Ann"}})
        );
        let without = Projection::parse(None, Some("displayName,meta,id")).unwrap();
        let kept = without.apply(resource, USER_CORE);
        assert!(kept.get("displayName").is_none() && kept.get("meta").is_none());
        assert_eq!(kept["id"], "1");
    }

    #[test]
    fn unknown_attributes_and_wrong_types_are_refused() {
        let unknown = USER
            .canonicalize(&json!({"schemas": [USER_CORE], "userName": "a", "shoeSize": 42}))
            .unwrap_err();
        assert_eq!(unknown.scim_type, Some("invalidSyntax"));
        assert!(unknown.detail.contains("shoeSize"));
        let wrong = USER
            .canonicalize(&json!({"schemas": [USER_CORE], "userName": "a", "active": 3}))
            .unwrap_err();
        assert_eq!(wrong.scim_type, Some("invalidValue"));
        let missing = USER
            .canonicalize(&json!({"schemas": [USER_CORE]}))
            .unwrap_err();
        assert!(missing.detail.contains("userName"));
        let ok = USER
            .canonicalize(&json!({"schemas": [USER_CORE], "USERNAME": "a", "Active": "False"}))
            .unwrap();
        assert_eq!(ok["userName"], "a");
        assert_eq!(ok["active"], false);
    }
}
