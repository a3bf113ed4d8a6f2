//! parse_filter on arbitrary UTF-8: no panic, bounded trees, Display round-trips, and
//! evaluation of whatever parses does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_core::scim::{core_case_exact, matches, parse_filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN};

fuzz_target!(|text: &str| {
    match parse_filter(text) {
        Ok(filter) => {
            assert!(filter.height() <= MAX_FILTER_DEPTH, "{text:?}");
            let shown = filter.to_string();
            // Display may be longer than the input (blanks, `1e3` → `1000.0`); past the
            // length limit the re-parse is refused by design.
            if shown.len() <= MAX_FILTER_LEN {
                assert_eq!(
                    parse_filter(&shown).as_ref(),
                    Ok(&filter),
                    "{text:?} → {shown:?}"
                );
            }
            let resource = serde_json::json!({
                "userName": "Alice", "emails": [{"value": "a@x.org", "type": "work"}],
                "meta": {"lastModified": "2011-05-13T04:42:34Z"}, "n": 3, "active": true
            });
            let _ = matches(&filter, &resource, &core_case_exact);
        }
        Err(e) => {
            assert!(
                e.position >= 1 && e.position <= text.chars().count() + 1,
                "{text:?}: {e}"
            );
        }
    }
});
