//! The module-cycle check `cargo xtask ci` runs: in no crate does a top-level module use
//! another that uses it back (directly or through others). A cycle means a shared type or
//! helper lives in the wrong module; give it a home of its own.
//!
//! How the code is read:
//! - Each crate root (`src/lib.rs`, `src/main.rs`) is a crate of its own. Its files are found
//!   the way rustc finds them, by following `mod name;` declarations (`#[path]` is not
//!   supported: a declared module without its file fails the check rather than going unread).
//! - Each file belongs to its top-level module (`src/kms/signer.rs` to `kms`); the root file
//!   itself is no module and has no edges.
//! - Comments and string and character literals are dropped, so doc links and messages do not
//!   count.
//! - A path that starts at the crate root is an edge: `crate::a::b`, `use crate::{a, b::{c, d}}`,
//!   and `super::x` where the `super`s climb to the root (from `src/a.rs` one does; from
//!   `src/a/b.rs` it takes two; an inline `mod tests { .. }` is one more level). Its first
//!   segment is a top-level module, or a name the root imports (`pub use alg::Algorithm;`,
//!   `use error::{Error, Result};`, `pub use json::Limits as JsonLimits;`, also inside the
//!   root's inline modules such as `pub mod base64url { pub use crate::b64::decode; }`), which
//!   is followed to the module it comes from: `crate::Algorithm` is an edge to `alg`.
//! - Not followed: glob imports (`pub use alg::*;`, `use super::*;` at a file's top level), and
//!   paths built by macros.
//!
//! Cycles are the strongly connected components of more than one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// Fails, naming each cycle, when any crate under `crates/` (or xtask) has one.
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.push(root.join("xtask"));
    dirs.sort();
    let mut found = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (crate_root, cycle) in crate_cycles(&dir.join("src"))? {
            found.push(format!("{name} ({crate_root}): {}", cycle.join(" <-> ")));
        }
    }
    if found.is_empty() {
        println!("no module imports another that imports it back");
        Ok(())
    } else {
        bail!("module cycles:\n  {}", found.join("\n  "))
    }
}

/// The cycles of each crate root in `src` (`lib.rs`, `main.rs`), with the root's file name.
fn crate_cycles(src: &Path) -> Result<Vec<(&'static str, Vec<String>)>> {
    let mut out = Vec::new();
    for crate_root in ["lib.rs", "main.rs"] {
        let file = src.join(crate_root);
        if !file.is_file() {
            continue;
        }
        for cycle in cycles(&module_graph(&file)?) {
            out.push((crate_root, cycle));
        }
    }
    Ok(out)
}

/// One source file of a crate: where it is and the module path it holds (empty for the root).
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    /// Whether the modules it declares live in its own directory (`lib.rs`, `main.rs`,
    /// `mod.rs`) rather than in a directory named after it (`src/a.rs` declares `src/a/b.rs`).
    owns_dir: bool,
}

