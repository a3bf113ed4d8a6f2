//! PatchOp::from_json + apply_patches on arbitrary JSON: no panic, and a failed request
//! leaves the resource unchanged. Input: JSON text, either a PATCH body (applied to a fixed
//! user) or `[resource, body]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tether_core::scim::{apply_patches, PatchOp};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (mut resource, body) = match input {
        Value::Array(mut pair) if pair.len() == 2 => {
            let body = pair.pop().unwrap_or(Value::Null);
            (pair.pop().unwrap_or(Value::Null), body)
        }
        body => (
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "id": "u1", "userName": "bjensen", "externalId": "701984",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [{"value": "b@example.com", "type": "work", "primary": true},
                           {"value": "babs@jensen.org", "type": "home"}],
                "members": [{"value": "1"}, {"value": "2"}], "tags": ["a", "b"],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"department": "Tours", "manager": {"value": "m1"}},
                "meta": {"version": "W/\"1\""}
            }),
            body,
        ),
    };
    let Ok(ops) = PatchOp::from_json(&body) else {
        return;
    };
    let before = resource.clone();
    if apply_patches(&mut resource, &ops).is_err() {
        assert_eq!(resource, before);
    }
});
