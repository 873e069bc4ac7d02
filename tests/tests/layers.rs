//! `shared` is four layers that depend downward only (`api → domain → vendors → platform`, with
//! `local` above them for xtask and the tests). This reads the sources and fails on any path that
//! goes up a layer, and on any cycle between modules (a module is a layer's direct child).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use parley_tests::workspace_root;

const LAYERS: &[&str] = &["platform", "vendors", "domain", "api", "local"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

/// A module of `shared`: its layer and, below the layer's root, its child (`None` for `mod.rs`).
type Unit = (String, Option<String>);

/// Every `crate::…` path in `source`, as (layer, first name below it). A braced group yields one
/// entry per member.
fn crate_paths(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let layer: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[layer.len()..];
        let Some(after) = after.strip_prefix("::") else {
            found.push((layer, String::new()));
            continue;
        };
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut member = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name: String = member
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            found.push((layer.clone(), name));
                        }
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((layer, name));
        }
    }
    found
}

/// The unit a file belongs to, from its path under `shared/src`.
fn unit_of(relative: &Path) -> Option<Unit> {
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let layer = parts.next()?;
    rank(&layer)?;
    let child = parts
        .next()
        .map(|p| p.trim_end_matches(".rs").to_owned())
        .filter(|p| p != "mod");
    Some((layer, child))
}

/// Which unit `crate::<layer>::<name>` names: the child module when one exists, else the layer's
/// root (a re-export there, such as `domain::Error`).
fn unit_named(src: &Path, layer: &str, name: &str) -> Unit {
    let dir = src.join(layer);
    let is_module = dir.join(format!("{name}.rs")).is_file() || dir.join(name).is_dir();
    (layer.to_owned(), is_module.then(|| name.to_owned()))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

struct Report {
    upward: Vec<String>,
    cycles: Vec<Vec<Unit>>,
}

/// Checks every file under `src` (a `shared/src` tree).
fn check(src: &Path) -> Report {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut upward = Vec::new();
    let mut edges: BTreeMap<Unit, BTreeSet<Unit>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap().to_path_buf();
        let Some(unit) = unit_of(&relative) else {
            continue; // lib.rs only wires the layers together
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for (layer, name) in crate_paths(&source) {
            let Some(target_rank) = rank(&layer) else {
                upward.push(format!(
                    "{}: crate::{layer} is outside the layers",
                    relative.display()
                ));
                continue;
            };
            if target_rank > rank(&unit.0).unwrap() {
                upward.push(format!(
                    "{}: uses crate::{layer}::{name}, a layer above {}",
                    relative.display(),
                    unit.0
                ));
            }
            let target = unit_named(src, &layer, &name);
            if target != unit {
                edges.entry(unit.clone()).or_default().insert(target);
            }
        }
    }
    Report {
        upward,
        cycles: cycles(&edges),
    }
}

/// Every cycle reachable in the graph, each reported once from its smallest unit.
fn cycles(edges: &BTreeMap<Unit, BTreeSet<Unit>>) -> Vec<Vec<Unit>> {
    fn walk(
        node: &Unit,
        edges: &BTreeMap<Unit, BTreeSet<Unit>>,
        path: &mut Vec<Unit>,
        found: &mut BTreeSet<Vec<Unit>>,
        done: &mut BTreeSet<Unit>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            let min = cycle.iter().enumerate().min_by_key(|(_, n)| *n).unwrap().0;
            cycle.rotate_left(min);
            found.insert(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            walk(next, edges, path, found, done);
        }
        path.pop();
        done.insert(node.clone());
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        walk(node, edges, &mut Vec::new(), &mut found, &mut done);
    }
    found.into_iter().collect()
}

#[test]
fn shared_depends_downward_only_and_has_no_module_cycles() {
    let report = check(&workspace_root().join("shared/src"));
    assert!(
        report.upward.is_empty(),
        "imports that go up a layer:\n{}",
        report.upward.join("\n")
    );
    assert!(
        report.cycles.is_empty(),
        "cycles between modules: {:?}",
        report.cycles
    );
}

/// The checker itself: a copy of a small tree with an upward import and a cycle is refused.
#[test]
fn an_upward_import_and_a_cycle_are_both_reported() {
    let dir = std::env::temp_dir().join(format!("parley-layers-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod platform; pub mod domain; pub mod api;");
    write("platform/mod.rs", "pub mod db;");
    write("platform/db.rs", "use crate::domain::Error;");
    write("domain/mod.rs", "pub mod a; pub mod b;");
    write("domain/a.rs", "use crate::domain::{b::Thing, Other};");
    write(
        "domain/b.rs",
        "use crate::domain::a;\nuse crate::platform::db;",
    );
    write("api/mod.rs", "use crate::domain::a;");
    let report = check(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.upward.len(), 1, "{:?}", report.upward);
    assert!(report.upward[0].contains("platform/db.rs: uses crate::domain::Error"));
    let a = ("domain".to_owned(), Some("a".to_owned()));
    let b = ("domain".to_owned(), Some("b".to_owned()));
    assert_eq!(report.cycles, vec![vec![a, b]]);
}
