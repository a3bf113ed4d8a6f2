//! Data-driven parser tests for SCIM filters and PATCH paths: `testdata/scim/filters.case`
//! and `testdata/scim/paths.case`.
//!
//! ```text
//! === userName eq                         <- a case
//! filter userName eq "bjensen"            <- the filter, as written to the end of the line
//! filter-json "a eq \"x\"\t"              <- or as a JSON string (blanks, control characters)
//! ast (eq userName "bjensen")             <- the tree (see scim_support::render), or:
//! error 12: expected ...                  <- the error position (1-based character) and message
//! display userName eq "bjensen"           <- optional: the Display form
//! ```
//!
//! In `paths.case`, `path`/`path-json` replace `filter`, and `ast` is
//! `(path <attr> <filter or -> <sub-attribute or ->)`.
//! Every successful parse must also round-trip: parsing its Display gives the same tree.
//! On a mismatch the test prints each failing case with the actual line to paste.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod scim_support;

use scim_support::{json_string, load, render, render_patch_path, Case};
use tether_core::scim::{
    parse_filter, parse_patch_path, Filter, FilterError, MAX_FILTER_DEPTH, MAX_FILTER_LEN,
};

fn outcome<T>(result: &Result<T, FilterError>, show: impl Fn(&T) -> String) -> String {
    match result {
        Ok(value) => format!("ast {}", show(value)),
        Err(e) => format!("error {}: {}", e.position, e.message),
    }
}

