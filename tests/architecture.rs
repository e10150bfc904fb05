//! The house has no circles: no module of `src/` depends on another that depends back on it,
//! directly or around a loop. A module is a file (`src/fit/law.rs` is `fit::law`; a `mod.rs` is
//! its folder's module); it depends on every module its code names by `crate::…` or `super::…`
//! (in `use` lines and in paths), outside comments and its `#[cfg(test)]` tail. A module naming
//! its own parent or child is not a dependency (a folder's `mod.rs` declares its children).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/` by its path (`fit::law`), with its code.
fn modules() -> BTreeMap<String, String> {
    fn visit(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                visit(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if !["mod", "lib", "main"].contains(&name.as_str()) {
                    p.push(name);
                }
                out.insert(p.join("::"), code_of(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    // The binary's own modules (`src/main.rs`, `src/cli/`) are another crate: `crate::` there is
    // the binary, and it may use every library module.
    out.retain(|m, _| !m.is_empty() && m != "cli" && !m.starts_with("cli::"));
    out
}

/// The code of a file without its comments and its `#[cfg(test)]` tail.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The paths after each `crate::` or `super::` in `code` (`use crate::{a, b::c}` gives both),
/// as written: `super::` resolved against `parent`.
fn named_paths(code: &str, parent: &[&str]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (keyword, base) in [("crate::", Vec::new()), ("super::", parent.iter().map(|s| s.to_string()).collect::<Vec<_>>())] {
        let mut rest = code;
        while let Some(at) = rest.find(keyword) {
            let before = rest[..at].chars().last();
            rest = &rest[at + keyword.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for tail in expand(rest) {
                let mut path = base.clone();
                path.extend(tail);
                out.push(path);
            }
        }
    }
    out
}

/// `a::b::c` → [[a, b, c]]; `{a, b::c}` → [[a], [b, c]] (one level of braces).
fn expand(text: &str) -> Vec<Vec<String>> {
    let segment = |s: &str| s.split("::").map(|p| p.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>()).collect();
    if let Some(inner) = text.strip_prefix('{') {
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        return inner.split(',').map(segment).collect();
    }
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(text.len());
    let path = &text[..end];
    if text[end..].starts_with('{') {
        return expand(&text[end..]).into_iter().map(|t| segment(path.trim_end_matches("::")).into_iter().chain(t).collect()).collect();
    }
    vec![segment(path)]
}

/// Module → the modules it depends on.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let resolve = |path: &[String]| (1..=path.len()).rev().map(|i| path[..i].join("::")).find(|m| modules.contains_key(m));
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &modules {
        let parts: Vec<&str> = module.split("::").collect();
        let parent = &parts[..parts.len() - 1];
        for path in named_paths(code, parent) {
            let Some(target) = resolve(&path) else { continue };
            let related = target == *module || module.starts_with(&format!("{target}::")) || target.starts_with(&format!("{module}::"));
            if !related {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// A loop of dependencies, if there is one (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(node: &str, edges: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_depends_on_itself_around_a_loop() {
    let edges = dependencies();
    if let Some(cycle) = find_cycle(&edges) {
        panic!("a circle of dependencies: {} (move what both need below both)", cycle.join(" → "));
    }
}

/// The check sees what it must: grouped imports, `super::`, and a planted loop.
#[test]
fn the_check_finds_imports_and_loops() {
    let paths = named_paths("use crate::{fit::law, layout};\nlet x = super::input::Table::read();", &["fit"]);
    assert!(paths.contains(&vec!["fit".to_string(), "law".to_string()]), "{paths:?}");
    assert!(paths.contains(&vec!["layout".to_string()]), "{paths:?}");
    assert!(paths.contains(&vec!["fit".to_string(), "input".to_string(), "Table".to_string(), "read".to_string()]), "{paths:?}");
    let edges = dependencies();
    assert!(edges["results"].contains("fit::report"), "the results layer reads the fits: {:?}", edges.get("results"));
    let mut planted = edges.clone();
    planted.entry("fit::law".into()).or_default().insert("results".into());
    let cycle = find_cycle(&planted).expect("a planted loop is found");
    assert!(cycle.contains(&"results".to_string()) && cycle.contains(&"fit::law".to_string()), "{cycle:?}");
}

/// `fit` is the mathematics over observations: it reads no sweep directory, no run's files and
/// no training code. Those live below it in the data flow and are read by the results layer
/// (`results::inputs`), which hands the fits typed observations.
#[test]
fn the_fits_import_no_sweep_training_or_layout() {
    let edges = dependencies();
    let forbidden = ["sweep", "train", "layout"];
    let mut found = Vec::new();
    for (module, targets) in &edges {
        if module == "fit" || module.starts_with("fit::") {
            for t in targets {
                if forbidden.iter().any(|f| t == f || t.starts_with(&format!("{f}::"))) {
                    found.push(format!("{module} → {t}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "fit must not import sweep, train or layout (read in results::inputs, pass observations): {found:?}");
}

/// A cell is text in one place only: the reader of table files (`fit::input::Table`), which
/// types every cell into `fit::observation::Value`. Elsewhere a table's rows are typed.
#[test]
fn text_cells_only_in_the_table_file_reader() {
    let reader = "fit::input";
    let text_rows = ["Vec<Vec<String>>", "Vec<Vec<&str>>", "[Vec<String>]"];
    let offenders: Vec<String> = modules()
        .into_iter()
        .filter(|(module, _)| module != reader)
        .flat_map(|(module, code)| {
            code.lines()
                .filter(|l| {
                    let field_or_signature = l.trim_start().starts_with("pub ") || l.contains("fn ") || l.trim_end().ends_with(',');
                    field_or_signature && text_rows.iter().any(|t| l.contains(t)) && l.contains(':')
                })
                .map(|l| format!("{module}: {}", l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(offenders.is_empty(), "rows of text cells outside {reader} (use fit::observation::Value): {offenders:?}");
}
