//! The crate's structure, checked on its source text.
//!
//! - The library's top-level modules (the `mod` items of `lib.rs`) must not
//!   import each other in a loop: stages depend in one direction.
//! - Only `config` itself and the command layer (the binary under
//!   `appliance/src/bin/`) may refer to `crate::config`: each stage owns its
//!   settings type and `config` composes them, not the other way round.
//! - The library uses neither `anyhow` nor `clap`: those belong to the binary.
//!
//! The library is what the compiler sees: `src/lib.rs` and the files its
//! `mod` declarations reach. `#[cfg(test)]` code (unit tests) is left out,
//! as it does not shape what the library depends on; comments, doc comments
//! and string literals are skipped. References are followed wherever they
//! appear: `use` trees with groups (`use crate::{a, b::c}`), paths in code and
//! macro arguments (`crate::a::f()`), `super::` resolved against the module
//! it is written in, and names `lib.rs` re-exports (`crate::Settings`).
//!
//! A small hand-written scanner rather than `cargo-modules`: that tool builds
//! rust-analyzer's crates (several minutes on two cores for `tests/setup` on a
//! bare machine) and checks only the loop, not the two rules after it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// What the scanner needs of Rust's tokens. Literals and lifetimes carry no
/// text: nothing inside a string or a comment can look like a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// A string literal's contents (only `#[path = "..."]` reads it).
    Str(String),
    /// `::`
    PathSep,
    Punct(char),
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Splits Rust source into tokens, dropping whitespace and comments
/// (nested block comments included).
fn lex(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(skip) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br"..", cr#".."#: no escapes, ends at `"` + the same hashes.
            let hashes = skip - 2 - usize::from(chars[i] != 'r');
            let mut j = i + skip;
            let mut text = String::new();
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                if chars[j] == '\n' {
                    line += 1;
                }
                text.push(chars[j]);
                j += 1;
            }
            out.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
            i = j;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            let mut j = if c == '"' { i + 1 } else { i + 2 };
            let mut text = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if at(j) == '\n' {
                    line += 1;
                }
                text.push(at(j));
                j += 1;
            }
            out.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
            i = j + 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let q = if c == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                // an escaped char: '\n', '\'', '\u{..}'
                let mut j = q + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(q + 2) == '\'' {
                i = q + 3; // 'x'
            } else {
                // a lifetime or a label: 'a, 'static
                let mut j = q + 1;
                while is_ident_char(at(j)) {
                    j += 1;
                }
                i = j;
            }
            out.push(Token {
                tok: Tok::Other,
                line: start_line,
            });
        } else if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            // raw identifier r#type
            let mut j = i + 2;
            while is_ident_char(at(j)) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[i + 2..j].iter().collect()),
                line,
            });
            i = j;
        } else if is_ident_start(c) {
            let mut j = i;
            while is_ident_char(at(j)) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[i..j].iter().collect()),
                line,
            });
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while is_ident_char(at(j)) || (at(j) == '.' && at(j + 1).is_ascii_digit()) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Other,
                line,
            });
            i = j;
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else if c == '$' && chars[i + 1..].starts_with(&['c', 'r', 'a', 't', 'e']) {
            // `$crate` in a macro: the crate the macro is defined in, i.e. `crate`.
            out.push(Token {
                tok: Tok::Ident("crate".into()),
                line,
            });
            i += 6;
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// If a raw string literal starts at `i`, how many characters its opening
/// takes (`r"` = 2, `br##"` = 5).
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // not the end of an identifier such as `bar"`: the caller only asks at a token start
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

// ---------------------------------------------------------------------------
// One file: references, module declarations, forbidden crates
// ---------------------------------------------------------------------------

/// A path written in the source, made absolute (from the crate root) when it
/// starts with `crate`, `super` or `self`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The module the reference is written in (from the crate root).
    from: Vec<String>,
    /// The absolute path referred to; `*` for a glob import.
    path: Vec<String>,
    line: usize,
}

