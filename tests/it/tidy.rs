//! The architecture's invariants that a test can check (ARCHITECTURE.md
//! states them): only `nn/` touches tch, `anyhow` only in the binary,
//! `store/` and `data/` know no actix, no file in `src/` over 800 lines,
//! and the top-level modules import each other without a cycle. Each
//! check reads the source as text; comment lines are skipped, so a doc
//! comment may name what the code may not use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its path relative to `src/`.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/ reads") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files in src/", files.len());
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            (rel, std::fs::read_to_string(&p).expect("source reads"))
        })
        .collect()
}

/// The lines of a file that are code (not `//` comments), numbered.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// The files (outside `allowed`) whose code uses any of `paths`
/// (`tch::`, `use tch` ...), with the first line that does.
fn users(
    files: &[(String, String)],
    paths: &[&str],
    allowed: impl Fn(&str) -> bool,
) -> Vec<String> {
    files
        .iter()
        .filter(|(rel, _)| !allowed(rel))
        .filter_map(|(rel, text)| {
            code_lines(text)
                .find(|(_, l)| paths.iter().any(|p| mentions(l, p)))
                .map(|(n, l)| format!("src/{rel}:{n}: {}", l.trim()))
        })
        .collect()
}

/// Whether `line` uses the path `p` as a path of its own (`tch::` but not
/// `sketch::` or `crate::nn::fit::...tch`).
fn mentions(line: &str, p: &str) -> bool {
    line.match_indices(p).any(|(i, _)| {
        line[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
    })
}

fn check(what: &str, offenders: Vec<String>) {
    assert!(
        offenders.is_empty(),
        "ARCHITECTURE.md's invariant \"{what}\" is broken by:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn only_nn_touches_tch() {
    let files = sources();
    check(
        "only nn/ imports tch",
        users(&files, &["tch::", "use tch", "torch_sys"], |rel| {
            rel.starts_with("nn/")
        }),
    );
}

#[test]
fn anyhow_only_in_the_binary() {
    let files = sources();
    check(
        "anyhow only in the binary (main.rs, cli/)",
        users(&files, &["anyhow"], |rel| {
            rel == "main.rs" || rel.starts_with("cli/")
        }),
    );
}

#[test]
fn store_and_data_know_no_actix() {
    let files = sources();
    check(
        "store/ and data/ import no actix",
        users(&files, &["actix", "tokio"], |rel| {
            !(rel.starts_with("store/") || rel.starts_with("data/"))
        }),
    );
}

#[test]
fn no_file_in_src_over_800_lines() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(rel, text)| (rel, text.lines().count()))
        .filter(|(_, n)| *n > 800)
        .map(|(rel, n)| format!("src/{rel}: {n} lines"))
        .collect();
    check("no file in src/ over 800 lines", long);
}

/// `crate::a::...`, `crate::{a, b}` and the binary's
/// `visprog_distiller::a` in a line: the top-level modules it names.
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "visprog_distiller::"] {
        for (i, _) in line.match_indices(prefix) {
            let rest = &line[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                out.extend(
                    group
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or("").to_string()),
                );
            } else {
                out.push(
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The import graph between top-level modules (`data`, `store`,
/// `experiment`, ...; `main.rs` and `cli/` as `cli`).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let top = |rel: &str| -> String {
        let first = rel.split('/').next().unwrap_or(rel);
        match first.strip_suffix(".rs") {
            Some("main") => "cli".to_string(),
            Some(file) => file.to_string(),
            None => first.to_string(),
        }
    };
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| top(rel)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = top(rel);
        for (_, line) in code_lines(text) {
            for m in named_modules(line) {
                if m != from && modules.contains(&m) {
                    graph.entry(from.clone()).or_default().insert(m);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        u: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        path.push(u.to_string());
        for v in g.get(u).into_iter().flatten() {
            match state.get(v).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == v).unwrap_or(0);
                    let mut c = path[at..].to_vec();
                    c.push(v.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(g, v, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in graph.keys() {
        if state.get(u).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(graph, u, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let g = module_graph();
    // The layers ARCHITECTURE.md names, checked to be what the code does.
    for (from, to) in [
        ("orchestrate", "distill"),
        ("distill", "experiment"),
        ("runtime", "program"),
        ("cli", "orchestrate"),
    ] {
        assert!(
            g.get(from).is_some_and(|s| s.contains(to)),
            "{from} no longer imports {to}: the graph is {g:?}"
        );
    }
    if let Some(c) = cycle(&g) {
        panic!(
            "ARCHITECTURE.md's invariant \"no cycle between top-level modules\" is broken: {}",
            c.join(" -> ")
        );
    }
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The text checks themselves, on lines they must and must not flag.
    assert!(mentions("use tch::Tensor;", "tch::"));
    assert!(mentions(
        "    let t = tch::Tensor::zeros(&[1], opts);",
        "tch::"
    ));
    assert!(!mentions("use crate::nn::sketch::Thing;", "tch::"));
    assert!(!mentions("let x = batch::new();", "tch::"));
    assert!(mentions("use anyhow::Result;", "anyhow"));
    assert_eq!(
        named_modules("use crate::{data::DataError, store::Store};"),
        vec!["data", "store"]
    );
    assert_eq!(
        named_modules("use crate::experiment::Progress;"),
        vec!["experiment"]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle(&g).is_some());
    g.insert("b".to_string(), BTreeSet::new());
    assert!(cycle(&g).is_none());
}
