//! No two files of a crate import each other (issue 17): each workspace
//! crate's files form a layered graph, so a reader can take any file with
//! only the files below it in mind.
//!
//! A file imports another when it names an item defined there: a
//! `crate::…` path, a `super::…` path, or a path through one of its own
//! child modules (`mod child;` then `child::…`), in a `use` or inline.
//! Paths through a module's re-exports (`pub use x::Item` in `lib.rs` or a
//! `mod.rs`) lead to the file that defines the item. `mod x;` declarations
//! and comments (doc links included) are not imports.
//!
//! The test lists every pair of files that import each other. Pairs known
//! at the time this test was written and still to be untangled are in
//! [`KNOWN`]; the test fails on any other pair, and on a known pair that
//! is gone (remove it from the list then, so it cannot come back).
//! `FILE_CYCLES_EDGES=1 cargo test --test file_cycles -- --nocapture`
//! prints every import edge it found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each workspace crate's source folder, relative to the workspace root.
const CRATES: &[&str] = &[
    "src",
    "cli/src",
    "capi/src",
    "bridge/src",
    "shmpipe-tokio/src",
    "python/src",
];

/// Cycles still to be removed, as `(crate folder, file, file)` with the two
/// files in sorted order.
const KNOWN: &[(&str, &str, &str)] = &[];

/// A module path from the crate root (`[]` is `lib.rs`/`main.rs`).
type ModPath = Vec<String>;

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = BTreeSet::new();
    for dir in CRATES {
        let dir_path = root.join(dir);
        if !dir_path.is_dir() {
            continue;
        }
        for (a, b) in cycles(&dir_path) {
            found.insert((dir.to_string(), a, b));
        }
    }
    let known: BTreeSet<(String, String, String)> = KNOWN
        .iter()
        .map(|(d, a, b)| (d.to_string(), a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    let show = |v: &[&(String, String, String)]| {
        v.iter()
            .map(|(d, a, b)| format!("  {d}: {a} <-> {b}\n"))
            .collect::<String>()
    };
    assert!(
        new.is_empty() && gone.is_empty(),
        "files that import each other (move the shared item to the file that owns it, or to a third file):\n{}\
         known pairs that are gone (remove them from KNOWN in tests/file_cycles.rs):\n{}",
        show(&new),
        show(&gone)
    );
}

/// The pairs of files under `dir` (a crate's source folder) that import each
/// other, as paths relative to `dir`, each pair sorted.
fn cycles(dir: &Path) -> Vec<(String, String)> {
    let mut files = BTreeMap::new(); // module path -> (relative file, code)
    collect(dir, dir, &mut files);
    let modules: BTreeSet<ModPath> = files.keys().cloned().collect();
    let reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>> = files
        .iter()
        .map(|(m, (_, code))| (m.clone(), reexports_of(m, code, &modules)))
        .collect();
    let mut edges: BTreeSet<(ModPath, ModPath)> = BTreeSet::new();
    for (m, (_, code)) in &files {
        for path in paths_in(m, code) {
            let target = defining_file(&path, &modules, &reexports);
            if target != *m {
                edges.insert((m.clone(), target));
            }
        }
    }
    if std::env::var_os("FILE_CYCLES_EDGES").is_some() {
        for (a, b) in &edges {
            eprintln!("{}: {} -> {}", dir.display(), files[a].0, files[b].0);
        }
    }
    let mut out = Vec::new();
    for (a, b) in &edges {
        if a < b && edges.contains(&(b.clone(), a.clone())) {
            out.push((files[a].0.clone(), files[b].0.clone()));
        }
    }
    out
}

/// Every `.rs` file under `dir`, by module path, with its code (comments
/// removed).
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<ModPath, (String, String)>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under root");
            let rel_s = rel.to_string_lossy().into_owned();
            let mut segs: Vec<String> = rel_s
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if segs.last().is_some_and(|s| s == "mod") || rel_s == "lib.rs" || rel_s == "main.rs" {
                segs.pop();
            }
            let text = fs::read_to_string(&p).expect("a readable source file");
            out.insert(segs, (rel_s, strip_comments(&text)));
        }
    }
}