/// The edges between the top-level modules of the crate whose root file is `root_file`.
fn module_graph(root_file: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    // Read the whole module tree first: the root's imports resolve the other files' paths.
    let mut todo = vec![SourceFile {
        path: root_file.to_path_buf(),
        module: Vec::new(),
        owns_dir: true,
    }];
    let mut files: Vec<(SourceFile, Parsed)> = Vec::new();
    while let Some(file) = todo.pop() {
        let text = std::fs::read_to_string(&file.path)
            .with_context(|| format!("reading {}", file.path.display()))?;
        let parsed = parse(&text);
        let dir = match (file.owns_dir, file.path.parent()) {
            (true, Some(parent)) => parent.to_path_buf(),
            (false, Some(parent)) => parent.join(file.module.last().map_or("", String::as_str)),
            (_, None) => bail!("{} has no directory", file.path.display()),
        };
        for declared in &parsed.mods {
            let relative: PathBuf = declared.iter().collect();
            let flat = dir.join(&relative).with_extension("rs");
            let nested = dir.join(&relative).join("mod.rs");
            let (path, owns_dir) = if flat.is_file() {
                (flat, false)
            } else if nested.is_file() {
                (nested, true)
            } else {
                bail!(
                    "{} declares `mod {}`, and neither {} nor {} exists",
                    file.path.display(),
                    declared.join("::"),
                    flat.display(),
                    nested.display()
                );
            };
            let mut module = file.module.clone();
            module.extend(declared.iter().cloned());
            todo.push(SourceFile {
                path,
                module,
                owns_dir,
            });
        }
        files.push((file, parsed));
    }

    let mut names = Names::default();
    for (file, parsed) in &files {
        if let [top, ..] = file.module.as_slice() {
            names.modules.insert(top.clone());
        } else {
            for declared in &parsed.mods {
                if let Some(top) = declared.first() {
                    names.modules.insert(top.clone());
                }
            }
            for import in &parsed.uses {
                let Some(name) = &import.name else { continue };
                let Some(target) = absolute(&import.path.scope, &import.path.segments, true) else {
                    continue;
                };
                names
                    .imports
                    .insert((import.path.scope.clone(), name.clone()), target);
            }
        }
    }

    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, parsed) in &files {
        let Some(top) = file.module.first() else {
            continue;
        };
        let edges = graph.entry(top.clone()).or_default();
        for path in &parsed.paths {
            let mut scope = file.module.clone();
            scope.extend(path.scope.iter().cloned());
            let target = absolute(&scope, &path.segments, false)
                .and_then(|p| names.resolve(&p, 0).map(str::to_owned));
            if let Some(target) = target.filter(|t| t != top) {
                edges.insert(target);
            }
        }
    }
    Ok(graph)
}

/// What the crate root names: its top-level modules, and the names it imports (in the root or
/// in one of its inline modules) with the absolute paths they stand for.
#[derive(Default)]
struct Names {
    modules: BTreeSet<String>,
    imports: BTreeMap<(Vec<String>, String), Vec<String>>,
}

impl Names {
    /// The top-level module an absolute path leads into, following the root's imports.
    fn resolve(&self, path: &[String], hops: usize) -> Option<&str> {
        let first = path.first()?;
        if let Some(module) = self.modules.get(first) {
            return Some(module.as_str());
        }
        // `pub use a::B; pub use crate::B as C;` chains are short; a loop is a compile error.
        if hops > 8 {
            return None;
        }
        for (at, name) in path.iter().enumerate() {
            let (scope, rest) = path.split_at(at);
            if let Some(target) = self.imports.get(&(scope.to_vec(), name.clone())) {
                let mut next = target.clone();
                next.extend(rest.iter().skip(1).cloned());
                return self.resolve(&next, hops + 1);
            }
        }
        None
    }
}

/// `segments` as a path from the crate root, for code in module `scope`: `crate::x`, `self::x`
/// and `super::x` always; a plain `x::y` only when `relative` (a `use` in the root, where
/// `use alg::Algorithm;` names the root's module `alg`). `None` for paths that leave the crate
/// (`::std`, a `super` above the root) and for plain paths elsewhere, which stay in their own
/// module or name another crate.
fn absolute(scope: &[String], segments: &[String], relative: bool) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some(scope.iter().chain(rest).cloned().collect()),
        "super" => {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            let base = scope.len().checked_sub(ups)?;
            let above = scope.get(..base)?;
            Some(
                above
                    .iter()
                    .chain(segments.iter().skip(ups))
                    .cloned()
                    .collect(),
            )
        }
        "::" => None,
        _ if relative => Some(scope.iter().chain(segments).cloned().collect()),
        _ => None,
    }
}

// ---- reading a file ---------------------------------------------------------------------------

/// A path as written, with the inline modules (`mod tests { .. }`) it is written in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScopedPath {
    scope: Vec<String>,
    /// The segments; a leading `::` (another crate) is kept as a segment `"::"`.
    segments: Vec<String>,
}

/// One name a `use` binds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    path: ScopedPath,
    /// The name bound (`as` renames); `None` for a glob or `as _`.
    name: Option<String>,
}

/// What the module check needs from one file.
#[derive(Debug, Default)]
struct Parsed {
    /// `mod name;` declarations, each as the inline modules around it and then its name.
    mods: Vec<Vec<String>>,
    /// Every name a `use` binds.
    uses: Vec<Import>,
    /// Every path that starts with `crate`, `self` or `super`, in a `use` or in code.
    paths: Vec<ScopedPath>,
}

