//! parse_patch_path on arbitrary UTF-8: no panic, and Display round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_core::scim::{parse_patch_path, MAX_FILTER_LEN};

fuzz_target!(|text: &str| {
    if let Ok(path) = parse_patch_path(text) {
        let shown = path.to_string();
        if shown.len() <= MAX_FILTER_LEN {
            assert_eq!(
                parse_patch_path(&shown).as_ref(),
                Ok(&path),
                "{text:?} → {shown:?}"
            );
        }
    }
});
