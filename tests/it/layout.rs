//! The shape of `src/` (issue 18): imports among the top-level modules point one way, and no
//! file grows past what a newcomer can read. Reads the sources; builds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file allowed anywhere in `src/`, in lines.
const FILE_MAX: usize = 600;
/// `main.rs` is argument parsing plus a call into the library.
const MAIN_MAX: usize = 150;

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to: `src/store/writer.rs` -> `store`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src/");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file's code names as `crate::x` (also `crate::{x, y::z}`), with
/// `//` comments left out: a comment that mentions a module is not a dependency.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `some_crate::x` and `a::crate::x` are not paths into this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in top_level_items(&group[..end]) {
                out.insert(ident(item));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The leading identifier of `s`.
fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The index of the `}` closing a group whose `{` came just before `s`.
fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// The comma-separated items of a use group, not descending into nested groups.
fn top_level_items(s: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
}

/// module -> the modules it names, and (module, named) -> the files that name it.
type Graph = BTreeMap<String, BTreeSet<String>>;
type Files = BTreeMap<(String, String), Vec<String>>;

fn graph() -> (Graph, Files) {
    let files = sources(&src());
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let (mut graph, mut by): (Graph, Files) = Default::default();
    for file in &files {
        let from = module_of(file);
        let text = std::fs::read_to_string(file).expect("read source");
        let edges = graph.entry(from.clone()).or_default();
        for to in named_modules(&text) {
            if to != from && modules.contains(&to) {
                edges.insert(to.clone());
                let rel = file.strip_prefix(src()).expect("under src/").display();
                by.entry((from.clone(), to))
                    .or_default()
                    .push(format!("src/{rel}"));
            }
        }
    }
    (graph, by)
}

/// One cycle through each strongly connected group of modules, as `a -> b -> a`.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) || !reach(start).contains(start) {
            continue;
        }
        // Breadth-first from `start` back to itself: the shortest cycle through it.
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        'search: while let Some(m) = queue.pop_front() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == start {
                    parent.insert(start.clone(), m.clone());
                    break 'search;
                }
                if !parent.contains_key(next) {
                    parent.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        // Walk the parents back from the module that names `start`.
        let mut back = Vec::new();
        let mut at = parent[start].clone();
        while &at != start {
            back.push(at.clone());
            at = parent[&at].clone();
        }
        back.reverse();
        let path: Vec<String> = std::iter::once(start.clone())
            .chain(back)
            .chain(std::iter::once(start.clone()))
            .collect();
        let group: BTreeSet<String> = reach(start)
            .into_iter()
            .filter(|m| reach(m).contains(start))
            .collect();
        reported.extend(group);
        out.push(path);
    }
    out
}

#[test]
fn the_module_graph_reader_sees_plain_grouped_and_foreign_paths() {
    let text = "use crate::config::Config;\nuse crate::{domain::Urgency, store::{self, Store}};\n\
                let x = crate::clock::now(); // crate::metrics in a comment\n\
                use tokio_util::crate::nothing; use foo_crate::bar;\n";
    let got: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(got, ["clock", "config", "domain", "store"]);
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"]]);
}

#[test]
fn no_import_cycle_among_the_top_level_modules() {
    let (graph, files) = graph();
    assert!(graph.contains_key("config") && graph.contains_key("domain"));
    // Each cycle, then each of its edges with the files that make it.
    let found: Vec<String> = cycles(&graph)
        .iter()
        .map(|path| {
            let edges: Vec<String> = path
                .windows(2)
                .map(|e| {
                    let named_in = &files[&(e[0].clone(), e[1].clone())];
                    format!("    {} -> {}: {}", e[0], e[1], named_in.join(", "))
                })
                .collect();
            format!("{}\n{}", path.join(" -> "), edges.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles among the top-level modules of src/ (an edge wherever a module names \
         crate::other):\n  {}\n",
        found.join("\n  ")
    );
    // The bottom of the crate names nothing else.
    assert_eq!(
        graph["domain"],
        BTreeSet::new(),
        "domain must import no module"
    );
}

/// The file-size part: every offender is listed at once, so one run shows all the work left.
#[test]
fn no_source_file_is_too_long() {
    let mut offenders = Vec::new();
    for file in sources(&src()) {
        let lines = std::fs::read_to_string(&file)
            .expect("read")
            .lines()
            .count();
        let rel = file.strip_prefix(src()).expect("under src/").display();
        let max = if rel.to_string() == "main.rs" {
            MAIN_MAX - 1
        } else {
            FILE_MAX
        };
        if lines > max {
            offenders.push(format!("src/{rel}: {lines} lines (at most {max})"));
        }
    }
    assert!(
        offenders.is_empty(),
        "files too long:\n  {}\n",
        offenders.join("\n  ")
    );
}