/// A `mod name;` declaration: a file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModDecl {
    /// The module path of the declared module (from the crate root).
    module: Vec<String>,
    /// Inline modules between the file and the declaration (`mod a { mod b; }`).
    inline: Vec<String>,
    /// The `#[path = "..."]` attribute, if any.
    path_attr: Option<String>,
    /// Declared under `#[cfg(test)]`: a unit-test file.
    test: bool,
}

/// A `use` item at the crate root: `name` (the leaf, or its `as` alias)
/// names `path` from the crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReExport {
    name: String,
    path: Vec<String>,
}

#[derive(Debug, Default)]
struct FileScan {
    references: Vec<Reference>,
    mods: Vec<ModDecl>,
    /// `mod name { ... }` and `mod name;` outside test code, by module path.
    declared: Vec<Vec<String>>,
    /// Names of forbidden crates (`anyhow`, `clap`) with the line.
    forbidden: Vec<(String, usize)>,
    /// `use` items written directly in this file's top scope.
    uses_at_top: Vec<ReExport>,
}

const FORBIDDEN_IN_LIBRARY: [&str; 2] = ["anyhow", "clap"];

/// Scans one file of module `module` (from the crate root).
fn scan(src: &str, module: &[String]) -> FileScan {
    let toks = lex(src);
    let mut scan = FileScan::default();
    // Scopes opened by `{`: Some(name) for an inline module, None otherwise.
    let mut scopes: Vec<Option<String>> = Vec::new();
    let mut pending_test = false;
    let mut pending_path: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let here = |scopes: &[Option<String>]| -> Vec<String> {
            let mut m = module.to_vec();
            m.extend(scopes.iter().flatten().cloned());
            m
        };
        match &toks[i].tok {
            Tok::Punct('#') => {
                let inner = toks.get(i + 1).map(|t| &t.tok) == Some(&Tok::Punct('!'));
                let open = if inner { i + 2 } else { i + 1 };
                if toks.get(open).map(|t| &t.tok) != Some(&Tok::Punct('[')) {
                    i += 1;
                    continue;
                }
                let close = matching(&toks, open);
                let attr = &toks[open + 1..close];
                // `#[derive(clap::Parser)]`, `#[command(...)]`: attributes name crates too.
                for t in attr {
                    if let Tok::Ident(w) = &t.tok {
                        if FORBIDDEN_IN_LIBRARY.contains(&w.as_str()) && !pending_test {
                            scan.forbidden.push((w.clone(), t.line));
                        }
                    }
                }
                if is_cfg_test(attr) {
                    if inner {
                        // `#![cfg(test)]`: the whole enclosing module is test code.
                        if scopes.is_empty() {
                            return FileScan::default();
                        }
                        i = skip_to_scope_end(&toks, close + 1) + 1;
                        scopes.pop();
                        continue;
                    }
                    pending_test = true;
                }
                if let [Token {
                    tok: Tok::Ident(p), ..
                }, Token {
                    tok: Tok::Punct('='),
                    ..
                }, Token {
                    tok: Tok::Str(s), ..
                }] = attr
                {
                    if p == "path" {
                        pending_path = Some(s.clone());
                    }
                }
                i = close + 1;
                continue;
            }
            _ if pending_test => {
                // The item (or statement) after `#[cfg(test)]`: skip it whole,
                // noting a `mod tests;` so that its file is known.
                pending_test = false;
                let mut k = i;
                if toks[k].tok == Tok::Ident("pub".into()) {
                    k += 1;
                    if toks.get(k).map(|t| &t.tok) == Some(&Tok::Punct('(')) {
                        k = matching(&toks, k) + 1;
                    }
                }
                if let [Token {
                    tok: Tok::Ident(kw),
                    ..
                }, Token {
                    tok: Tok::Ident(name),
                    ..
                }, Token {
                    tok: Tok::Punct(';'),
                    ..
                }, ..] = &toks[k.min(toks.len())..]
                {
                    if kw == "mod" {
                        let mut m = here(&scopes);
                        m.push(name.clone());
                        scan.mods.push(ModDecl {
                            module: m,
                            inline: scopes.iter().flatten().cloned().collect(),
                            path_attr: pending_path.take(),
                            test: true,
                        });
                    }
                }
                pending_path = None;
                i = skip_item(&toks, i);
                continue;
            }
            Tok::Ident(word) if word == "mod" => {
                if let Some(Tok::Ident(name)) = toks.get(i + 1).map(|t| &t.tok) {
                    let mut m = here(&scopes);
                    m.push(name.clone());
                    match toks.get(i + 2).map(|t| &t.tok) {
                        Some(Tok::Punct(';')) => {
                            scan.mods.push(ModDecl {
                                module: m.clone(),
                                inline: scopes.iter().flatten().cloned().collect(),
                                path_attr: pending_path.take(),
                                test: false,
                            });
                            scan.declared.push(m);
                            i += 3;
                            continue;
                        }
                        Some(Tok::Punct('{')) => {
                            scan.declared.push(m);
                            scopes.push(Some(name.clone()));
                            pending_path = None;
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            // `impl Trait + use<'a>` (precise capturing) is not an import.
            Tok::Ident(word)
                if word == "use" && toks.get(i + 1).map(|t| &t.tok) != Some(&Tok::Punct('<')) =>
            {
                let from = here(&scopes);
                let end = find_semicolon(&toks, i + 1);
                let mut leaves = Vec::new();
                parse_use_tree(&toks[i + 1..end], &mut Vec::new(), &mut leaves);
                for (path, alias, line) in leaves {
                    note_forbidden(&mut scan, &path, line);
                    if scopes.is_empty() {
                        let name =
                            alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
                        if let Some(abs) = absolute(&path, &from, true) {
                            scan.uses_at_top.push(ReExport { name, path: abs });
                        }
                    }
                    if let Some(abs) = absolute(&path, &from, false) {
                        scan.references.push(Reference {
                            from: from.clone(),
                            path: abs,
                            line,
                        });
                    }
                }
                pending_path = None;
                i = end + 1;
                continue;
            }
            Tok::Ident(word)
                if (word == "crate" || word == "super")
                    && toks.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep) =>
            {
                let (path, next) = read_path(&toks, i);
                if let Some(abs) = absolute(&path, &here(&scopes), false) {
                    scan.references.push(Reference {
                        from: here(&scopes),
                        path: abs,
                        line: toks[i].line,
                    });
                }
                i = next;
                continue;
            }
            Tok::Ident(word) if FORBIDDEN_IN_LIBRARY.contains(&word.as_str()) => {
                scan.forbidden.push((word.clone(), toks[i].line));
            }
            Tok::Punct('{') => {
                scopes.push(None);
                pending_path = None;
            }
            Tok::Punct('}') => {
                scopes.pop();
                pending_path = None;
            }
            Tok::Punct(';') => pending_path = None,
            _ => {}
        }
        i += 1;
    }
    scan.forbidden.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    scan.forbidden.dedup();
    scan
}

fn note_forbidden(scan: &mut FileScan, path: &[String], line: usize) {
    if let Some(first) = path.first() {
        if FORBIDDEN_IN_LIBRARY.contains(&first.as_str()) {
            scan.forbidden.push((first.clone(), line));
        }
    }
}

/// `cfg(test)` or `cfg(all(test, ...))`: code that exists only in unit tests.
fn is_cfg_test(attr: &[Token]) -> bool {
    let words: Vec<&Tok> = attr.iter().map(|t| &t.tok).collect();
    let test = Tok::Ident("test".into());
    match words.as_slice() {
        [Tok::Ident(cfg), Tok::Punct('('), t, Tok::Punct(')')] => cfg == "cfg" && **t == test,
        [Tok::Ident(cfg), Tok::Punct('('), Tok::Ident(all), Tok::Punct('('), rest @ .., Tok::Punct(')'), Tok::Punct(')')] => {
            cfg == "cfg"
                && all == "all"
                && rest
                    .split(|t| **t == Tok::Punct(','))
                    .any(|arg| arg == [&test])
        }
        _ => false,
    }
}

/// The index of the bracket closing the one at `open`.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    toks.len() - 1
}

/// From the start of an item or statement, the index just after it: after
/// its `;` at depth 0, or after its first top-level `{ ... }` block when that
/// ends it (`fn`, `impl`, `mod`, `struct S { }`).
fn skip_item(toks: &[Token], start: usize) -> usize {
    let mut k = start;
    while k < toks.len() {
        match toks[k].tok {
            Tok::Punct(';') => return k + 1,
            Tok::Punct('{') => {
                let close = matching(toks, k);
                // `use a::{b};`, `const X: T = T { .. };`: the `;` belongs to it.
                return match toks.get(close + 1).map(|t| &t.tok) {
                    Some(Tok::Punct(';')) => close + 2,
                    _ => close + 1,
                };
            }
            Tok::Punct('(' | '[') => k = matching(toks, k) + 1,
            // the end of the enclosing block: the item was the last thing in it
            Tok::Punct('}') => return k,
            _ => k += 1,
        }
    }
    k
}

/// From inside a block, the index of its closing `}`.
fn skip_to_scope_end(toks: &[Token], mut k: usize) -> usize {
    let mut depth = 0usize;
    while k < toks.len() {
        match toks[k].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth > 0 => depth -= 1,
            Tok::Punct('}') => return k,
            _ => {}
        }
        k += 1;
    }
    k
}

