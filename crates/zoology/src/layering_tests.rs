//! The crate's layering, enforced: reads the non-test sources of `crates/zoology/src`, builds
//! the graph of top-level modules from their `crate::` paths, and fails on a cycle (printing the
//! edges that close it) or on an edge that points up the layer table below
//! (docs/ARCHITECTURE.md draws the same table).
//!
//! What counts as a dependency: a `crate::m` or `$crate::m` path (or a `crate::{m, …}` group) in
//! code, outside comments and string literals, in a file that is compiled without `cfg(test)`.
//! Modules declared under `#[cfg(test)]` (test files such as `mixers/suite.rs`) and inline
//! `#[cfg(test)] mod … { … }` blocks are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom to top. A module may use modules of its own layer or below, never above;
/// within a layer the no-cycle test is what keeps edges one-way.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["error", "device", "limits", "flops", "console"]),
    ("data", &["text", "tasks"]),
    ("mixers", &["mixers"]),
    ("model", &["model"]),
    ("config", &["config"]),
    ("cost", &["cost"]),
    ("run directories", &["rundir"]),
    ("training", &["train"]),
    ("uses of trained models", &["generate", "construct", "bench", "results", "interop"]),
    ("sweeps", &["sweep"]),
    ("analysis", &["analysis"]),
];

/// Top-level module → (module it uses → files that use it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Removes comments, string and char literals (keeping their line breaks, so that line counts
/// stay true), so that prose and messages that mention `crate::x` are not dependencies.
fn strip_comments_and_strings(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let skipped_from = i;
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            // raw string r"…" or r#"…"# (any number of #)
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat(b'#').take(hashes)).collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = (j + close.len()).min(b.len());
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // a char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote there
            let mut j = i + 2;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        // keep the line structure of what was skipped (line counts stay true)
        let end = i.min(b.len());
        out.extend(std::iter::repeat_n('\n', b[skipped_from..end].iter().filter(|&&c| c == b'\n').count()));
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Cuts `#[cfg(test)] mod name { … }` blocks out of `code` and returns what is left plus the
/// names of `#[cfg(test)] mod name;` declarations (files that are test-only).
fn cut_test_modules(code: &str) -> (String, BTreeSet<String>) {
    let mut code = code.to_string();
    let mut test_files = BTreeSet::new();
    let mut from = 0;
    while let Some(rel) = code[from..].find("#[cfg(test)]") {
        let at = from + rel;
        let after = &code[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let rest = trimmed.strip_prefix("pub(crate)").or_else(|| trimmed.strip_prefix("pub")).unwrap_or(trimmed);
        let Some(rest) = rest.trim_start().strip_prefix("mod ") else {
            from = at + 1;
            continue;
        };
        let name: String = rest.trim_start().chars().take_while(|&c| is_ident(c)).collect();
        let after_name = rest.trim_start()[name.len()..].trim_start();
        let start_of_tail = code.len() - after_name.len();
        if after_name.starts_with(';') {
            test_files.insert(name);
            code.replace_range(at..start_of_tail + 1, "");
        } else if after_name.starts_with('{') {
            let mut depth = 0usize;
            let mut end = start_of_tail;
            for (k, c) in code[start_of_tail..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = start_of_tail + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            code.replace_range(at..end, "");
        } else {
            from = at + 1;
            continue;
        }
        from = at;
    }
    (code, test_files)
}

/// The top-level modules that `code` names through `crate::` / `$crate::` paths.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(rel) = code[from..].find("crate::") {
        let at = from + rel;
        from = at + "crate::".len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c)) {
            continue; // e.g. `my_crate::`
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let close = group.find('}').unwrap_or(group.len());
            // top-level items of the group: split at commas outside nested braces
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(item.trim().split("::").next().unwrap_or("").to_string());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(item.trim().split("::").next().unwrap_or("").to_string());
            let _ = close;
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            out.insert(name);
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// Walks the module tree from `lib.rs`, following `mod x;` declarations that are not test-only.
fn walk(file: &Path, top: Option<&str>, src: &Path, graph: &mut Graph) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (code, test_files) = cut_test_modules(&strip_comments_and_strings(&text));
    let rel = file.strip_prefix(src).unwrap_or(file).display().to_string();
    if let Some(top) = top {
        let uses = graph.entry(top.to_string()).or_default();
        for m in crate_paths(&code) {
            if m != top && m != "Error" && m != "Result" {
                uses.entry(m).or_default().insert(rel.clone());
            }
        }
    }
    // child modules: `mod name;` (with any visibility)
    let stem = file.file_stem().unwrap().to_string_lossy().to_string();
    let dir = file.parent().unwrap();
    let child_dir: PathBuf = if stem == "mod" || stem == "lib" { dir.to_path_buf() } else { dir.join(&stem) };
    for (i, _) in code.match_indices("mod ") {
        if code[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let name: String = code[i + 4..].trim_start().chars().take_while(|&c| is_ident(c)).collect();
        let tail = code[i + 4..].trim_start()[name.len()..].trim_start();
        if name.is_empty() || !tail.starts_with(';') || test_files.contains(&name) {
            continue;
        }
        let child_top = top.unwrap_or(&name).to_string();
        let candidates = [child_dir.join(format!("{name}.rs")), child_dir.join(&name).join("mod.rs")];
        let found = candidates.iter().find(|p| p.exists()).unwrap_or_else(|| panic!("{rel}: mod {name}: no file"));
        walk(found, Some(&child_top), src, graph);
    }
}

fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = Graph::new();
    walk(&src.join("lib.rs"), None, &src, &mut g);
    let tops: BTreeSet<String> = g.keys().cloned().collect();
    for uses in g.values_mut() {
        uses.retain(|m, _| tops.contains(m));
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).map(|u| u.keys().map(String::as_str).collect::<Vec<_>>()).unwrap_or_default() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = vec![];
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&m))
}

