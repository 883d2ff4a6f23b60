//! The layering of src/ stays a layering: reads every `crate::` path in src/**/*.rs (a folder, or a
//! top-level file, is one module), builds the graph of which module uses which, and fails on any
//! import circle, naming the modules in it and one file:line for each arrow of it.
//!
//! `cargo test --release --test layering -- --nocapture` also prints the modules layer by layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An arrow of the graph: `from` uses `to`, first seen at `at` (file:line).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The source text with comments, string and char literals blanked out (newlines kept, so line
/// numbers stay right): a `crate::x` in a doc comment or a message is not an import.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)).copied())
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                for &ch in &b[i..(j + 1).min(b.len())] {
                    out.push(blank(ch));
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The first path segment of each item of a `{...}` group starting at `text[0] == '{'`.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    // Inside the group's own braces: reading the first segment of an item, or past it.
    let mut reading = false;
    let mut current = String::new();
    for c in text.chars() {
        let ident = c.is_alphanumeric() || c == '_';
        if depth == 1 && reading && !ident && !current.is_empty() {
            heads.push(std::mem::take(&mut current));
            reading = false;
        }
        match c {
            '{' => {
                depth += 1;
                reading = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => reading = true,
            c if depth == 1 && reading && ident => current.push(c),
            _ => {}
        }
    }
    heads.retain(|h| h != "self");
    heads
}

/// Every module a piece of source names through `crate::`, with the line it does so on.
fn crate_paths(text: &str) -> Vec<(String, usize)> {
    let code = code_only(text);
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(pos) = code[start..].find("crate::") {
        let at = start + pos;
        start = at + "crate::".len();
        // `$crate::` or `foo_crate::` are not this crate.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c == '$' || c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[start..].trim_start();
        if rest.starts_with('{') {
            for head in group_heads(rest) {
                found.push((head, line));
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((name, line));
            }
        }
    }
    found
}

/// `use crate::a as b;` at the crate root: `crate::b::` means module `a`.
fn root_aliases(lib_rs: &str) -> BTreeMap<String, String> {
    let code = code_only(lib_rs);
    let mut aliases = BTreeMap::new();
    for stmt in code.split(';') {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        if let Some(u) = words.iter().position(|w| *w == "use") {
            if let [path, "as", alias] = words[u + 1..] {
                if let Some(target) = path.strip_prefix("crate::") {
                    if !target.contains("::") {
                        aliases.insert(alias.to_string(), target.to_string());
                    }
                }
            }
        }
    }
    aliases
}

/// The module a file under src/ belongs to: `src/x.rs` and everything in `src/x/` are `x`;
/// lib.rs and main.rs are the crate root (None).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module graph of a source tree.
fn graph_of(src: &Path) -> Graph {
    let aliases = root_aliases(&std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default());
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = module_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let node = graph.entry(from.clone()).or_default();
        for (to, line) in crate_paths(&text) {
            let to = aliases.get(&to).cloned().unwrap_or(to);
            if to != from {
                let at = format!(
                    "{}:{line}",
                    file.strip_prefix(src.parent().unwrap()).unwrap().display()
                );
                node.entry(to).or_insert(at);
            }
        }
    }
    graph
}

/// The import circles of a graph: its strongly connected components of more than one module
/// (Tarjan), each as one closed walk through all its modules where the graph has one, else its
/// members.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(v.keys().map(String::as_str)))
        .collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// One shortest cycle through `start` inside `members`, as the arrows of it.