/// `code` without `//` and `/* */` comments and without the contents of
/// string literals (so that neither can look like a path).
fn strip_comments(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < b.len() {
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
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else {
            let c = code[i..].chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The absolute module paths `code` (the file of module `m`) names, each
/// with its last segment (an item, or a module).
fn paths_in(m: &ModPath, code: &str) -> Vec<ModPath> {
    let children: BTreeSet<String> = child_decls(code);
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize; // brace depth
    let mut inline_mods: Vec<usize> = Vec::new(); // depths of open inline `mod x {`
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                i += 1;
                continue;
            }
            b'}' => {
                if inline_mods.last() == Some(&depth) {
                    inline_mods.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {}
        }
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = &code[start..i];
        if word == "mod" {
            // `mod name {` opens an inline module: `super` inside it is this file.
            let rest = code[i..].trim_start();
            let name_len = rest.bytes().take_while(|&c| is_ident(c)).count();
            if rest[name_len..].trim_start().starts_with('{') {
                inline_mods.push(depth + 1);
            }
            continue;
        }
        if !code[i..].starts_with("::") {
            continue;
        }
        let base: Option<ModPath> = match word {
            "crate" => Some(Vec::new()),
            "super" => {
                let up = if inline_mods.is_empty() { 1 } else { 0 };
                Some(m[..m.len().saturating_sub(up)].to_vec())
            }
            "self" => Some(m.clone()),
            w if children.contains(w) => {
                let mut p = m.clone();
                p.push(w.to_owned());
                Some(p)
            }
            _ => None,
        };
        if let Some(base) = base {
            let (paths, end) = parse_tree(code, i + 2, &base);
            out.extend(paths);
            i = end;
        }
    }
    out
}

/// The names of the child modules `code` declares as files (`mod x;`).
fn child_decls(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("mod ") {
        if at > 0 && is_ident(code.as_bytes()[at - 1]) {
            continue;
        }
        let rest = &code[at + 4..];
        let n = rest.bytes().take_while(|&c| is_ident(c)).count();
        if n > 0 && rest[n..].trim_start().starts_with(';') {
            out.insert(rest[..n].to_owned());
        }
    }
    out
}

/// Parse a path tree (`a::b`, `a::{b, c::d}`, `*`) starting at `at`, below
/// `base`; the full paths and where the tree ends.
fn parse_tree(code: &str, mut at: usize, base: &ModPath) -> (Vec<ModPath>, usize) {
    let b = code.as_bytes();
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut path = base.clone();
    loop {
        at = skip_ws(at);
        if at < b.len() && b[at] == b'{' {
            let mut out = Vec::new();
            at += 1;
            loop {
                at = skip_ws(at);
                if at >= b.len() || b[at] == b'}' {
                    return (out, at + 1);
                }
                if b[at] == b',' {
                    at += 1;
                    continue;
                }
                let (sub, end) = parse_tree(code, at, &path);
                out.extend(sub);
                at = end;
                if at >= b.len() {
                    return (out, at);
                }
                // Skip an `as alias`.
                let j = skip_ws(at);
                if code[j..].starts_with("as ") {
                    at = j + 3;
                    at = skip_ws(at);
                    while at < b.len() && is_ident(b[at]) {
                        at += 1;
                    }
                }
            }
        }
        let start = at;
        while at < b.len() && is_ident(b[at]) {
            at += 1;
        }
        let seg = &code[start..at];
        match seg {
            "" => {
                return (
                    vec![path],
                    at.max(start + usize::from(b.get(at) == Some(&b'*'))),
                )
            }
            "self" => {}
            "super" => {
                path.pop();
            }
            s => path.push(s.to_owned()),
        }
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![path], at);
        }
    }
}

/// The re-exports `pub use …` of module `m`: visible name -> full path.
fn reexports_of(m: &ModPath, code: &str, modules: &BTreeSet<ModPath>) -> BTreeMap<String, ModPath> {
    let children = child_decls(code);
    let mut out = BTreeMap::new();
    for (at, _) in code.match_indices("pub") {
        let rest = &code[at..];
        let Some(after_vis) = rest
            .strip_prefix("pub use ")
            .or_else(|| rest.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let start = code.len() - after_vis.len();
        let first = after_vis.bytes().take_while(|&c| is_ident(c)).count();
        let word = &after_vis[..first];
        let base = match word {
            "crate" => Vec::new(),
            "self" => m.clone(),
            "super" => m[..m.len().saturating_sub(1)].to_vec(),
            w if children.contains(w) => m.clone(),
            _ => continue,
        };
        let from = if matches!(word, "crate" | "self" | "super") {
            start + first + 2
        } else {
            start
        };
        for p in parse_tree(code, from, &base).0 {
            if let Some(name) = p.last() {
                if !modules.contains(&p) {
                    out.insert(name.clone(), p);
                }
            }
        }
    }
    out
}

/// The module whose file defines the item `path` names: the longest prefix
/// that is a file, following re-exports from there.
fn defining_file(
    path: &ModPath,
    modules: &BTreeSet<ModPath>,
    reexports: &BTreeMap<ModPath, BTreeMap<String, ModPath>>,
) -> ModPath {
    let mut path = path.clone();
    for _ in 0..8 {
        let n = (0..=path.len())
            .rev()
            .find(|&n| modules.contains(&path[..n]))
            .unwrap_or(0);
        let file = path[..n].to_vec();
        let Some(next) = path.get(n) else {
            return file;
        };
        match reexports.get(&file).and_then(|r| r.get(next)) {
            Some(target) if target != &path[..=n] => {
                let mut p = target.clone();
                p.extend_from_slice(&path[n + 1..]);
                path = p;
            }
            _ => return file,
        }
    }
    path
}