fn parse(text: &str) -> Parsed {
    let tokens = tokens(text);
    let mut out = Parsed::default();
    // The inline modules around the current token, each with the brace depth inside it.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        let scope = || -> Vec<String> { inline.iter().map(|(name, _)| name.clone()).collect() };
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(kw) if kw == "mod" => {
                if let Some(Token::Ident(name)) = tokens.get(i + 1) {
                    match tokens.get(i + 2) {
                        Some(Token::Semi) => {
                            let mut declared = scope();
                            declared.push(name.clone());
                            out.mods.push(declared);
                        }
                        Some(Token::Open) => {
                            depth += 1;
                            inline.push((name.clone(), depth));
                        }
                        _ => {}
                    }
                    i += 3;
                    continue;
                }
            }
            Token::Ident(kw) if kw == "use" => {
                let mut imports = Vec::new();
                i = use_tree(&tokens, i + 1, &mut Vec::new(), &mut imports);
                for (segments, name) in imports {
                    let path = ScopedPath {
                        scope: scope(),
                        segments,
                    };
                    out.paths.push(path.clone());
                    out.uses.push(Import { path, name });
                }
                continue;
            }
            Token::Ident(first)
                if matches!(first.as_str(), "crate" | "self" | "super")
                    && i.checked_sub(1).and_then(|p| tokens.get(p)) != Some(&Token::PathSep) =>
            {
                let mut segments = vec![first.clone()];
                i += 1;
                while let (Some(Token::PathSep), Some(Token::Ident(next))) =
                    (tokens.get(i), tokens.get(i + 1))
                {
                    segments.push(next.clone());
                    i += 2;
                }
                out.paths.push(ScopedPath {
                    scope: scope(),
                    segments,
                });
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads the use tree starting at `tokens[i]` under `prefix`, pushing each bound path with
/// its name; returns the index after the tree.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let base = prefix.len();
    if prefix.is_empty() && tokens.get(i) == Some(&Token::PathSep) {
        prefix.push("::".to_owned());
        i += 1;
    }
    loop {
        match tokens.get(i) {
            Some(Token::Ident(segment)) => {
                prefix.push(segment.clone());
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                let mut path = prefix.clone();
                // `a::{self, ..}` binds `a`.
                if path.len() > 1 && path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let mut name = path.last().cloned();
                if tokens.get(i) == Some(&Token::Ident("as".to_owned())) {
                    name = match tokens.get(i + 1) {
                        Some(Token::Ident(alias)) if alias != "_" => Some(alias.clone()),
                        _ => None,
                    };
                    i += 2;
                }
                out.push((path, name));
            }
            Some(Token::Star) => {
                i += 1;
                out.push((prefix.clone(), None));
            }
            Some(Token::Open) => {
                i += 1;
                while tokens.get(i).is_some_and(|t| *t != Token::Close) {
                    let before = i;
                    i = use_tree(tokens, i, prefix, out);
                    if tokens.get(i) == Some(&Token::Comma) {
                        i += 1;
                    } else if i == before {
                        // Not a use tree after all: skip the token rather than loop on it.
                        i += 1;
                    }
                }
                i += 1;
            }
            _ => {}
        }
        break;
    }
    prefix.truncate(base);
    i
}

/// A token of Rust source, as far as paths, modules and braces need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier or keyword (raw identifiers without their `r#`).
    Ident(String),
    /// `::`
    PathSep,
    /// `{`
    Open,
    /// `}`
    Close,
    /// `,`
    Comma,
    /// `*`
    Star,
    /// `;`
    Semi,
    /// Anything else: other punctuation, literals, lifetimes.
    Other,
}