fn cycle_through(graph: &Graph, members: &[String], start: &str) -> Vec<(String, String)> {
    let inside: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = BTreeSet::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if w == start {
                let mut path = vec![(v.to_string(), start.to_string())];
                let mut at = v;
                while at != start {
                    let p = prev[at];
                    path.push((p.to_string(), at.to_string()));
                    at = p;
                }
                path.reverse();
                return path;
            }
            if inside.contains(w) && seen.insert(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    Vec::new()
}

fn describe_circles(graph: &Graph, found: &[Vec<String>]) -> String {
    let mut out = String::new();
    for members in found {
        out.push_str(&format!(
            "import circle of {} modules: {}\n",
            members.len(),
            members.join(", ")
        ));
        let walk = cycle_through(graph, members, &members[0]);
        let mut names: Vec<&str> = walk.iter().map(|(from, _)| from.as_str()).collect();
        names.push(&members[0]);
        out.push_str(&format!(
            "  for one: {}\n  every arrow inside it:\n",
            names.join(" -> ")
        ));
        for from in members {
            for (to, at) in &graph[from] {
                if members.contains(to) {
                    out.push_str(&format!("  {from} -> {to}   ({at})\n"));
                }
            }
        }
    }
    out
}

/// Layers, lowest first: each module sits one above the highest module it uses.
fn layers(graph: &Graph) -> Vec<Vec<String>> {
    fn depth(
        graph: &Graph,
        v: &str,
        memo: &mut BTreeMap<String, usize>,
        path: &mut Vec<String>,
    ) -> usize {
        if let Some(&d) = memo.get(v) {
            return d;
        }
        if path.iter().any(|p| p == v) {
            return 0;
        }
        path.push(v.to_string());
        let d = graph
            .get(v)
            .into_iter()
            .flat_map(|e| e.keys())
            .map(|w| depth(graph, w, memo, path) + 1)
            .max()
            .unwrap_or(0);
        path.pop();
        memo.insert(v.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    let mut by_depth: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for v in graph.keys() {
        let d = depth(graph, v, &mut memo, &mut Vec::new());
        by_depth.entry(d).or_default().push(v.clone());
    }
    by_depth.into_values().collect()
}

#[test]
fn src_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    assert!(
        graph.len() > 5,
        "found only {} modules in {}",
        graph.len(),
        src.display()
    );
    for (i, layer) in layers(&graph).iter().enumerate() {
        let uses = |m: &String| graph[m].keys().cloned().collect::<Vec<_>>().join(", ");
        for m in layer {
            println!("layer {i}: {m:<10} uses {}", uses(m));
        }
    }
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "src/ has import circles (a folder or top-level file is one module; a module may use only \
         modules below it):\n{}",
        describe_circles(&graph, &found)
    );
}

#[test]
fn a_synthetic_circle_is_found_and_listed() {
    let edge = |pairs: &[(&str, &str)]| -> Graph {
        let mut g = Graph::new();
        for (a, b) in pairs {
            g.entry(a.to_string())
                .or_default()
                .insert(b.to_string(), format!("src/{a}.rs:1"));
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let acyclic = edge(&[("cli", "run"), ("run", "config"), ("report", "config")]);
    assert!(circles(&acyclic).is_empty());
    assert_eq!(
        layers(&acyclic),
        vec![
            vec!["config".to_string()],
            vec!["report".into(), "run".into()],
            vec!["cli".into()]
        ]
    );

    let cyclic = edge(&[
        ("cli", "run"),
        ("run", "measure"),
        ("measure", "analysis"),
        ("analysis", "measure"),
        ("report", "slurm"),
        ("slurm", "report"),
        ("slurm", "config"),
    ]);
    let found = circles(&cyclic);
    assert_eq!(
        found,
        vec![
            vec!["analysis".to_string(), "measure".into()],
            vec!["report".to_string(), "slurm".into()],
        ]
    );
    let text = describe_circles(&cyclic, &found);
    assert!(
        text.contains("analysis -> measure   (src/analysis.rs:1)"),
        "{text}"
    );
    assert!(
        text.contains("measure -> analysis   (src/measure.rs:1)"),
        "{text}"
    );
    assert!(
        text.contains("import circle of 2 modules: report, slurm"),
        "{text}"
    );
}

#[test]
fn crate_paths_are_read_from_code_not_from_comments_or_strings() {
    let text = r##"
//! Uses crate::nothing in a doc comment.
use crate::config::{self, Precision};
use crate::{analysis::{self, percentile}, results, stats};
use super::sibling;
/* crate::blocked /* nested crate::deeper */ */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::in_a_string";
    let _ = r#"crate::in_a_raw_string"#;
    let _ = crate::measure::run(x);
    let _ = $crate::macro_path;
    let _ = other_crate::thing;
    '"'
}
fn g() { let _ = crate::interrupt::check(); }
"##;
    let found = crate_paths(text);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "analysis",
            "results",
            "stats",
            "measure",
            "interrupt"
        ]
    );
    assert_eq!(found[0].1, 3);
    assert_eq!(found.last().unwrap().1, 15);
    assert_eq!(
        root_aliases("pub mod model;\nuse crate::model as sweep;\npub use crate::a::b as c;"),
        BTreeMap::from([("sweep".to_string(), "model".to_string())])
    );
}
