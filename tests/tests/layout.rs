//! template.yaml is the one list of routes, queues and schedules: the local stack reads it (and
//! reads all of it), every SAM `Binary` is a bin target of the workspace, and the API's
//! `CorsConfiguration` is exactly the CORS rule the functions apply in shared.

use std::collections::{BTreeMap, BTreeSet};

use parley_tests::{Event, settings_with, workspace_root};
use serde_yaml_ng::Value as Yaml;
use xtask::template::Template;

type Route = (String, String, String); // (METHOD, path, function)

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

/// Every event of `kind` in the raw YAML: (function binary, event properties).
fn events<'a>(template: &'a Yaml, kind: &str) -> Vec<(String, &'a Yaml)> {
    let mut found = Vec::new();
    for (_, function) in functions(template) {
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary")
            .to_owned();
        for (_, event) in function["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            if event["Type"].as_str() == Some(kind) {
                found.push((binary.clone(), &event["Properties"]));
            }
        }
    }
    found
}

fn template_routes() -> BTreeSet<Route> {
    let template = template();
    events(&template, "HttpApi")
        .into_iter()
        .map(|(binary, p)| {
            (
                p["Method"].as_str().unwrap().to_ascii_uppercase(),
                p["Path"].as_str().unwrap().to_owned(),
                binary,
            )
        })
        .collect()
}

/// The template as the local stack reads it, with `origins` as the CorsOrigins parameter.
fn local_view(origins: &str) -> Template {
    Template::load(
        &workspace_root().join("template.yaml"),
        &BTreeMap::from([("CorsOrigins".to_owned(), origins.to_owned())]),
    )
    .unwrap()
}

#[test]
fn the_local_stack_takes_every_route_queue_and_schedule_from_the_template() {
    let local = local_view("http://localhost:3000");
    let raw = template();

    let routes: BTreeSet<Route> = local
        .routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.function.clone()))
        .collect();
    assert!(!routes.is_empty());
    assert_eq!(routes, template_routes());

    let queues: BTreeSet<(String, i64)> = events(&raw, "SQS")
        .into_iter()
        .map(|(binary, p)| (binary, p["BatchSize"].as_i64().expect("BatchSize is set")))
        .collect();
    let local_queues: BTreeSet<(String, i64)> = local
        .queues
        .iter()
        .map(|q| (q.function.clone(), i64::from(q.batch_size)))
        .collect();
    assert_eq!(local_queues, queues);
    for queue in &local.queues {
        assert!(
            !queue.url_variables.is_empty(),
            "{}: no function is told its URL",
            queue.queue
        );
        assert!(queue.max_concurrency.is_some(), "{}", queue.queue);
    }

    let schedules: BTreeSet<(String, String)> = events(&raw, "Schedule")
        .into_iter()
        .map(|(binary, p)| (binary, p["Schedule"].as_str().unwrap().to_owned()))
        .collect();
    let local_schedules: BTreeSet<(String, String)> = local
        .schedules
        .iter()
        .map(|s| (s.function.clone(), s.expression.clone()))
        .collect();
    assert_eq!(local_schedules, schedules);
    assert!(!schedules.is_empty());
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
fn preflight_invokes_no_function() {
    let options: Vec<Route> = template_routes()
        .into_iter()
        .filter(|(m, _, _)| m == "OPTIONS" || m == "ANY")
        .collect();
    assert!(
        options.is_empty(),
        "API Gateway answers preflight (CorsConfiguration); these routes would invoke a function instead: {options:?}"
    );
}

