//! docs/openapi.yaml is the API contract: it must name exactly the routes template.yaml deploys, hold
//! together (ids, links, references), and be valid OpenAPI 3.1. schemathesis checks it against the
//! running binaries (tests/tests/schemathesis.rs).

use std::collections::BTreeSet;
use std::process::Command;

use parley_tests::workspace_root;
use serde_yaml_ng::Value as Yaml;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(path)).expect(path);
    serde_yaml_ng::from_str(&text).expect(path)
}

/// (METHOD, path) of every HttpApi event on a function, CORS preflight aside: OPTIONS is API
/// Gateway's business (CorsConfiguration), never part of the contract.
fn template_routes() -> BTreeSet<(String, String)> {
    let template = load("template.yaml");
    let mut routes = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let method = event["Properties"]["Method"]
                .as_str()
                .expect("Method")
                .to_ascii_uppercase();
            if method != "OPTIONS" {
                let path = event["Properties"]["Path"].as_str().expect("Path");
                routes.insert((method, path.to_owned()));
            }
        }
    }
    routes
}

/// Every (METHOD, path, operation) in the contract.
fn contract_operations(contract: &Yaml) -> Vec<(String, String, &Yaml)> {
    let mut operations = Vec::new();
    for (path, item) in contract["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("path keys are strings");
        for (key, operation) in item.as_mapping().expect("path item") {
            let key = key.as_str().unwrap_or_default();
            if METHODS.contains(&key) {
                operations.push((key.to_ascii_uppercase(), path.to_owned(), operation));
            }
        }
    }
    operations
}

#[test]
fn the_contract_covers_exactly_the_routes_the_template_deploys() {
    let contract = load("docs/openapi.yaml");
    let template = template_routes();
    let documented: BTreeSet<(String, String)> = contract_operations(&contract)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(
        template.len() >= 15,
        "template.yaml routes not found: {template:?}"
    );
    let undocumented: Vec<_> = template.difference(&documented).collect();
    let not_deployed: Vec<_> = documented.difference(&template).collect();
    assert!(
        undocumented.is_empty() && not_deployed.is_empty(),
        "in template.yaml but not docs/openapi.yaml: {undocumented:?}\n\
         in docs/openapi.yaml but not template.yaml: {not_deployed:?}"
    );
}

#[test]
fn every_operation_is_named_once_and_every_link_and_reference_resolves() {
    let contract = load("docs/openapi.yaml");
    let operations = contract_operations(&contract);
    let mut ids = BTreeSet::new();
    for (method, path, operation) in &operations {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let responses = operation["responses"].as_mapping().expect("responses");
        // Every answer a function can give goes through the same pipeline, so these are always possible.
        for status in ["413", "415", "429", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {path} does not list {status}"
            );
        }
        let secured = match operation.get("security") {
            None => true,
            Some(requirements) => requirements
                .as_sequence()
                .expect("security is a list")
                .iter()
                .any(|r| r.get("sessionCookie").is_some() || r.get("bearerAuth").is_some()),
        };
        if secured {
            assert!(
                responses.contains_key("401"),
                "{method} {path} takes a session but does not list 401"
            );
        }
        if secured && method != "GET" {
            assert!(
                responses.contains_key("403"),
                "{method} {path} takes a cookie session and changes state but does not list 403 (CSRF)"
            );
        }
    }
    let mut links = 0;
    for (method, path, operation) in &operations {
        for (_, response) in operation["responses"].as_mapping().unwrap() {
            let Some(map) = response.get("links").and_then(Yaml::as_mapping) else {
                continue;
            };
            for (name, link) in map {
                let target = link["operationId"]
                    .as_str()
                    .expect("links name operationIds");
                assert!(
                    ids.contains(target),
                    "{method} {path}: link {name:?} points at unknown operation {target}"
                );
                links += 1;
            }
        }
    }
    assert!(
        links > 0,
        "the contract declares no links for stateful testing"
    );

    let mut refs = Vec::new();
    collect_refs(&contract, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference}: only local references are used"));
        let mut node = &contract;
        for segment in pointer.split('/').skip(1) {
            node = node
                .get(segment)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
        }
    }
}

fn collect_refs(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::Mapping(map) => {
            for (key, value) in map {
                if key.as_str() == Some("$ref") {
                    out.push(value.as_str().expect("$ref is a string").to_owned());
                } else {
                    collect_refs(value, out);
                }
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[test]
fn the_contract_is_valid_openapi_3_1() {
    let contract = load("docs/openapi.yaml");
    assert_eq!(contract["openapi"].as_str(), Some("3.1.0"));
    // openapi-spec-validator checks the document against the OpenAPI 3.1 meta-schema (and its
    // schemas against JSON Schema 2020-12) offline; `cargo xtask test` installs it into .venv.
    let validator = workspace_root().join(".venv/bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing (run via cargo xtask test)",
        validator.display()
    );
    let check = |path: &std::path::Path| {
        Command::new(&validator)
            .args(["--schema", "3.1"])
            .arg(path)
            .output()
            .expect("openapi-spec-validator runs")
    };
    let output = check(&workspace_root().join("docs/openapi.yaml"));
    assert!(
        output.status.success(),
        "docs/openapi.yaml is not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The validator must be able to fail: a document with a mistyped schema is refused.
    let broken = std::env::temp_dir().join(format!("parley-openapi-{}.yaml", std::process::id()));
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    std::fs::write(&broken, text.replacen("type: object", "type: 7", 1)).unwrap();
    let refused = check(&broken);
    let _ = std::fs::remove_file(&broken);
    assert!(
        !refused.status.success(),
        "the validator accepted a broken document"
    );
}