fn find_semicolon(toks: &[Token], mut k: usize) -> usize {
    while k < toks.len() && toks[k].tok != Tok::Punct(';') {
        k += 1;
    }
    k
}

/// Reads `a::b::c` from `start`; returns the segments and the index after.
fn read_path(toks: &[Token], start: usize) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    let mut k = start;
    while let Some(Tok::Ident(seg)) = toks.get(k).map(|t| &t.tok) {
        path.push(seg.clone());
        k += 1;
        if toks.get(k).map(|t| &t.tok) != Some(&Tok::PathSep) {
            break;
        }
        k += 1;
    }
    (path, k)
}

/// Flattens a use tree (`a::{b, c::{d as e, *}}`) into its leaf paths with
/// their alias and line.
fn parse_use_tree(
    toks: &[Token],
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>, usize)>,
) {
    let depth = prefix.len();
    let mut k = 0;
    let mut line = toks.first().map_or(0, |t| t.line);
    let mut alias = None;
    let mut leaf = true;
    while k < toks.len() {
        match &toks[k].tok {
            Tok::Ident(w) if w == "as" => {
                if let Some(Tok::Ident(a)) = toks.get(k + 1).map(|t| &t.tok) {
                    alias = Some(a.clone());
                }
                k += 2;
                continue;
            }
            Tok::Ident(seg) => {
                if prefix.len() == depth {
                    line = toks[k].line;
                }
                prefix.push(seg.clone());
            }
            Tok::Punct('*') => prefix.push("*".into()),
            Tok::Punct('{') => {
                let close = matching(toks, k);
                let inner = &toks[k + 1..close];
                for part in split_top_level(inner) {
                    parse_use_tree(part, prefix, out);
                }
                leaf = false;
                k = close + 1;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    if leaf && prefix.len() > depth {
        out.push((prefix.clone(), alias, line));
    }
    prefix.truncate(depth);
}

/// Splits `a, b::{c, d}, e` at its top-level commas.
fn split_top_level(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (k, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts.retain(|p| !p.is_empty());
    parts
}

/// Makes a path absolute from the crate root, given the module it is written
/// in. `crate::a` and `super::`/`self::` paths always; a plain `a::b` only at
/// the crate root and when `root_relative` (a `use` at the top of `lib.rs`),
/// as elsewhere its first segment is a local name or another crate.
fn absolute(path: &[String], from: &[String], root_relative: bool) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some(from.iter().chain(rest).cloned().collect()),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = from.len().checked_sub(ups)?;
            Some(from[..base].iter().chain(&path[ups..]).cloned().collect())
        }
        _ if root_relative && from.is_empty() => Some(path.to_vec()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The module graph and its loops (pure)
// ---------------------------------------------------------------------------

type Graph = BTreeMap<String, BTreeSet<String>>;

/// An import loop: the modules that reach each other, and the shortest loop
/// among them (the first in name order when several are as short), written
/// `a -> b -> a`.
#[derive(Debug, PartialEq, Eq)]
struct Loop {
    members: BTreeSet<String>,
    cycle: Vec<String>,
}

/// Every set of two or more modules that import each other, directly or
/// through others (the strongly connected components), each with a shortest
/// loop to name it.
fn find_loops(graph: &Graph) -> Vec<Loop> {
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut loops = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let members: BTreeSet<String> = nodes
            .iter()
            .filter(|m| *m == n || (reachable[*n].contains(**m) && reachable[**m].contains(*n)))
            .map(|m| (*m).clone())
            .collect();
        done.extend(members.iter().cloned());
        if members.len() > 1 {
            // the shortest loop inside, through whichever member gives it
            let cycle = members
                .iter()
                .map(|m| shortest_cycle(graph, m, &members))
                .min_by_key(|c| c.len())
                .unwrap_or_default();
            loops.push(Loop { members, cycle });
        }
    }
    loops
}

/// Breadth-first from `start` back to itself, staying inside `members`.
fn shortest_cycle(graph: &Graph, start: &str, members: &BTreeSet<String>) -> Vec<String> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for m in graph
            .get(&n)
            .into_iter()
            .flatten()
            .filter(|m| members.contains(*m))
        {
            if m == start {
                let mut cycle = vec![start.to_string(), n.clone()];
                let mut at = n.clone();
                while let Some(p) = parent.get(&at) {
                    cycle.push(p.clone());
                    at = p.clone();
                }
                // [start, n, parent of n, ..., start], backwards
                cycle.reverse();
                return cycle;
            }
            if m != start && !parent.contains_key(m) {
                parent.insert(m.clone(), n.clone());
                queue.push_back(m.clone());
            }
        }
    }
    vec![start.to_string()]
}

// ---------------------------------------------------------------------------
// The library on disk
// ---------------------------------------------------------------------------

/// Where a reference was found: file (relative to `appliance/`) and line.
#[derive(Debug, Clone)]
struct Evidence {
    file: String,
    line: usize,
    path: String,
}

struct Library {
    top: BTreeSet<String>,
    files: Vec<String>,
    /// (from, to) top-level modules -> where.
    edges: BTreeMap<(String, String), Vec<Evidence>>,
    forbidden: Vec<(String, String, usize)>,
    problems: Vec<String>,
}

fn appliance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads the library from `src/lib.rs`, following its `mod` declarations.
fn read_library(appliance: &Path) -> Library {
    let rel = |p: &Path| p.strip_prefix(appliance).unwrap_or(p).display().to_string();
    let mut problems = Vec::new();
    let lib = appliance.join("src/lib.rs");
    // (file, module path, the folder of its `mod x;` children, unit-test file)
    let mut todo = vec![(
        lib.clone(),
        Vec::<String>::new(),
        appliance.join("src"),
        false,
    )];
    let mut scans = Vec::new();
    let mut files = Vec::new();
    while let Some((file, module, child_dir, test)) = todo.pop() {
        let src = match std::fs::read_to_string(&file) {
            Ok(src) => src,
            Err(err) => {
                problems.push(format!("cannot read {}: {err}", rel(&file)));
                continue;
            }
        };
        let scan = scan(&src, &module);
        for decl in &scan.mods {
            let dir: PathBuf = decl.inline.iter().fold(child_dir.clone(), |d, m| d.join(m));
            let name = decl.module.last().expect("a declared module has a name");
            let candidates = match &decl.path_attr {
                Some(p) => vec![file
                    .parent()
                    .map_or_else(|| PathBuf::from(p), |d| d.join(p))],
                None => vec![
                    dir.join(format!("{name}.rs")),
                    dir.join(name).join("mod.rs"),
                ],
            };
            match candidates.iter().find(|c| c.is_file()) {
                Some(found) => {
                    let children = if found.file_name().is_some_and(|f| f == "mod.rs") {
                        found.parent().expect("a file has a folder").to_path_buf()
                    } else {
                        found.with_extension("")
                    };
                    todo.push((
                        found.clone(),
                        decl.module.clone(),
                        children,
                        test || decl.test,
                    ));
                }
                None => problems.push(format!(
                    "{}: `mod {name};` but none of {} exists",
                    rel(&file),
                    candidates
                        .iter()
                        .map(|c| rel(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        files.push(rel(&file));
        if !test {
            scans.push((rel(&file), scan));
        }
    }
    let top: BTreeSet<String> = scans
        .iter()
        .filter(|(f, _)| f == "src/lib.rs")
        .flat_map(|(_, s)| {
            s.declared
                .iter()
                .filter(|m| m.len() == 1)
                .map(|m| m[0].clone())
        })
        .collect();
    // Names lib.rs re-exports from a top-level module: `crate::Name` means that module.
    let re_exports: BTreeMap<String, String> = scans
        .iter()
        .filter(|(f, _)| f == "src/lib.rs")
        .flat_map(|(_, s)| s.uses_at_top.iter())
        .filter_map(|r| {
            r.path
                .first()
                .filter(|m| top.contains(*m))
                .map(|m| (r.name.clone(), m.clone()))
        })
        .collect();
    let mut edges: BTreeMap<(String, String), Vec<Evidence>> = BTreeMap::new();
    let mut forbidden = Vec::new();
    for (file, scan) in &scans {
        for (name, line) in &scan.forbidden {
            forbidden.push((name.clone(), file.clone(), *line));
        }
        for r in &scan.references {
            let Some(from) = r.from.first() else { continue }; // lib.rs itself
            let Some(first) = r.path.first() else {
                continue;
            };
            let to = if top.contains(first) {
                first.clone()
            } else if let Some(m) = re_exports.get(first) {
                m.clone()
            } else {
                continue; // an item of lib.rs itself, or a glob over the root
            };
            if &to != from {
                edges.entry((from.clone(), to)).or_default().push(Evidence {
                    file: file.clone(),
                    line: r.line,
                    path: r.path.join("::"),
                });
            }
        }
    }
    // Every source file outside the binary belongs to the library: nothing escapes the checks.
    let mut on_disk = Vec::new();
    collect_rs(&appliance.join("src"), &mut on_disk);
    for f in on_disk {
        let r = rel(&f);
        if !r.starts_with("src/bin/") && r != "src/main.rs" && !files.contains(&r) {
            problems.push(format!(
                "{r} is neither in the library (no `mod` reaches it) nor under src/bin/"
            ));
        }
    }
    files.sort();
    Library {
        top,
        files,
        edges,
        forbidden,
        problems,
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
    {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

impl Library {
    fn graph(&self) -> Graph {
        let mut g: Graph = self
            .top
            .iter()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        for (from, to) in self.edges.keys() {
            g.entry(from.clone()).or_default().insert(to.clone());
        }
        g
    }

    fn first(&self, from: &str, to: &str) -> String {
        let ev = &self.edges[&(from.to_string(), to.to_string())];
        format!("{}:{} ({})", ev[0].file, ev[0].line, ev[0].path)
    }

    fn assert_read(&self) {
        assert!(
            self.problems.is_empty(),
            "the library's files could not all be read:\n{}",
            self.problems.join("\n")
        );
        // A scanner that found nothing would pass everything: the library has
        // several modules, and stages use each other.
        assert!(
            self.top.len() >= 5,
            "only {:?} top-level modules found in src/lib.rs",
            self.top
        );
        assert!(
            !self.edges.is_empty(),
            "no reference between top-level modules found in {:?}",
            self.files
        );
    }
}

// ---------------------------------------------------------------------------
// The checks on the real source
// ---------------------------------------------------------------------------

#[test]
fn top_level_modules_do_not_import_each_other_in_a_loop() {
    let lib = read_library(&appliance_dir());
    lib.assert_read();
    let loops = find_loops(&lib.graph());
    let mut report = String::new();
    for l in &loops {
        let files: BTreeSet<&str> = lib
            .edges
            .iter()
            .filter(|((f, t), _)| l.members.contains(f) && l.members.contains(t))
            .flat_map(|(_, ev)| ev.iter().map(|e| e.file.as_str()))
            .collect();
        let _ = writeln!(
            report,
            "import loop: {} ({} modules, {} source files: {})",
            l.cycle.join(" -> "),
            l.members.len(),
            files.len(),
            l.members.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for pair in l.cycle.windows(2) {
            let _ = writeln!(
                report,
                "  {} -> {}: {}",
                pair[0],
                pair[1],
                lib.first(&pair[0], &pair[1])
            );
        }
        let _ = writeln!(report, "  every import inside the loop:");
        for ((f, t), ev) in &lib.edges {
            if l.members.contains(f) && l.members.contains(t) {
                let at: BTreeSet<(&str, usize)> =
                    ev.iter().map(|e| (e.file.as_str(), e.line)).collect();
                let at: Vec<String> = at.iter().map(|(f, l)| format!("{f}:{l}")).collect();
                let _ = writeln!(report, "    {f} -> {t}: {}", at.join(", "));
            }
        }
    }
    assert!(
        loops.is_empty(),
        "top-level modules of the library import each other:\n{report}"
    );
}

#[test]
fn only_the_command_layer_uses_config() {
    let lib = read_library(&appliance_dir());
    lib.assert_read();
    let users: Vec<String> = lib
        .edges
        .iter()
        .filter(|((_, to), _)| to == "config")
        .flat_map(|(_, ev)| {
            ev.iter()
                .map(|e| format!("  {}:{}: {}", e.file, e.line, e.path))
        })
        .collect();
    assert!(
        users.is_empty(),
        "library modules refer to `crate::config` (only the binary under src/bin/ may):\n{}",
        users.join("\n")
    );
}

#[test]
fn the_library_uses_neither_anyhow_nor_clap() {
    let lib = read_library(&appliance_dir());
    lib.assert_read();
    // one line per file and crate: `src/app.rs: anyhow at lines 23, 37`
    let mut by_file: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (name, file, line) in &lib.forbidden {
        by_file
            .entry((file, name))
            .or_default()
            .push(line.to_string());
    }
    let uses: Vec<String> = by_file
        .iter()
        .map(|((file, name), lines)| format!("  {file}: {name} at line(s) {}", lines.join(", ")))
        .collect();
    assert!(
        uses.is_empty(),
        "the library uses crates that belong to the binary (src/bin/):\n{}",
        uses.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The checker checked, on synthetic input
// ---------------------------------------------------------------------------

fn graph(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

fn names(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_three_module_loop_is_found_and_named() {
    let g = graph(&[
        ("capture", "config"),
        ("config", "detect"),
        ("detect", "capture"),
        ("pipeline", "capture"),
    ]);
    let loops = find_loops(&g);
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert_eq!(
        loops[0].cycle,
        names(&["capture", "config", "detect", "capture"])
    );
    assert_eq!(
        loops[0].members,
        names(&["capture", "config", "detect"])
            .into_iter()
            .collect()
    );
}

#[test]
fn one_direction_is_not_a_loop() {
    let g = graph(&[
        ("pipeline", "capture"),
        ("pipeline", "detect"),
        ("detect", "capture"),
        ("capture", "shutdown"),
    ]);
    assert_eq!(find_loops(&g), vec![]);
}

#[test]
fn the_shortest_loop_names_a_larger_tangle() {
    // a -> b -> c -> d -> a, plus the short way back c -> b
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("c", "b")]);
    let loops = find_loops(&g);
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0].cycle, names(&["b", "c", "b"]));
    assert_eq!(loops[0].members.len(), 4);
}

#[test]
fn separate_tangles_are_separate_loops() {
    let g = graph(&[("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "c")]);
    let cycles: Vec<Vec<String>> = find_loops(&g).into_iter().map(|l| l.cycle).collect();
    assert_eq!(
        cycles,
        vec![names(&["a", "b", "a"]), names(&["c", "d", "c"])]
    );
}

fn targets(src: &str, module: &[&str]) -> Vec<String> {
    scan(src, &names(module))
        .references
        .iter()
        .map(|r| r.path.join("::"))
        .collect()
}

#[test]
fn use_groups_code_paths_and_super_are_followed() {
    let src = r#"
        use crate::{capture::{self, FrameRef}, detect::Class as C};
        use super::events;
        fn f() -> crate::track::Tracker { crate::light::off(); format!("{}", crate::motion::X) }
    "#;
    assert_eq!(
        targets(src, &["pipeline"]),
        names(&[
            "capture::self",
            "capture::FrameRef",
            "detect::Class",
            "events",
            "track::Tracker",
            "light::off",
            "motion::X"
        ])
    );
    // `super` from a nested module stays inside its top-level module
    assert_eq!(
        targets("use super::Frame;", &["capture", "v4l2"]),
        names(&["capture::Frame"])
    );
    assert_eq!(
        targets(
            "fn f() { super::super::config::load() }",
            &["capture", "v4l2"]
        ),
        names(&["config::load"])
    );
}

#[test]
fn comments_strings_and_test_code_are_not_references() {
    let src = r##"
        //! See [`crate::config`].
        /// Uses crate::config::Settings /* nested /* crate::config */ */
        // crate::config
        /* crate::config */
        const A: &str = "crate::config::X";
        const B: &str = r#"crate::config "quoted" "#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { x }
        #[cfg(test)]
        mod tests { use crate::config::Settings; }
        #[cfg(test)]
        fn helper() { crate::config::parse(); }
        #[cfg(all(test, feature = "x"))]
        use crate::config::Other;
        use crate::capture::Frame;
    "##;
    assert_eq!(targets(src, &["light"]), names(&["capture::Frame"]));
}

#[test]
fn anyhow_and_clap_are_found_anywhere_outside_comments() {
    let src = "// anyhow is fine here\nuse anyhow::Context;\n#[derive(clap::Parser)]\nstruct A;\nfn f() { let s = \"clap\"; }";
    let found = scan(src, &names(&["app"])).forbidden;
    assert_eq!(
        found,
        vec![("anyhow".to_string(), 2), ("clap".to_string(), 3)]
    );
}

#[test]
fn module_declarations_lead_to_files_and_test_modules_are_marked() {
    let src = "pub mod capture;\n#[cfg(test)]\nmod tests;\nmod inline { mod deep; }\n#[path = \"x.rs\"]\npub(crate) mod odd;";
    let s = scan(src, &[]);
    let decls: Vec<(String, Vec<String>, Option<String>, bool)> = s
        .mods
        .iter()
        .map(|d| {
            (
                d.module.join("::"),
                d.inline.clone(),
                d.path_attr.clone(),
                d.test,
            )
        })
        .collect();
    assert_eq!(
        decls,
        vec![
            ("capture".to_string(), vec![], None, false),
            ("tests".to_string(), vec![], None, true),
            ("inline::deep".to_string(), names(&["inline"]), None, false),
            ("odd".to_string(), vec![], Some("x.rs".to_string()), false),
        ]
    );
    // only real modules are the library's own
    assert_eq!(
        s.declared,
        vec![
            names(&["capture"]),
            names(&["inline"]),
            names(&["inline", "deep"]),
            names(&["odd"])
        ]
    );
}

#[test]
fn names_re_exported_by_the_root_are_traced_to_their_module() {
    let s = scan(
        "pub mod config;\npub use config::{Settings, load as load_config};",
        &[],
    );
    let found: Vec<(String, String)> = s
        .uses_at_top
        .iter()
        .map(|r| (r.name.clone(), r.path.join("::")))
        .collect();
    assert_eq!(
        found,
        vec![
            ("Settings".to_string(), "config::Settings".to_string()),
            ("load_config".to_string(), "config::load".to_string())
        ]
    );
}
