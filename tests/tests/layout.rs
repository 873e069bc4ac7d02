//! The local router (Cargo.toml) and SAM (template.yaml) must describe the same API, and every SAM
//! `Binary` must be a bin target of the workspace.

use std::collections::BTreeSet;

use parley_tests::workspace_root;
use serde_yaml_ng::Value as Yaml;

type Route = (String, String, String); // (METHOD, path, function)

fn router_routes() -> BTreeSet<Route> {
    let manifest: toml::Table = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("router table");
    let mut routes = BTreeSet::new();
    for (path, targets) in router {
        for target in targets.as_array().expect("each path maps to a list") {
            routes.insert((
                target["method"].as_str().unwrap().to_owned(),
                path.clone(),
                target["function"].as_str().unwrap().to_owned(),
            ));
        }
    }
    routes
}

fn template() -> Yaml {
    serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap(),
    )
    .unwrap()
}

fn functions(template: &Yaml) -> Vec<(String, &Yaml)> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r))
        .collect()
}

fn template_routes() -> BTreeSet<Route> {
    let template = template();
    let mut routes = BTreeSet::new();
    for (_, function) in functions(&template) {
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary")
            .to_owned();
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                routes.insert((
                    p["Method"].as_str().unwrap().to_ascii_uppercase(),
                    p["Path"].as_str().unwrap().to_owned(),
                    binary.clone(),
                ));
            }
        }
    }
    routes
}

#[test]
fn router_table_and_template_agree_route_by_route() {
    let router = router_routes();
    let template = template_routes();
    assert!(!router.is_empty());
    let only_router: Vec<_> = router.difference(&template).collect();
    let only_template: Vec<_> = template.difference(&router).collect();
    assert!(
        only_router.is_empty() && only_template.is_empty(),
        "only in Cargo.toml: {only_router:?}\nonly in template.yaml: {only_template:?}"
    );
}

#[test]
fn every_function_is_a_cargolambda_build_of_a_workspace_binary() {
    let root = workspace_root();
    let template = template();
    for (id, function) in functions(&template) {
        assert!(id.ends_with("Function"), "{id}");
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id}"
        );
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some("./"),
            "{id}"
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let manifest: toml::Table =
            std::fs::read_to_string(root.join("functions").join(binary).join("Cargo.toml"))
                .expect(binary)
                .parse()
                .unwrap();
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some(binary),
            "{id}: crate name is the binary name"
        );
        assert!(
            root.join("functions")
                .join(binary)
                .join("src/main.rs")
                .exists(),
            "{id}: {binary} has a bin target"
        );
    }
}

#[test]
fn every_api_path_answers_cors_preflight() {
    let routes = router_routes();
    for (_, path, _) in routes.iter().filter(|(_, p, _)| p.starts_with("/api/")) {
        assert!(
            routes.iter().any(|(m, p, _)| m == "OPTIONS" && p == path),
            "{path} has no OPTIONS route"
        );
    }
}

/// Workspace members with a `src/main.rs` that are tools, not functions: never in template.yaml.
const NOT_DEPLOYED: &[&str] = &["xtask", "xtask/bench-floor"];

#[test]
fn every_workspace_binary_is_deployed_except_the_tools() {
    let root = workspace_root();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut binaries = Vec::new();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let dirs: Vec<String> = match member.strip_suffix("/*") {
            Some(parent) => std::fs::read_dir(root.join(parent))
                .unwrap()
                .map(|e| format!("{parent}/{}", e.unwrap().file_name().to_string_lossy()))
                .collect(),
            None => vec![member.to_owned()],
        };
        binaries.extend(
            dirs.into_iter()
                .filter(|d| root.join(d).join("src/main.rs").exists()),
        );
    }
    let template = template();
    let deployed: BTreeSet<String> = functions(&template)
        .iter()
        .map(|(_, f)| {
            let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
            format!("functions/{binary}")
        })
        .collect();
    let stray: Vec<_> = binaries
        .iter()
        .filter(|d| !deployed.contains(*d) && !NOT_DEPLOYED.contains(&d.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "binaries neither deployed by template.yaml nor listed as tools: {stray:?}"
    );
    assert!(binaries.iter().any(|d| d == "xtask/bench-floor"));
}