/// The tokens of `text`, without comments; each string, character or number literal is one
/// [`Token::Other`].
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let next = at(i + 1);
        match c {
            _ if c.is_whitespace() => i += 1,
            '/' if next == Some('/') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut open = 0usize;
                while let Some(c) = at(i) {
                    match (c, at(i + 1)) {
                        ('/', Some('*')) => {
                            open += 1;
                            i += 2;
                        }
                        ('*', Some('/')) => {
                            open = open.saturating_sub(1);
                            i += 2;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            '"' => {
                i = skip_quoted(&chars, i + 1, '"');
                out.push(Token::Other);
            }
            '\'' => {
                // A character literal ('a', '\n', '\u{1F600}') or a lifetime or label ('a).
                if next == Some('\\') {
                    i = skip_quoted(&chars, i + 1, '\'');
                } else if at(i + 2) == Some('\'') {
                    i += 3;
                } else {
                    i += 1;
                    while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        i += 1;
                    }
                }
                out.push(Token::Other);
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                match (word.as_str(), at(i), at(i + 1)) {
                    // raw strings: r"..", r#".."#, br"..", cr#".."#
                    ("r" | "br" | "cr", Some('"' | '#'), _)
                        if chars
                            .get(i..)
                            .unwrap_or_default()
                            .iter()
                            .find(|c| **c != '#')
                            == Some(&'"') =>
                    {
                        let hashes = chars
                            .get(i..)
                            .unwrap_or_default()
                            .iter()
                            .take_while(|c| **c == '#')
                            .count();
                        i += hashes + 1;
                        while let Some(c) = at(i) {
                            i += 1;
                            if c == '"' && (i..i + hashes).all(|k| at(k) == Some('#')) {
                                i += hashes;
                                break;
                            }
                        }
                        out.push(Token::Other);
                    }
                    // raw identifiers: r#type
                    ("r", Some('#'), Some(c)) if c.is_alphabetic() || c == '_' => {
                        i += 1;
                    }
                    // byte and C strings, byte characters: b"..", c"..", b'a'
                    ("b" | "c", Some('"'), _) => {
                        i = skip_quoted(&chars, i + 1, '"');
                        out.push(Token::Other);
                    }
                    ("b", Some('\''), _) => {
                        i = skip_quoted(&chars, i + 1, '\'');
                        out.push(Token::Other);
                    }
                    _ => out.push(Token::Ident(word)),
                }
            }
            _ if c.is_ascii_digit() => {
                while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    i += 1;
                }
                out.push(Token::Other);
            }
            ':' if next == Some(':') => {
                i += 2;
                out.push(Token::PathSep);
            }
            _ => {
                i += 1;
                out.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ',' => Token::Comma,
                    '*' => Token::Star,
                    ';' => Token::Semi,
                    _ => Token::Other,
                });
            }
        }
    }
    out
}