/// A header's comma-separated items, trimmed.
fn items(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test]
async fn cors_configuration_is_the_rule_the_functions_apply() {
    // Spaces around the origins, as an operator might type the parameter.
    let parameter = " https://app.example.com , http://localhost:3000";
    let cors = local_view(parameter)
        .cors
        .expect("the HTTP API declares a CorsConfiguration");

    // Origins: the parameter, trimmed, as the functions read CORS_ORIGINS.
    let settings = settings_with(
        "postgres://unused@127.0.0.1/unused",
        &[("CORS_ORIGINS", parameter)],
    );
    assert_eq!(cors.allow_origins, settings.cors_origins);

    // Methods, headers, max-age and credentials: what shared's preflight answers an allowed origin.
    let http = shared::api::Http::new(
        "cors-rule",
        shared::api::Cors::new(settings.cors_origins.clone()),
        1024,
    );
    let preflight = Event::new("OPTIONS", "/api/me")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "DELETE")
        .request();
    let response = http
        .serve(preflight, |_| async {
            unreachable!("a preflight never reaches the handler")
        })
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        cors.allow_methods,
        items(header("access-control-allow-methods").as_deref())
    );
    assert_eq!(
        cors.allow_headers,
        items(header("access-control-allow-headers").as_deref())
    );
    assert_eq!(
        cors.max_age.map(|s| s.to_string()),
        header("access-control-max-age")
    );
    assert_eq!(
        cors.allow_credentials,
        header("access-control-allow-credentials").as_deref() == Some("true")
    );
    // Exposed beyond the CORS-safelisted response headers: the rate-limit fields, on both sides
    // (API Gateway's rule wins on a deployed stage, shared's applies locally and in tests).
    let answer = http
        .serve(
            Event::new("GET", "/api/me")
                .header("origin", "https://app.example.com")
                .request(),
            |_| async { Ok(shared::api::no_content()) },
        )
        .await
        .unwrap();
    let exposed = answer
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(cors.expose_headers, items(exposed.as_deref()));
    assert_eq!(
        cors.expose_headers,
        ["ratelimit", "ratelimit-policy", "retry-after"]
    );
}

/// Functions fed by a queue, and the webhook receivers: what ReservedConcurrency=on reserves for.
const RECEIVERS: &[&str] = &[
    "assemblyai-webhook",
    "signalwire-recording",
    "signalwire-status",
    "signalwire-voice",
    "stripe-webhook",
    "telnyx-webhook",
];

#[test]
fn reserved_concurrency_is_opt_in_and_above_each_queues_maximum_concurrency() {
    let load = |parameters: &[(&str, &str)]| {
        let mut given =
            BTreeMap::from([("CorsOrigins".to_owned(), "http://localhost:3000".to_owned())]);
        given.extend(
            parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Template::load(&workspace_root().join("template.yaml"), &given).unwrap()
    };
    // Off by default: a new account (quota 10) could not deploy a reservation.
    assert!(load(&[]).reserved_concurrency.is_empty());
    for parameters in [
        vec![("ReservedConcurrency", "on")],
        vec![
            ("ReservedConcurrency", "on"),
            ("TranscriptionConcurrency", "1000"),
            ("ElevenLabsConcurrency", "2"),
            ("TranslationConcurrency", "17"),
            ("CallConcurrency", "3"),
            ("ReceiverReservedConcurrency", "4"),
        ],
    ] {
        let t = load(&parameters);
        let mut expected: BTreeSet<&str> = RECEIVERS.iter().copied().collect();
        for queue in &t.queues {
            expected.insert(&queue.function);
            let max = queue.max_concurrency.unwrap_or_else(|| {
                panic!("{}: a queue without MaximumConcurrency", queue.function)
            });
            let reserved = t.reserved_concurrency[&queue.function];
            assert_eq!(reserved, max + 1, "{} {parameters:?}", queue.function);
        }
        let receiver = parameters
            .iter()
            .find(|(k, _)| *k == "ReceiverReservedConcurrency")
            .map_or(10, |(_, v)| v.parse().unwrap());
        for name in RECEIVERS {
            assert_eq!(t.reserved_concurrency[*name], receiver, "{name}");
        }
        let reserved: BTreeSet<&str> = t.reserved_concurrency.keys().map(String::as_str).collect();
        assert_eq!(reserved, expected, "only the workers and the receivers");
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
