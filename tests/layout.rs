//! The module layout stays a layering: no module of `src/` imports one
//! that imports it back, directly or around a loop, counting both top-level
//! modules (`auth`, `upstream`, ...) and each file (`upstream::pool`).
//! Imports are the `crate::` and `super::` paths of the code; comments and
//! `#[cfg(test)] mod tests` do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/upstream/pool.rs` is
/// `upstream::pool`, `src/upstream/mod.rs` is `upstream`; None for the
/// crate root and for unit-test files (`tests.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    if parts.is_empty() || parts.last().is_some_and(|p| p == "tests") {
        return None;
    }
    Some(parts.join("::"))
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths that follow `prefix` in `code` (`crate::a::b::{c, d}` gives
/// `a::b`): identifier characters and `::`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].trim_end_matches(':'));
    }
    out
}

/// The longest known module that `path` starts with.
fn resolve<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .find_map(|n| modules.get(&segments[..n].join("::")))
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Module → the modules it imports, at file granularity (`top`: by
/// top-level module).
fn graph(top: bool) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let key = |m: &str| {
        if top {
            m.split("::").next().unwrap_or(m).to_owned()
        } else {
            m.to_owned()
        }
    };
    let with_files: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter_map(|f| module_of(&src, &f).map(|m| (m, f)))
        .collect();
    let modules: BTreeSet<String> = with_files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &with_files {
        let code = code(&std::fs::read_to_string(file).unwrap());
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_owned());
        let mut targets: Vec<String> = paths_after(&code, "crate::")
            .into_iter()
            .map(str::to_owned)
            .collect();
        targets.extend(
            paths_after(&code, "super::")
                .into_iter()
                .map(|p| match &parent {
                    Some(parent) => format!("{parent}::{p}"),
                    None => p.to_owned(),
                }),
        );
        let from = key(module);
        let entry = edges.entry(from.clone()).or_default();
        for target in targets {
            let Some(to) = resolve(&modules, &target) else {
                continue;
            };
            if related(module, to) {
                continue;
            }
            let to = key(to);
            if to != from {
                entry.insert(to);
            }
        }
    }
    edges
}

/// One loop of `edges`, if any: the modules around it.
fn a_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search with the path on a stack; a back edge is a loop.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let edges = graph(true);
    assert!(edges.contains_key("upstream") && edges.contains_key("session"));
    if let Some(cycle) = a_cycle(&edges) {
        panic!(
            "import cycle between top-level modules: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let edges = graph(false);
    assert!(edges.contains_key("upstream::pool"));
    if let Some(cycle) = a_cycle(&edges) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_loop_and_only_a_loop() {
    fn add(edges: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str) {
        edges.entry(a.into()).or_default().insert(b.into());
        edges.entry(b.into()).or_default();
    }
    let mut edges = BTreeMap::new();
    add(&mut edges, "config", "ldap");
    add(&mut edges, "upstream", "config");
    add(&mut edges, "upstream", "ldap");
    assert_eq!(a_cycle(&edges), None);
    add(&mut edges, "ldap", "upstream");
    let cycle = a_cycle(&edges).unwrap();
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.len() >= 3, "{cycle:?}");
    assert_eq!(
        paths_after(
            "use crate::upstream::pool::{A, B}; // crate::auth",
            "crate::"
        ),
        ["upstream::pool", "auth"]
    );
    assert_eq!(code("use a; // crate::auth\n"), "use a; ");
}
