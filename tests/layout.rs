//! The shape of the source tree, checked with nothing but the sources themselves:
//!
//! - no two modules of `src/` or `cli/src/` import each other, directly or around a ring
//!   (`cargo test --test layout rings`);
//! - no source file is over 800 lines, not counting its `#[cfg(test)]` items
//!   (`cargo test --test layout lines`).
//!
//! A module is a file (an inline `mod x { .. }` belongs to its file). An import is any path in
//! code that names another module of the same crate: `use crate::a::B`, `super::b::c()`,
//! `self::child::D`, a child module by its bare name, or a name brought in by an earlier `use`.
//! A name re-exported by a module (`pub use b::B` in `a/mod.rs`) counts as an import of the
//! module that defines it (`b`), so a parent re-exporting its children and the children
//! naming each other through the parent is seen for what it is. `mod x;` declarations are not
//! imports. Items under `#[cfg(test)]` are left out: a test module is a module of its own that
//! nothing imports, so it can close no ring. Comments and string literals are left out too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be, not counting its `#[cfg(test)]` items.
const MAX_LINES: usize = 800;

/// A module's path inside its crate: `["db", "store"]` for `src/db/store.rs`.
type ModPath = Vec<String>;

/// One source file of a crate.
struct SourceFile {
    path: PathBuf,
    module: ModPath,
    /// The text with comments, strings and `#[cfg(test)]` items blanked (newlines kept).
    code: String,
    /// Lines of the file outside its `#[cfg(test)]` items.
    counted_lines: usize,
}

/// The crate roots of the workspace: the library, and the command's library and binary.
fn crate_roots() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        dir.join("src/lib.rs"),
        dir.join("cli/src/lib.rs"),
        dir.join("cli/src/main.rs"),
    ]
}