fn check_cases(file: &str, input_keyword: &str) -> usize {
    let cases = load(file);
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(message) = check_case(case, input_keyword) {
            failures.push(format!("{}\n{message}", case.title()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    cases.len()
}

fn check_case(case: &Case, input_keyword: &str) -> Result<(), String> {
    let mut input = None;
    let mut expected = None;
    let mut display = None;
    for (line, keyword, rest) in &case.lines {
        match keyword.as_str() {
            k if k == input_keyword => input = Some(rest.clone()),
            k if k == format!("{input_keyword}-json") => input = Some(json_string(rest)),
            "ast" => expected = Some(format!("ast {rest}")),
            "error" => expected = Some(format!("error {rest}")),
            "display" => display = Some(rest.clone()),
            other => return Err(format!("line {line}: unknown keyword {other:?}")),
        }
    }
    let input = input.ok_or("no input line")?;
    let expected = expected.ok_or("no `ast` or `error` line")?;
    let (actual, shown) = if input_keyword == "filter" {
        let result = parse_filter(&input);
        round_trip_filter(&result)?;
        (
            outcome(&result, render),
            result.as_ref().ok().map(|f| f.to_string()),
        )
    } else {
        let result = parse_patch_path(&input);
        if let Ok(path) = &result {
            let again = parse_patch_path(&path.to_string())
                .map_err(|e| format!("its Display {:?} does not parse: {e}", path.to_string()))?;
            if &again != path {
                return Err(format!("Display {path} does not round-trip"));
            }
        }
        (
            outcome(&result, render_patch_path),
            result.as_ref().ok().map(|p| p.to_string()),
        )
    };
    if actual != expected {
        return Err(format!("- {expected}\n+ {actual}"));
    }
    if let Some(display) = display {
        if shown.as_deref() != Some(display.as_str()) {
            return Err(format!("- display {display}\n+ display {shown:?}"));
        }
    }
    Ok(())
}

fn round_trip_filter(result: &Result<Filter, FilterError>) -> Result<(), String> {
    let Ok(filter) = result else {
        return Ok(());
    };
    let text = filter.to_string();
    let again =
        parse_filter(&text).map_err(|e| format!("its Display {text:?} does not parse: {e}"))?;
    if &again != filter {
        return Err(format!(
            "Display {text:?} parses to {} instead of {}",
            render(&again),
            render(filter)
        ));
    }
    Ok(())
}

#[test]
fn filter_cases() {
    let count = check_cases("filters.case", "filter");
    assert!(count >= 80, "only {count} filter cases");
}

#[test]
fn patch_path_cases() {
    let count = check_cases("paths.case", "path");
    assert!(count >= 20, "only {count} path cases");
}

#[test]
fn error_display_names_the_character() {
    let e = parse_filter("userName eq").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid filter at character 12: expected a blank after \"eq\", found the end of the text"
    );
}

// ---- limits: inputs too large to write in a case file ----

#[test]
fn ten_thousand_nested_nots_are_an_error_not_a_stack_overflow() {
    for open in ["not(", "not (", "(", "NOT ("] {
        let text = format!("{}userName pr{}", open.repeat(10_000), ")".repeat(10_000));
        // Longer than MAX_FILTER_LEN: refused by length first.
        let e = parse_filter(&text).unwrap_err();
        assert_eq!(e.position, MAX_FILTER_LEN + 1, "{open}: {e}");
        // Within the length limit, refused by depth at the first level too deep.
        let text = format!("{}userName pr{}", open.repeat(500), ")".repeat(500));
        let text = &text[..text.len().min(MAX_FILTER_LEN)];
        let e = parse_filter(text).unwrap_err();
        assert_eq!(
            e.message,
            format!("nested deeper than {MAX_FILTER_DEPTH} levels"),
            "{open}"
        );
        // At the `(` that opens level MAX_FILTER_DEPTH + 1.
        assert_eq!(
            e.position,
            open.len() * (MAX_FILTER_DEPTH + 1),
            "{open}: {e}"
        );
    }
}

#[test]
fn nesting_up_to_the_limit_parses() {
    // `not (` adds one level to the tree; the comparison is the last one.
    let depth = MAX_FILTER_DEPTH - 1;
    let text = format!("{}a pr{}", "not (".repeat(depth), ")".repeat(depth));
    let filter = parse_filter(&text).unwrap();
    assert_eq!(filter.height(), MAX_FILTER_DEPTH);
    let text = format!("{}a pr{}", "not (".repeat(depth + 1), ")".repeat(depth + 1));
    assert!(parse_filter(&text).is_err());
    // Plain parentheses nest up to the limit.
    let text = format!(
        "{}a pr{}",
        "(".repeat(MAX_FILTER_DEPTH),
        ")".repeat(MAX_FILTER_DEPTH)
    );
    assert_eq!(parse_filter(&text).unwrap(), parse_filter("a pr").unwrap());
}

#[test]
fn long_chains_are_balanced() {
    let terms: Vec<String> = (0..250).map(|i| format!("id eq \"{i}\"")).collect();
    let text = terms.join(" or ");
    assert!(text.len() <= MAX_FILTER_LEN);
    let filter = parse_filter(&text).unwrap();
    // ceil(log2(250)) = 8 levels of `or` above the comparisons.
    assert_eq!(filter.height(), 9);
    assert_eq!(parse_filter(&filter.to_string()).unwrap(), filter);
    // Mixed: 128 `and`-pairs under 7 levels of `or`.
    let pairs: Vec<String> = (0..128).map(|i| format!("a eq {i} and b pr")).collect();
    let filter = parse_filter(&pairs.join(" or ")).unwrap();
    assert_eq!(filter.height(), 9);
}

#[test]
fn length_limit_is_in_bytes_and_reported_in_characters() {
    let at_limit = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LEN - 7));
    assert_eq!(at_limit.len(), MAX_FILTER_LEN);
    assert!(parse_filter(&at_limit).is_ok());
    let over = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LEN - 6));
    let e = parse_filter(&over).unwrap_err();
    assert_eq!(e.position, MAX_FILTER_LEN + 1);
    assert!(e.message.contains("4096 bytes"), "{e}");
    // Two-byte characters: the position counts characters, not bytes.
    let over = format!("a eq \"{}\"", "é".repeat(MAX_FILTER_LEN / 2));
    let e = parse_filter(&over).unwrap_err();
    assert_eq!(e.position, 6 + (MAX_FILTER_LEN - 6) / 2 + 1);
    assert!(parse_patch_path(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
}
