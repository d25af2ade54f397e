//! The house's shape, checked: no two top-level modules of `src/` use each other, directly
//! or through others (a `crate::X` path or `use crate::{X, ..}` in any file of module Y is
//! an edge Y -> X), and the numeric core (`model`, `recon`) names no terminal, CLI,
//! registry or importer module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn module_edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "main" || top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let deps = edges.entry(top.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(i) = rest.find("crate::") {
                    rest = &rest[i + 7..];
                    if let Some(list) = rest.strip_prefix('{') {
                        for part in list.split('}').next().unwrap_or("").split(',') {
                            let m = part.trim().split("::").next().unwrap_or("").trim();
                            if !m.is_empty() {
                                deps.insert(m.to_string());
                            }
                        }
                    } else {
                        let m: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        deps.insert(m);
                    }
                }
            }
            deps.remove(&top);
        }
    }
    let tops: BTreeSet<String> = edges.keys().cloned().collect();
    for d in edges.values_mut() {
        d.retain(|m| tops.contains(m));
    }
    edges
}

#[test]
fn no_import_circles_between_top_level_modules() {
    let edges = module_edges();
    assert!(edges.contains_key("model") && edges.contains_key("tui"));
    // depth-first search for a cycle, reported as a path
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|x| x == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in &edges[m] {
            if let Some(c) = visit(d, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(c) = visit(m, &edges, &mut vec![], &mut done) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_numeric_core_knows_nothing_above_it() {
    let edges = module_edges();
    // leaf utilities, which use nothing of the crate themselves
    let leaves = ["error", "hex", "panics", "sysmem"];
    for leaf in leaves {
        let uses = edges.get(leaf).cloned().unwrap_or_default();
        assert!(uses.is_empty(), "`{leaf}` is a leaf but uses {uses:?}");
    }
    for core in ["model", "recon"] {
        let bad: Vec<&String> = edges[core]
            .iter()
            .filter(|m| m.as_str() != "model" && !leaves.contains(&m.as_str()))
            .collect();
        assert!(bad.is_empty(), "`{core}` uses {bad:?}");
    }
}
