//! Shared by the SCIM tests: the `testdata/scim/*.case` reader and a compact rendering of
//! filter trees.
//!
//! A case file is a list of cases; each starts with `=== name`. Blank lines and lines starting
//! with `#` are ignored. Every other line is `keyword rest-of-line`; a line that starts with
//! blanks continues the previous line (joined with a newline), so JSON may span lines.
//! Which keywords exist is up to each test (see `scim_filter.rs`, `scim_match.rs`,
//! `scim_patch.rs`).
#![allow(dead_code)]

use std::path::PathBuf;
use tether_core::scim::{AttrPath, Filter, PatchPath};

pub struct Case {
    pub file: String,
    pub line: usize,
    pub name: String,
    /// (line number, keyword, rest)
    pub lines: Vec<(usize, String, String)>,
}

impl Case {
    pub fn title(&self) -> String {
        format!("{}:{}: {}", self.file, self.line, self.name)
    }
}

pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/scim")
}

/// Reads every case of `testdata/scim/<file>`.
pub fn load(file: &str) -> Vec<Case> {
    let path = testdata_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut cases: Vec<Case> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        if let Some(name) = raw.strip_prefix("=== ") {
            cases.push(Case {
                file: file.to_string(),
                line: number,
                name: name.trim().to_string(),
                lines: Vec::new(),
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("{file}:{number}: a line before the first `=== name`"));
        if raw.starts_with(' ') || raw.starts_with('\t') {
            let (_, _, rest) = case
                .lines
                .last_mut()
                .unwrap_or_else(|| panic!("{file}:{number}: a continuation line starts the case"));
            rest.push('\n');
            rest.push_str(raw.trim_start());
            continue;
        }
        let (keyword, rest) = raw.split_once(' ').unwrap_or((raw, ""));
        case.lines
            .push((number, keyword.to_string(), rest.to_string()));
    }
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "{}: duplicate case name",
            case.title()
        );
    }
    cases
}

/// A text argument: JSON-quoted (`"a\tb"`) when it starts with a quote and the keyword asks
/// for it, else as written.
pub fn json_string(text: &str) -> String {
    serde_json::from_str::<String>(text)
        .unwrap_or_else(|e| panic!("not a JSON string {text:?}: {e}"))
}

/// `name`, `name.sub`, `<uri>name.sub`.
pub fn render_path(path: &AttrPath) -> String {
    let mut out = String::new();
    if let Some(uri) = &path.uri {
        out.push('<');
        out.push_str(uri);
        out.push('>');
    }
    out.push_str(&path.name);
    if let Some(sub) = &path.sub_attr {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// `(eq userName "x")`, `(pr title)`, `(and A B)`, `(or A B)`, `(not A)`, `(vp emails A)`.
pub fn render(filter: &Filter) -> String {
    match filter {
        Filter::Compare { path, op, value } => {
            format!("({op} {} {value})", render_path(path))
        }
        Filter::Present(path) => format!("(pr {})", render_path(path)),
        Filter::And(a, b) => format!("(and {} {})", render(a), render(b)),
        Filter::Or(a, b) => format!("(or {} {})", render(a), render(b)),
        Filter::Not(a) => format!("(not {})", render(a)),
        Filter::ValuePath { path, filter } => {
            format!("(vp {} {})", render_path(path), render(filter))
        }
    }
}

/// `(path <attr> <filter or -> <sub or ->)`.
pub fn render_patch_path(path: &PatchPath) -> String {
    format!(
        "(path {} {} {})",
        render_path(&path.attr),
        path.filter.as_ref().map_or("-".to_string(), render),
        path.sub_attr.as_deref().unwrap_or("-")
    )
}

/// A JSON resource: `@name` reads `testdata/scim/resources/name.json`, anything else is JSON.
pub fn resource(text: &str) -> serde_json::Value {
    let text = text.trim();
    let json = match text.strip_prefix('@') {
        Some(name) => {
            let path = testdata_dir()
                .join("resources")
                .join(format!("{name}.json"));
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        }
        None => text.to_string(),
    };
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}