#[test]
fn module_graph_has_no_cycle() {
    let g = crate_graph();
    let found = cycles(&g);
    let mut msg = String::new();
    for comp in &found {
        msg += &format!("cycle among {} modules: {}\n", comp.len(), comp.join(", "));
        for a in comp {
            for (b, files) in &g[a] {
                if comp.contains(b) {
                    let f: Vec<&str> = files.iter().map(String::as_str).take(3).collect();
                    msg += &format!("  {a} -> {b}   ({}{})\n", f.join(", "), if files.len() > 3 { ", …" } else { "" });
                }
            }
        }
    }
    assert!(found.is_empty(), "the top-level module graph has cycles:\n{msg}");
}

#[test]
fn every_dependency_points_down_the_layer_table() {
    let g = crate_graph();
    let mut bad = vec![];
    for (a, uses) in &g {
        let Some(la) = layer_of(a) else {
            bad.push(format!("module `{a}` is in no layer: add it to LAYERS here and to docs/ARCHITECTURE.md"));
            continue;
        };
        for (b, files) in uses {
            let lb = layer_of(b).unwrap_or(usize::MAX);
            if lb > la {
                let f: Vec<&str> = files.iter().map(String::as_str).collect();
                bad.push(format!(
                    "{a} ({}) -> {b} ({}): {}",
                    LAYERS[la].0,
                    LAYERS.get(lb).map_or("?", |l| l.0),
                    f.join(", ")
                ));
            }
        }
    }
    assert!(bad.is_empty(), "dependencies that point up the layers:\n  {}", bad.join("\n  "));
}

#[test]
fn the_reader_finds_the_edges_it_should() {
    // The parser on a made-up file: comments, strings, test modules and groups.
    let src = r#"
        use crate::{alpha::X, beta, gamma::{self, Y}};
        use crate::delta::Z; // crate::not_this
        /* crate::nor_this */
        const S: &str = "crate::nor_string";
        macro_rules! m { () => { $crate::epsilon::f() } }
        let c = '{'; let l: &'static str = "";
        #[cfg(test)]
        mod tests { use crate::zeta; fn f() { if true { } } }
        #[cfg(test)]
        mod test_file;
        fn g() { crate::eta::h(); other_crate::theta::i(); }
    "#;
    let (code, test_files) = cut_test_modules(&strip_comments_and_strings(src));
    let found: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(found, ["alpha", "beta", "delta", "epsilon", "eta", "gamma"]);
    assert_eq!(test_files.into_iter().collect::<Vec<_>>(), ["test_file"]);
    // And on the crate: known edges are there, test-only files are not read.
    let g = crate_graph();
    assert!(g["model"].contains_key("mixers"), "model uses mixers: {:?}", g["model"]);
    assert!(g.values().map(|u| u.len()).sum::<usize>() > 20, "too few edges found: {g:?}");
    assert!(!g["mixers"].values().flatten().any(|f| f.ends_with("suite.rs")), "test-only files were read");
}

/// Non-test functions of both crates longer than `max` lines (signature to closing brace).
fn long_functions(max: usize) -> Vec<String> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut paths = vec![];
    for c in ["zoology/src", "zoology-cli/src"] {
        files(&crates.join(c), &mut paths);
    }
    let mut long = vec![];
    for p in paths {
        let name = p.file_name().unwrap().to_string_lossy();
        if name.contains("test") || name == "testing.rs" || name == "suite.rs" {
            continue; // test-only files
        }
        let (code, _) = cut_test_modules(&strip_comments_and_strings(&std::fs::read_to_string(&p).unwrap()));
        for (at, _) in code.match_indices("fn ") {
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let fname: String = code[at + 3..].chars().take_while(|&c| is_ident(c)).collect();
            let Some(open) = code[at..].find(['{', ';']).map(|k| at + k) else { continue };
            if code.as_bytes()[open] == b';' {
                continue; // a declaration without a body
            }
            let mut depth = 0usize;
            let mut close = open;
            for (k, ch) in code[open..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let lines = code[at..=close].lines().count();
            if lines > max {
                long.push(format!("{} fn {fname}: {lines} lines", p.strip_prefix(&crates).unwrap_or(&p).display()));
            }
        }
    }
    long
}

#[test]
fn no_function_is_longer_than_100_lines() {
    let long = long_functions(100);
    assert!(long.is_empty(), "split these into named phases:\n  {}", long.join("\n  "));
    // the counter sees long functions: the longest function of the crate is over 40 lines
    assert!(!long_functions(40).is_empty(), "the function-length reader finds nothing");
}
