//! Filter evaluation over a resource's JSON representation (RFC 7644 §3.4.2.2).
//!
//! - Attribute names and schema URIs compare without case (RFC 7643 §2.1).
//! - A path with a core schema URI (`urn:ietf:params:scim:schemas:core:…`) names a top-level
//!   attribute; any other URI names an attribute inside the extension object keyed by that URI.
//! - A multi-valued attribute matches if any of its values matches; a complex attribute
//!   compared without a sub-attribute (`emails co "@example.com"`) compares its `value`.
//! - Strings compare with case unless `case_exact(path)` says the attribute is caseExact;
//!   strings that are both `xsd:dateTime`s compare as instants (`meta.lastModified gt "…"`);
//!   numbers compare as numbers; a type mismatch or an unknown attribute does not match.
//! - `pr` matches a value that is not null, `""`, `[]` or `{}`; `eq null` matches when the
//!   attribute is unassigned (RFC 7643 §2.5) and `ne null` when it is assigned. `ne` is the
//!   negation of `eq`: it matches when no value equals the operand, including when the
//!   attribute is absent.

use super::filter::{CompValue, CompareOp, Filter};
use super::path::AttrPath;
use serde_json::Value;
use std::cmp::Ordering;

/// Does `resource` match `filter`? See the module documentation for the rules.
/// `case_exact` receives full paths (`emails.value`, also for `emails[value eq "x"]`).
pub fn matches(filter: &Filter, resource: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
    evaluate(filter, resource, None, case_exact)
}

/// `caseExact` of the RFC 7643 core User and Group schemas and the enterprise extension:
/// identifiers and references are case-exact, everything else (userName, e-mail addresses,
/// names, types) is not.
pub fn core_case_exact(path: &AttrPath) -> bool {
    const EXACT: [&str; 12] = [
        "id",
        "externalId",
        "schemas",
        "meta.resourceType",
        "meta.location",
        "meta.version",
        "members.value",
        "groups.value",
        "manager.value",
        "x509Certificates.value",
        "password",
        "roles.value",
    ];
    path.sub_attr
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("$ref"))
        || path.name.eq_ignore_ascii_case("$ref")
        || EXACT.iter().any(|dotted| path.is(dotted))
}

/// `filter` against `object`; inside a value filter `outer` is the multi-valued attribute and
/// `object` one of its values.
fn evaluate(
    filter: &Filter,
    object: &Value,
    outer: Option<&AttrPath>,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> bool {
    match filter {
        Filter::And(a, b) => {
            evaluate(a, object, outer, case_exact) && evaluate(b, object, outer, case_exact)
        }
        Filter::Or(a, b) => {
            evaluate(a, object, outer, case_exact) || evaluate(b, object, outer, case_exact)
        }
        Filter::Not(inner) => !evaluate(inner, object, outer, case_exact),
        Filter::Present(path) => values_at(object, path, outer)
            .iter()
            .any(|v| is_assigned(v)),
        Filter::Compare { path, op, value } => {
            let full = full_path(path, outer);
            let exact = case_exact(&full);
            let raw = values_at(object, path, outer);
            match (op, value) {
                // Unassigned is about the attribute itself, as for `pr`.
                (CompareOp::Eq, CompValue::Null) => return !raw.iter().any(|v| is_assigned(v)),
                (CompareOp::Ne, CompValue::Null) => return raw.iter().any(|v| is_assigned(v)),
                _ => {}
            }
            let values: Vec<&Value> = raw
                .into_iter()
                .map(|v| match v {
                    // `emails co "x"` compares each e-mail's `value`.
                    Value::Object(map) => get_ignore_case(map, "value").unwrap_or(&Value::Null),
                    other => other,
                })
                .collect();
            match (op, value) {
                (CompareOp::Ne, _) => !values
                    .iter()
                    .any(|v| compare(v, CompareOp::Eq, value, exact)),
                _ => values.iter().any(|v| compare(v, *op, value, exact)),
            }
        }
        Filter::ValuePath { path, filter } => {
            if outer.is_some() {
                // The parser never nests value filters.
                return false;
            }
            values_at(object, path, None)
                .into_iter()
                .any(|v| evaluate(filter, v, Some(path), case_exact))
        }
    }
}

/// The path as the schema knows it: `type` inside `emails[...]` is `emails.type`.
fn full_path(path: &AttrPath, outer: Option<&AttrPath>) -> AttrPath {
    match outer {
        Some(outer) => AttrPath {
            uri: outer.uri.clone(),
            name: outer.name.clone(),
            sub_attr: Some(path.name.clone()),
        },
        None => path.clone(),
    }
}

/// The values `path` names in `object`, multi-valued attributes flattened.
fn values_at<'a>(object: &'a Value, path: &AttrPath, outer: Option<&AttrPath>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if outer.is_some() {
        // Inside a value filter: `object` is one value of the outer attribute; a simple
        // value is its own `value` sub-attribute.
        match object {
            Value::Object(map) => {
                if let Some(v) = get_ignore_case(map, &path.name) {
                    push_flat(v, &mut out);
                }
            }
            simple if path.name.eq_ignore_ascii_case("value") => out.push(simple),
            _ => {}
        }
        return out;
    }
    let Some(attribute) = attribute(object, path) else {
        return out;
    };
    match &path.sub_attr {
        None => push_flat(attribute, &mut out),
        Some(sub) => {
            let mut parents = Vec::new();
            push_flat(attribute, &mut parents);
            for parent in parents {
                if let Value::Object(map) = parent {
                    if let Some(v) = get_ignore_case(map, sub) {
                        push_flat(v, &mut out);
                    }
                }
            }
        }
    }
    out
}

