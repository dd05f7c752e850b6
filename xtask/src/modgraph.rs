//! The module-cycle check `cargo xtask ci` runs: in no crate does a top-level module use
//! another that uses it back (directly or through others). A cycle means a shared type or
//! helper lives in the wrong module; give it a home of its own.
//!
//! Each `src/` file belongs to its top-level module (`src/kms/signer.rs` to `kms`); every
//! `crate::name` path in its code (comments are skipped, so doc links do not count) is an
//! edge to module `name`. Cycles are the strongly connected components of more than one
//! module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail};

/// Fails, naming each cycle, when any crate under `crates/` (or xtask) has one.
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.push(root.join("xtask"));
    dirs.sort();
    let mut found = Vec::new();
    for dir in dirs {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        collect(&src, &src, &mut graph)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        for cycle in cycles(&graph) {
            found.push(format!(
                "{}: {}",
                name.clone().unwrap_or_default(),
                cycle.join(" <-> ")
            ));
        }
    }
    if found.is_empty() {
        println!("no module imports another that imports it back");
        Ok(())
    } else {
        bail!("module cycles:\n  {}", found.join("\n  "))
    }
}

fn collect(src: &Path, dir: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(src, &path, graph)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src)?;
        let Some(top) = rel.components().next().map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        }) else {
            continue;
        };
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let edges = graph.entry(top.clone()).or_default();
        for target in references(&text) {
            if target != top {
                edges.insert(target);
            }
        }
    }
    Ok(())
}

/// The modules a file's code names as `crate::name`, or in `use crate::{a, b::c}`.
fn references(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    for (i, _) in code.match_indices("crate::") {
        let rest = code.get(i + "crate::".len()..).unwrap_or_default();
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The groups of more than one module that all reach each other (the strongly connected
/// components), each sorted. A crate has a few dozen modules at most, so reachability by a
/// walk from every module is plenty.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = vec![from];
        while let Some(m) = todo.pop() {
            for next in graph.get(m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<String>> =
        graph.keys().map(|m| (m.as_str(), reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for (m, from_m) in &reaches {
        if placed.contains(*m) || !from_m.contains(*m) {
            continue;
        }
        let group: Vec<String> = from_m
            .iter()
            .filter(|other| reaches.get(other.as_str()).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        placed.extend(group.iter().cloned());
        if group.len() > 1 {
            out.push(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(m, to)| {
                (
                    (*m).to_owned(),
                    to.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_three_module_circle_is_found_and_a_chain_is_not() {
        let circle = graph(&[
            ("keys", &["state"]),
            ("service", &["state"]),
            ("state", &["keys", "service"]),
        ]);
        assert_eq!(cycles(&circle), vec![vec!["keys", "service", "state"]]);
        let chain = graph(&[
            ("service", &["state"]),
            ("state", &["keys"]),
            ("keys", &["config"]),
            ("config", &[]),
        ]);
        assert!(cycles(&chain).is_empty());
    }

    #[test]
    fn this_workspace_has_no_module_cycles() {
        check(&crate::repo_root()).unwrap();
    }

    #[test]
    fn references_skip_comments_and_read_groups() {
        let text = "//! see [`x`](crate::docs)\nuse crate::{config::Config, error, self};\nlet n = crate::clock::now();";
        let refs: Vec<String> = references(text).into_iter().collect();
        assert_eq!(refs, ["clock", "config", "error"]);
    }
}
