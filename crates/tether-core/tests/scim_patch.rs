//! Data-driven tests of SCIM PATCH: `PatchOp::from_json` then `apply_patches`, from
//! `testdata/scim/patch.case`.
//!
//! ```text
//! === replace a work e-mail                     <- a case
//! resource @bjensen                            <- testdata/scim/resources/bjensen.json, or JSON
//! op {"op": "replace", "path": "...", "value": "..."}
//!                                              <- one operation; several `op` lines make one
//!                                                 request (wrapped in the PatchOp schemas)
//! body {"schemas": [...], "Operations": [...]} <- or the whole request body, as sent
//! expect {...}                                 <- the whole resulting resource, or
//! expect-at /emails/0/value "x"                <- the value at a JSON pointer of the result
//! expect-absent /nickName                      <- nothing at that pointer
//! error noTarget: <message>                    <- the request fails: scimType and message;
//!                                                 the resource must be left unchanged
//! ```
//! Indented lines continue the previous line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod scim_support;

use scim_support::{load, resource, Case};
use serde_json::{json, Value};
use tether_core::scim::{apply_patches, PatchOp, PATCH_OP_SCHEMA};

fn run(case: &Case) -> Result<(), String> {
    let mut start = None;
    let mut ops = Vec::new();
    let mut body = None;
    let mut checks = Vec::new();
    for (line, keyword, rest) in &case.lines {
        match keyword.as_str() {
            "resource" => start = Some(resource(rest)),
            "op" => ops.push(parse_json(rest, *line)?),
            "body" => body = Some(parse_json(rest, *line)?),
            "expect" | "expect-at" | "expect-absent" | "error" => {
                checks.push((*line, keyword.clone(), rest.clone()))
            }
            other => return Err(format!("line {line}: unknown keyword {other:?}")),
        }
    }
    let start = start.ok_or("no resource")?;
    let body = match body {
        Some(body) => body,
        None => json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops}),
    };
    let mut result = start.clone();
    let outcome = PatchOp::from_json(&body).and_then(|ops| apply_patches(&mut result, &ops));
    if checks.is_empty() {
        return Err("no expect or error line".to_string());
    }
    for (line, keyword, rest) in checks {
        match (keyword.as_str(), &outcome) {
            ("error", Err(e)) => {
                let actual = format!("{}: {e}", e.scim_type());
                if actual != rest {
                    return Err(format!("line {line}:\n- error {rest}\n+ error {actual}"));
                }
                if result != start {
                    return Err("a failed request changed the resource".to_string());
                }
            }
            ("error", Ok(())) => {
                return Err(format!(
                    "line {line}: expected error {rest}, but it succeeded with\n{}",
                    pretty(&result)
                ))
            }
            (_, Err(e)) => {
                return Err(format!(
                    "line {line}: unexpected error {}: {e}",
                    e.scim_type()
                ))
            }
            ("expect", Ok(())) => {
                let expected = parse_json(&rest, line)?;
                if result != expected {
                    return Err(format!(
                        "line {line}: result differs\n- {}\n+ {}",
                        compact(&expected),
                        compact(&result)
                    ));
                }
            }
            ("expect-at", Ok(())) => {
                let (pointer, value) = rest.split_once(' ').ok_or("expect-at needs two fields")?;
                let expected = parse_json(value, line)?;
                let actual = result.pointer(pointer);
                if actual != Some(&expected) {
                    return Err(format!(
                        "line {line}: at {pointer}\n- {}\n+ {}",
                        compact(&expected),
                        actual.map_or("(nothing)".to_string(), compact)
                    ));
                }
            }
            ("expect-absent", Ok(())) => {
                if let Some(v) = result.pointer(rest.trim()) {
                    return Err(format!("line {line}: {rest} is {}", compact(v)));
                }
            }
            _ => unreachable!(),
        }
    }
    Ok(())
}

fn parse_json(text: &str, line: usize) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("line {line}: not JSON ({e}): {text}"))
}

fn compact(v: &Value) -> String {
    v.to_string()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

#[test]
fn patch_cases() {
    let cases = load("patch.case");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| run(case).err().map(|e| format!("{}\n{e}", case.title())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(cases.len() >= 60, "only {} cases", cases.len());
}

#[test]
fn at_most_max_operations() {
    let op = json!({"op": "add", "path": "nickName", "value": "x"});
    let body = |n: usize| json!({"schemas": [PATCH_OP_SCHEMA], "Operations": vec![op.clone(); n]});
    let limit = tether_core::scim::MAX_PATCH_OPERATIONS;
    assert_eq!(PatchOp::from_json(&body(limit)).unwrap().len(), limit);
    let e = PatchOp::from_json(&body(limit + 1)).unwrap_err();
    assert_eq!(e.scim_type(), "invalidSyntax");
    assert!(e.to_string().contains("at most 1000"), "{e}");
}
