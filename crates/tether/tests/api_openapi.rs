//! The OpenAPI document at /api/v1/openapi.json: it parses, its references resolve, and it
//! lists every `/api/v1` route the server's source declares (read from `src/web/**.rs`, so a
//! route added without `#[utoipa::path]` and registration in `web/api/openapi.rs` fails here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/server.rs"]
mod server;

use serde_json::Value;
use server::Server;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// `(path, method)` of every `.route("/api/v1…", get(..).post(..))` in the Rust files under `dir`.
fn declared_routes(dir: &Path) -> BTreeSet<(String, String)> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            let args = &rest[at + ".route(".len()..];
            // The arguments up to the matching parenthesis.
            let mut depth = 1;
            let mut end = args.len();
            for (i, c) in args.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &args[..end];
            rest = &rest[at + ".route(".len()..];
            let Some(path) = args
                .trim_start()
                .strip_prefix('"')
                .and_then(|a| a.split('"').next())
            else {
                continue;
            };
            if !path.starts_with("/api/v1") {
                continue;
            }
            let handlers = &args[args.find(',').unwrap_or(0)..];
            let mut found = false;
            for method in METHODS {
                let bytes = handlers.as_bytes();
                let mut from = 0;
                while let Some(i) = handlers[from..].find(&format!("{method}(")) {
                    let i = from + i;
                    let before = if i == 0 { b' ' } else { bytes[i - 1] };
                    if !(before.is_ascii_alphanumeric() || before == b'_') {
                        routes.insert((path.to_owned(), (*method).to_owned()));
                        found = true;
                    }
                    from = i + 1;
                }
            }
            assert!(
                found,
                "{}: no method found in .route({args})",
                file.display()
            );
        }
    }
    routes
}

fn missing(doc: &Value, routes: &BTreeSet<(String, String)>) -> Vec<String> {
    routes
        .iter()
        .filter(|(path, method)| doc["paths"][path.as_str()][method.as_str()].is_null())
        .map(|(path, method)| format!("{} {path}", method.to_uppercase()))
        .collect()
}

/// Every `$ref` points at a component that exists.
fn check_refs(doc: &Value, node: &Value, at: &str) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref" {
                    let target = value.as_str().unwrap();
                    let pointer = target.strip_prefix('#').expect("local references");
                    assert!(
                        doc.pointer(pointer).is_some(),
                        "{at}: dangling $ref {target}"
                    );
                } else {
                    check_refs(doc, value, &format!("{at}/{key}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_refs(doc, item, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

async fn document() -> Value {
    let server = Server::start(&[]);
    let response = server
        .client()
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_with_resolvable_references() {
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].as_str().is_some());
    assert!(doc["info"]["version"].as_str().is_some());
    check_refs(&doc, &doc, "#");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{} paths", paths.len());
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, operation) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(!responses.is_empty(), "{method} {path}");
            for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                let declared = operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} not declared"
                );
            }
        }
    }
    // The error shape is documented.
    let error = &doc["components"]["schemas"]["ApiError"]["properties"];
    assert!(
        error["code"].is_object() && error["message"].is_object(),
        "{error}"
    );
}

#[tokio::test]
async fn the_document_lists_every_route_of_the_api_module() {
    let doc = document().await;
    let routes = declared_routes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/api"));
    assert!(routes.len() >= 20, "found only {routes:?}");
    assert_eq!(missing(&doc, &routes), Vec::<String>::new());
}

#[tokio::test]
async fn the_document_lists_every_api_route_of_the_server() {
    let doc = document().await;
    let routes = declared_routes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web"));
    let missing = missing(&doc, &routes);
    assert!(
        missing.is_empty(),
        "these /api/v1 routes are not in the OpenAPI document; put #[utoipa::path] on their \
         handlers and add their module's OpenApi to PARTS in src/web/api/openapi.rs:\n{}",
        missing.join("\n")
    );
}
