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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
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

/// The document states the rules the server enforces (issue 19): a rule dropped from the
/// document, or a status a route can answer left out, fails here.
#[test]
fn the_document_states_every_enforced_rule() {
    let document = bank_server::http::openapi();
    let schemas = &document["components"]["schemas"];
    let transfer = &schemas["TransferRequest"];
    assert_eq!(transfer["properties"]["amount"]["pattern"], bank_api::patterns::POSITIVE_AMOUNT);
    assert_eq!(schemas["DepositRequest"]["properties"]["amount"]["pattern"], bank_api::patterns::POSITIVE_AMOUNT);
    assert_eq!(schemas["Transfer"]["properties"]["amount"]["pattern"], bank_api::patterns::AMOUNT);
    assert_eq!(transfer["properties"]["currency"]["enum"].as_array().expect("enum").len(), 14);
    assert!(
        schemas["OpenAccountRequest"]["properties"]["currency"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .any(|c| c == "JPY")
    );
    assert_eq!(transfer["oneOf"], serde_json::json!([{"required": ["to_account_id"]}, {"required": ["to_external"]}]));
    assert_eq!(transfer["properties"]["reference"]["maxLength"], 140);
    assert_eq!(schemas["OpenAccountRequest"]["properties"]["name"]["maxLength"], 100);
    assert_eq!(schemas["ExternalBeneficiary"]["properties"]["name"]["maxLength"], 140);
    for request in ["RegisterRequest", "LoginRequest"] {
        // The server's rule is the pattern (one `@`, text on both sides, no whitespace or
        // control): it does not check RFC 5321 or hostnames, so no `format` claims it does.
        assert!(schemas[request]["properties"]["email"].get("format").is_none());
        assert_eq!(schemas[request]["properties"]["email"]["pattern"], bank_api::patterns::EMAIL);
        assert_eq!(schemas[request]["properties"]["password"]["minLength"], 12);
        assert_eq!(schemas[request]["properties"]["password"]["maxLength"], 128);
    }
    assert_eq!(schemas["LoginRequest"]["properties"]["totp_code"]["pattern"], "^[0-9]{6}$");
    assert_eq!(transfer["properties"]["from_account_id"]["format"], "uuid");

    let paths = document["paths"].as_object().expect("paths");
    let mut limits = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("operations") {
            let responses = operation["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            let route = format!("{method} {path}");
            if !path.starts_with("/health/") && path != "/metrics" {
                assert!(has("429") && has("503") && has("414"), "{route}: {:?}", responses.keys());
            }
            if operation.get("security").is_some() {
                assert!(has("401"), "{route}");
            }
            if operation.get("requestBody").is_some() {
                assert!(has("400") && has("413") && has("415"), "{route}");
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                match parameter["name"].as_str() {
                    Some("Idempotency-Key") => {
                        assert_eq!(parameter["schema"]["pattern"], bank_api::patterns::IDEMPOTENCY_KEY, "{route}");
                    }
                    Some("limit") => {
                        assert_eq!(
                            (&parameter["schema"]["minimum"], &parameter["schema"]["maximum"]),
                            (&1.into(), &100.into())
                        );
                        limits += 1;
                    }
                    Some("id" | "account_id") => assert_eq!(parameter["schema"]["format"], "uuid", "{route}"),
                    Some("cursor") => assert!(parameter["schema"]["pattern"].is_string(), "{route}"),
                    _ => {}
                }
            }
        }
    }
    assert!(limits >= 4, "every paged route states limit 1-100");
    let statuses = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["responses"].as_object().expect("responses").keys().cloned().collect()
    };
    for status in ["202", "401", "404", "409", "413", "415", "422", "429", "503"] {
        assert!(statuses("/v1/transfers", "post").contains(&status.to_owned()), "POST /v1/transfers {status}");
    }
    for status in ["201", "202", "403", "404", "422"] {
        assert!(
            statuses("/v1/admin/deposits", "post").contains(&status.to_owned()),
            "POST /v1/admin/deposits {status}"
        );
    }
    assert!(statuses("/v1/auth/register", "post").contains(&"409".to_owned()));
    assert!(
        paths["/v1/accounts"]["post"]["responses"]["409"]["description"]
            .as_str()
            .expect("text")
            .contains("100 accounts")
    );
    for (path, method, status, operation_id) in [
        ("/v1/accounts", "post", "201", "get_account"),
        ("/v1/transfers", "post", "202", "get_transfer"),
        ("/v1/admin/deposits", "post", "202", "deposit_request"),
    ] {
        let links = paths[path][method]["responses"][status]["links"].as_object().expect("links");
        let link = links.values().next().expect("one link");
        assert_eq!(link["operationId"], operation_id);
        let target = paths
            .values()
            .flat_map(|item| item.as_object().expect("ops").values())
            .find(|op| op["operationId"] == operation_id);
        assert!(target.is_some(), "{operation_id} exists");
    }
}
