//! The house's shape, checked: `src/lib.rs` lists the top-level modules bottom-up, and every
//! module may import only modules listed above it. An import that points down the list fails
//! here with the file that makes it and, when it closes a loop, the whole import cycle — so a
//! new cycle between top-level modules cannot land unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules in the order `src/lib.rs` declares them.
fn declared_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("mod "))?;
            Some(rest.split(';').next()?.trim().to_string())
        })
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source file names through `crate::…` (comments skipped).
fn imports(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" // ").next().unwrap_or(code);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if modules.contains(&name) {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// Module → (imported module → the first file that imports it).
fn graph(src: &Path, modules: &BTreeSet<String>) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
        let owner = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&owner) {
            continue; // lib.rs, main.rs
        }
        let source = std::fs::read_to_string(&file).expect("read source");
        for imported in imports(&source, modules) {
            if imported != owner {
                graph
                    .entry(owner.clone())
                    .or_default()
                    .entry(imported)
                    .or_insert_with(|| format!("src/{}", relative.display()));
            }
        }
    }
    graph
}

/// A path of imports from `from` back to `to`, if there is one.
fn path_back(graph: &BTreeMap<String, BTreeMap<String, String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_string()]];
    while let Some(path) = stack.pop() {
        let last = path.last().expect("non-empty").clone();
        if last == to {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(&last).into_iter().flat_map(|m| m.keys()) {
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

#[test]
fn every_module_imports_only_modules_listed_above_it_in_lib_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_order(&std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs"));
    assert!(order.len() > 10, "lib.rs lists the modules: {order:?}");
    let position: BTreeMap<String, usize> = order.iter().enumerate().map(|(i, m)| (m.clone(), i)).collect();
    let modules: BTreeSet<String> = order.iter().cloned().collect();
    let graph = graph(&src, &modules);
    let mut problems = Vec::new();
    for (module, imported) in &graph {
        for (target, file) in imported {
            if position[target] > position[module] {
                let cycle = path_back(&graph, target, module)
                    .map(|p| format!("; it closes the import cycle {module} -> {}", p.join(" -> ")))
                    .unwrap_or_default();
                problems.push(format!("{file}: `{module}` imports `{target}`, listed below it in lib.rs{cycle}"));
            }
        }
    }
    assert!(problems.is_empty(), "imports that point down the module list:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_and_names_it() {
    let modules: BTreeSet<String> = ["a", "b", "c"].into_iter().map(String::from).collect();
    let found = imports("use crate::b::X;\n// crate::c in a comment\nlet y = crate::c::f(); // crate::a\n", &modules);
    assert_eq!(found, ["b", "c"].into_iter().map(String::from).collect(), "comments are not imports");
    let graph: BTreeMap<String, BTreeMap<String, String>> =
        [("a", [("b", "src/a.rs")]), ("b", [("c", "src/b.rs")]), ("c", [("a", "src/c.rs")])]
            .into_iter()
            .map(|(m, edges)| (m.to_string(), edges.into_iter().map(|(t, f)| (t.to_string(), f.to_string())).collect()))
            .collect();
    assert_eq!(path_back(&graph, "b", "a"), Some(vec!["b".into(), "c".into(), "a".into()]));
    assert_eq!(path_back(&graph, "a", "zzz"), None);
}
