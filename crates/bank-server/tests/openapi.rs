//! The committed OpenAPI document (`openapi/openapi.json` at the workspace root) must be exactly
//! what the server generates, so a change to the API shows up in review as a change to that file.
//!
//! After an intended API change, regenerate it with:
//!
//! ```text
//! BANK_UPDATE_OPENAPI=1 cargo test -p bank-server --test openapi
//! ```

use std::path::PathBuf;

/// Set to `1` to rewrite the committed document instead of comparing with it.
const UPDATE_VARIABLE: &str = "BANK_UPDATE_OPENAPI";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")
}

#[test]
fn committed_openapi_document_matches_the_server() {
    let mut generated = serde_json::to_string_pretty(&bank_server::http::openapi()).expect("serialize the document");
    generated.push('\n');
    let path = committed_path();
    if std::env::var(UPDATE_VARIABLE).is_ok_and(|value| value == "1") {
        std::fs::create_dir_all(path.parent().expect("openapi/ directory")).expect("create openapi/");
        std::fs::write(&path, &generated).expect("write openapi/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}\nGenerate it with: {UPDATE_VARIABLE}=1 cargo test -p bank-server --test openapi",
            path.display()
        )
    });
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).map_or_else(
            || {
                format!(
                    "the documents differ in length ({} vs {} lines)",
                    committed.lines().count(),
                    generated.lines().count()
                )
            },
            |index| format!("first difference at line {}", index + 1),
        );
        panic!(
            "openapi/openapi.json is out of date with the server's API ({line}).\n\
             If the API change is intended, regenerate it and commit the result:\n    \
             {UPDATE_VARIABLE}=1 cargo test -p bank-server --test openapi"
        );
    }
}