/// The index after the `quote` that closes a literal whose contents start at `i`.
fn skip_quoted(chars: &[char], mut i: usize, quote: char) -> usize {
    while let Some(&c) = chars.get(i) {
        i += 1;
        if c == '\\' {
            i += 1;
        } else if c == quote {
            break;
        }
    }
    i
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

    /// A workspace in a temporary directory with one crate, `crates/demo`; `files` are (path
    /// under `src/`, contents).
    fn synthetic_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("crates/demo/src").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn src_of(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("crates/demo/src")
    }

    fn edges_of(dir: &tempfile::TempDir) -> BTreeMap<String, BTreeSet<String>> {
        module_graph(&src_of(dir).join("lib.rs")).unwrap()
    }

    fn strings(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
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

    /// token-jwt's shape before its fix: `alg` imports `error`, and `error` names `Algorithm`
    /// only through the root's re-export.
    const ALG_ERROR: &[(&str, &str)] = &[
        (
            "lib.rs",
            "//! A crate.\nmod alg;\nmod error;\n\npub use alg::Algorithm;\npub use error::{Error, Result};\n",
        ),
        (
            "alg.rs",
            "use crate::error::{Error, Result};\n\npub enum Algorithm { ES256 }\n\nimpl Algorithm {\n    pub fn parse(name: &str) -> Result<Self> {\n        if name == \"ES256\" { Ok(Algorithm::ES256) } else { Err(Error::Unsupported) }\n    }\n}\n",
        ),
        (
            "error.rs",
            "use crate::Algorithm;\n\npub enum Error { Unsupported, Mismatch(Algorithm) }\n\npub type Result<T, E = Error> = std::result::Result<T, E>;\n",
        ),
    ];

    #[test]
    fn a_cycle_through_a_name_the_root_re_exports_is_found() {
        let dir = synthetic_crate(ALG_ERROR);
        let cycles = crate_cycles(&src_of(&dir)).unwrap();
        assert_eq!(
            cycles,
            [("lib.rs", vec!["alg".to_owned(), "error".to_owned()])]
        );
        let message = check(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("demo (lib.rs): alg <-> error"),
            "{message}"
        );
    }

    #[test]
    fn super_paths_that_climb_to_the_root_are_resolved_too() {
        let mut files = ALG_ERROR.to_vec();
        if let Some(error) = files.iter_mut().find(|(path, _)| *path == "error.rs") {
            error.1 = "pub enum Error { Mismatch(super::Algorithm) }\n";
        }
        let dir = synthetic_crate(&files);
        assert_eq!(edges_of(&dir)["error"], strings(&["alg"]));

        // One level deeper, `super` stays inside the module; `super::super` reaches the root.
        let dir = synthetic_crate(&[
            ("lib.rs", "mod alg;\nmod error;\npub use alg::Algorithm;\n"),
            ("alg.rs", "pub enum Algorithm { ES256 }\n"),
            ("error/mod.rs", "mod kind;\nstruct Local;\n"),
            (
                "error/kind.rs",
                "use super::Local;\nuse super::super::Algorithm;\n",
            ),
        ]);
        assert_eq!(edges_of(&dir)["error"], strings(&["alg"]));
    }

    #[test]
    fn the_fixed_shape_has_no_cycle() {
        let mut files = ALG_ERROR.to_vec();
        if let Some(alg) = files.iter_mut().find(|(path, _)| *path == "alg.rs") {
            alg.1 = "pub enum Algorithm { ES256 }\n";
        }
        let dir = synthetic_crate(&files);
        assert!(crate_cycles(&src_of(&dir)).unwrap().is_empty());
        assert_eq!(edges_of(&dir)["error"], strings(&["alg"]));
        assert_eq!(edges_of(&dir)["alg"], strings(&[]));
    }

    #[test]
    fn renames_inline_modules_of_the_root_and_nested_groups_are_followed() {
        let dir = synthetic_crate(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nmod c;\nmod d;\npub use b::Limits as JsonLimits;\npub mod helpers {\n    pub use crate::c::{decode, encode};\n}\n",
            ),
            (
                "a.rs",
                "use crate::{JsonLimits, d::{self, x::{Y, Z}}};\nfn f() { crate::helpers::decode(); }\n",
            ),
            ("b.rs", "pub struct Limits;\n"),
            ("c.rs", "pub fn decode() {}\npub fn encode() {}\n"),
            ("d.rs", "pub mod x { pub struct Y; pub struct Z; }\n"),
        ]);
        assert_eq!(edges_of(&dir)["a"], strings(&["b", "c", "d"]));
    }

    #[test]
    fn comments_and_literals_are_not_code() {
        let text = r##"//! see [`x`](crate::docs)
/* crate::block /* nested crate::inner */ still crate::comment */
use crate::{config::Config, error, self};
let s = "crate::string \" crate::escaped";
let r = r#"crate::raw " crate::still_raw"#;
let c = '"'; let l: &'static str = "";
let n = crate::clock::now();
"##;
        let parsed = parse(text);
        let firsts: BTreeSet<&str> = parsed
            .paths
            .iter()
            .filter_map(|p| p.segments.get(1).map(String::as_str))
            .collect();
        assert_eq!(firsts, BTreeSet::from(["clock", "config", "error"]));
    }

    #[test]
    fn a_declared_module_without_its_file_fails_the_check() {
        let dir = synthetic_crate(&[("lib.rs", "mod missing;\n")]);
        let error = module_graph(&src_of(&dir).join("lib.rs")).unwrap_err();
        assert!(error.to_string().contains("mod missing"), "{error}");
    }

    #[test]
    fn this_workspace_has_no_module_cycles() {
        check(&crate::repo_root()).unwrap();
    }
}