/// The attribute `path.name` (before any sub-attribute) of a resource, looking inside the
/// extension object when the path has an extension schema URI.
pub(super) fn attribute<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let map = resource.as_object()?;
    match path.uri.as_deref() {
        Some(uri) if !is_core_uri(uri) => {
            let extension = get_ignore_case(map, uri)?.as_object()?;
            get_ignore_case(extension, &path.name)
        }
        _ => get_ignore_case(map, &path.name),
    }
}

/// Is `uri` a core schema (whose attributes sit at the top level of a resource)?
pub(super) fn is_core_uri(uri: &str) -> bool {
    const CORE: &str = "urn:ietf:params:scim:schemas:core:";
    uri.get(..CORE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CORE))
}

fn push_flat<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

/// A member of `map` by name, ignoring case (an exact match first).
pub(super) fn get_ignore_case<'a>(
    map: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// RFC 7643 §2.5: null, "" (for `pr`), [] and {} are unassigned.
pub(super) fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare(value: &Value, op: CompareOp, operand: &CompValue, case_exact: bool) -> bool {
    match (value, operand) {
        (Value::String(have), CompValue::String(want)) => {
            compare_strings(have, op, want, case_exact)
        }
        (Value::Number(have), CompValue::Number(want)) => {
            compare_numbers(have, want).is_some_and(|order| ordering_matches(op, order))
        }
        (Value::Bool(have), CompValue::Bool(want)) => match op {
            CompareOp::Eq => have == want,
            CompareOp::Ne => have != want,
            _ => false,
        },
        _ => false,
    }
}

fn compare_strings(have: &str, op: CompareOp, want: &str, case_exact: bool) -> bool {
    if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
        if let (Some(a), Some(b)) = (parse_date_time(have), parse_date_time(want)) {
            return ordering_matches(op, a.cmp(&b));
        }
    }
    if case_exact {
        return compare_exact(have, op, want);
    }
    if op == CompareOp::Eq && have.is_ascii() && want.is_ascii() {
        // The common `userName eq "..."`, without allocating.
        return have.eq_ignore_ascii_case(want);
    }
    compare_exact(&have.to_lowercase(), op, &want.to_lowercase())
}

fn compare_exact(have: &str, op: CompareOp, want: &str) -> bool {
    match op {
        CompareOp::Co => have.contains(want),
        CompareOp::Sw => have.starts_with(want),
        CompareOp::Ew => have.ends_with(want),
        _ => ordering_matches(op, have.cmp(want)),
    }
}

fn ordering_matches(op: CompareOp, order: Ordering) -> bool {
    match op {
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::Ne => order != Ordering::Equal,
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::Ge => order != Ordering::Less,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::Le => order != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// An `xsd:dateTime` (RFC 7643 §2.3.5) as nanoseconds since 1970-01-01T00:00:00Z:
/// `YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]` (no zone means UTC). `None` if `text` is not one.
pub fn parse_date_time(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + i128::from(b[at] - b'0');
            }
            at += 1;
        }
        let count = at - start;
        if count == 0 {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