/// Blanks comments, string and char literals with spaces (newlines kept, so offsets and line
/// numbers stay those of the file).
fn blank_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = src[start..]
                    .find(&close)
                    .map_or(b.len(), |n| start + n + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, (j + 1).min(b.len()));
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}'), else a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    src[i + 2..].find('\'').map(|n| i + 2 + n + 1)
                } else {
                    let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// The end (exclusive) of the item starting at `from`: past its first `;` at depth 0, or past
/// the brace that closes its first `{`.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < code.len() {
        match code[i] {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 && code[i] == b'}' {
                    return i + 1;
                }
            }
            b';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// Blanks every `#[cfg(test)]` item; returns the text and how many lines those items covered.
fn blank_test_items(code: &str) -> (String, usize) {
    let mut out = code.as_bytes().to_vec();
    let mut test_lines = 0;
    let mut search = 0;
    while let Some(at) = code[search..].find("#[cfg(test)]").map(|n| search + n) {
        let end = item_end(code.as_bytes(), at + "#[cfg(test)]".len());
        let first_line = code[..at].matches('\n').count();
        let last_line = code[..end].matches('\n').count();
        test_lines += last_line - first_line + 1;
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        search = end;
    }
    (
        String::from_utf8(out).expect("only ASCII bytes were replaced"),
        test_lines,
    )
}

/// The `mod name;` declarations of a file (not inline modules, not `#[cfg(test)]` ones).
fn declared_modules(code: &str) -> Vec<String> {
    let tokens = tokens(code);
    let mut names = Vec::new();
    for w in tokens.windows(3) {
        if w[0] == "mod" && w[2] == ";" && is_ident(&w[1]) {
            names.push(w[1].clone());
        }
    }
    names
}

/// Reads every file of the crate rooted at `root`, following its `mod` declarations.
fn read_crate(root: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), ModPath::new())];
    while let Some((path, module)) = pending.pop() {
        let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (code, test_lines) = blank_test_items(&blank_comments_and_strings(&src));
        let dir = match path.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => path.parent().unwrap().to_path_buf(),
            _ => path.with_extension(""),
        };
        for name in declared_modules(&code) {
            let mut child = module.clone();
            child.push(name.clone());
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let file = if flat.exists() { flat } else { nested };
            pending.push((file, child));
        }
        files.push(SourceFile {
            counted_lines: src.lines().count() - test_lines.min(src.lines().count()),
            path,
            module,
            code,
        });
    }
    files
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::` and single punctuation characters, in order.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            out.push(code[start..i].to_string());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".into());
            i += 2;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

/// One `use` of a file: the path it names (relative to where it stands) and the name it binds.
struct UseItem {
    path: Vec<String>,
    binds: Option<String>,
}

/// Flattens the use tree starting at `tokens[*i]` (just after `use`) up to its `;`.
fn parse_use_tree(tokens: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<UseItem>) {
    let mut path = prefix;
    while *i < tokens.len() {
        let t = tokens[*i].as_str();
        match t {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                loop {
                    parse_use_tree(tokens, i, path.clone(), out);
                    match tokens.get(*i).map(String::as_str) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            break;
                        }
                        _ => break,
                    }
                    if tokens.get(*i).map(String::as_str) == Some("}") {
                        *i += 1;
                        break;
                    }
                }
                return;
            }
            "*" => {
                *i += 1;
                out.push(UseItem { path, binds: None });
                return;
            }
            "as" => {
                *i += 1;
                let alias = tokens.get(*i).cloned();
                *i += 1;
                out.push(UseItem {
                    path,
                    binds: alias.filter(|a| a != "_"),
                });
                return;
            }
            "," | "}" | ";" => {
                let binds = match path.last().map(String::as_str) {
                    Some("self") => {
                        path.pop();
                        path.last().cloned()
                    }
                    last => last.map(str::to_string),
                };
                if !path.is_empty() {
                    out.push(UseItem { path, binds });
                }
                return;
            }
            _ if is_ident(t) => {
                path.push(t.to_string());
                *i += 1;
            }
            _ => {
                *i += 1;
            }
        }
    }
}

/// The module graph of one crate.
struct Crate {
    modules: BTreeSet<ModPath>,
    /// The `use` items of each module, by the name they bind.
    uses: HashMap<ModPath, HashMap<String, Vec<String>>>,
}

impl Crate {
    /// Resolves `path`, written in module `at`, to the module that defines what it names.
    fn resolve(&self, at: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut module, rest) = match path[0].as_str() {
            "crate" => (ModPath::new(), &path[1..]),
            "self" => (at.clone(), &path[1..]),
            "super" => {
                let mut m = at.clone();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    m.pop();
                    rest = &rest[1..];
                }
                (m, rest)
            }
            first => {
                let mut child = at.clone();
                child.push(first.to_string());
                if self.modules.contains(&child) {
                    (child, &path[1..])
                } else if let Some(target) = self.uses.get(at).and_then(|u| u.get(first)) {
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    return self.resolve(at, &full, depth + 1);
                } else {
                    return None;
                }
            }
        };
        for (n, seg) in rest.iter().enumerate() {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.modules.contains(&child) {
                module = child;
                continue;
            }
            // A name `use`d by that module (visible to its descendants and, if public, to all).
            if let Some(target) = self.uses.get(&module).and_then(|u| u.get(seg.as_str())) {
                let mut full = target.clone();
                full.extend_from_slice(&rest[n + 1..]);
                return self.resolve(&module, &full, depth + 1).or(Some(module));
            }
            break;
        }
        Some(module)
    }
}

/// The modules each module of the crate imports (itself left out).
fn import_graph(files: &[SourceFile]) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let mut krate = Crate {
        modules,
        uses: HashMap::new(),
    };
    let mut items_of = HashMap::new();
    for f in files {
        let toks = tokens(&f.code);
        let mut items = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] == "use" && (i == 0 || toks[i - 1] != "::") {
                i += 1;
                parse_use_tree(&toks, &mut i, Vec::new(), &mut items);
            } else {
                i += 1;
            }
        }
        let binds = items
            .iter()
            .filter_map(|u| Some((u.binds.clone()?, u.path.clone())))
            .collect();
        krate.uses.insert(f.module.clone(), binds);
        items_of.insert(f.module.clone(), (items, toks));
    }
    let mut graph = BTreeMap::new();
    for f in files {
        let (items, toks) = &items_of[&f.module];
        let mut targets = BTreeSet::new();
        for u in items {
            targets.extend(krate.resolve(&f.module, &u.path, 0));
        }
        // Paths in code: `a::b::c` sequences not preceded by `::`.
        let mut i = 0;
        while i < toks.len() {
            let starts = is_ident(&toks[i])
                && toks.get(i + 1).map(String::as_str) == Some("::")
                && (i == 0 || toks[i - 1] != "::");
            if !starts {
                i += 1;
                continue;
            }
            let mut path = vec![toks[i].clone()];
            let mut j = i + 1;
            while toks.get(j).map(String::as_str) == Some("::")
                && toks.get(j + 1).is_some_and(|t| is_ident(t))
            {
                path.push(toks[j + 1].clone());
                j += 2;
            }
            targets.extend(krate.resolve(&f.module, &path, 0));
            i = j;
        }
        targets.remove(&f.module);
        graph.insert(f.module.clone(), targets);
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn rings(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn rings_no_two_modules_import_each_other() {
    let mut report = String::new();
    for root in crate_roots() {
        let files = read_crate(&root);
        assert!(files.len() > 1 || !root.ends_with("src/lib.rs"));
        let graph = import_graph(&files);
        for ring in rings(&graph) {
            report.push_str(&format!("{}: a ring of modules:\n", root.display()));
            for m in &ring {
                let inside: Vec<String> = graph[m]
                    .iter()
                    .filter(|t| ring.contains(t))
                    .map(name)
                    .collect();
                report.push_str(&format!("  {} imports {}\n", name(m), inside.join(", ")));
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn lines_no_source_file_over_800_outside_its_tests() {
    let mut long = Vec::new();
    let mut seen = 0;
    for root in crate_roots() {
        for f in read_crate(&root) {
            seen += 1;
            if f.counted_lines > MAX_LINES {
                long.push(format!("{} ({} lines)", f.path.display(), f.counted_lines));
            }
        }
    }
    assert!(seen > 20, "only {seen} source files found");
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines outside #[cfg(test)]:\n{}",
        long.join("\n")
    );
}

/// The checker itself, on small made-up crates: it must see a ring through a re-export, and
/// not see one where there is none.
#[test]
fn rings_checker_sees_a_ring_through_a_reexport() {
    let file = |module: &[&str], code: &str| SourceFile {
        path: PathBuf::from(module.join("/")),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: blank_test_items(&blank_comments_and_strings(code)).0,
        counted_lines: 0,
    };
    let ring = [
        file(&[], "mod db; mod config;"),
        file(&["db"], "mod store; mod rollups; pub use store::Store;"),
        file(
            &["db", "store"],
            "pub struct Store; fn f() { super::rollups::g() }",
        ),
        file(&["db", "rollups"], "use super::Store; pub fn g() {}"),
        file(
            &["config"],
            "// use crate::db::Store;\nconst S: &str = \"crate::db\";",
        ),
    ];
    let found = rings(&import_graph(&ring));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 2);
    let chain = [
        file(&[], "mod a; mod b;"),
        file(&["a"], "use crate::b::{self, B}; fn f() { b::g() }"),
        file(
            &["b"],
            "pub struct B; pub fn g() {}\n#[cfg(test)]\nmod tests { use crate::a; }",
        ),
    ];
    assert!(rings(&import_graph(&chain)).is_empty());
}
