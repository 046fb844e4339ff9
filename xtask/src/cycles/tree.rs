//! The module tree of one crate, read from its `mod` declarations (files and inline modules,
//! `#[path]` honoured, `#[cfg(test)]` items left out), and the imports between its modules:
//! every `use` tree and every path in code that starts with `crate::`, `super::`, `self::` or
//! the name of a child module, resolved to the module it names.

use std::path::{Path, PathBuf};

use super::lex::{lex, Tok, Token};

/// A module path from the crate root (`[]` is the root).
pub(super) type ModPath = Vec<String>;

/// One module.
#[derive(Debug)]
pub(super) struct Module {
    pub path: ModPath,
    /// The file holding its code (for an inline module, the file it is written in).
    pub file: PathBuf,
}

/// A module naming another: `from` uses `to` at `file`:`line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Import {
    pub from: ModPath,
    pub to: ModPath,
    pub file: PathBuf,
    pub line: usize,
}

/// A path as written in a module, not yet resolved.
struct Named {
    module: usize,
    segments: Vec<String>,
    line: usize,
}

/// Reads files; `None` if the file does not exist.
pub(super) type Read<'a> = &'a dyn Fn(&Path) -> Option<String>;

struct Loader<'a> {
    read: Read<'a>,
    modules: Vec<Module>,
    named: Vec<Named>,
    errors: Vec<String>,
}

/// Loads the crate whose root file is `root` and resolves the paths its modules name.
/// Errors name `mod` declarations whose file is missing.
pub(super) fn load(root: &Path, read: Read<'_>) -> Result<(Vec<Module>, Vec<Import>), Vec<String>> {
    let mut loader = Loader { read, modules: Vec::new(), named: Vec::new(), errors: Vec::new() };
    loader.file(root, Vec::new(), true);
    if !loader.errors.is_empty() {
        return Err(loader.errors);
    }
    let Loader { modules, named, .. } = loader;
    let imports = named.iter().filter_map(|n| resolve(&modules, n)).collect();
    Ok((modules, imports))
}

impl Loader<'_> {
    /// Loads a module from `file`. `mod_rs`: its child files are next to it (`lib.rs`, `mod.rs`,
    /// `#[path]` files) rather than in a directory named after it.
    fn file(&mut self, file: &Path, path: ModPath, mod_rs: bool) {
        let Some(src) = (self.read)(file) else {
            self.errors.push(format!("{}: cannot read", file.display()));
            return;
        };
        let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let child_dir = if mod_rs { dir.clone() } else { dir.join(file.file_stem().unwrap_or_default()) };
        let tokens = lex(&src);
        self.body(&tokens, file, &dir, path, child_dir);
    }

    /// Scans the items of a module body.
    fn body(&mut self, toks: &[Token], file: &Path, dir: &Path, path: ModPath, child_dir: PathBuf) {
        let index = self.modules.len();
        self.modules.push(Module { path: path.clone(), file: file.to_path_buf() });
        let mut depth = 0usize;
        let mut path_attr: Option<String> = None;
        let mut i = 0;
        while i < toks.len() {
            let t = &toks[i];
            if t.is_punct('#') && toks.get(i + 1).is_some_and(|t| t.is_punct('[')) {
                let end = matching(toks, i + 1);
                let attr = &toks[i + 2..end.min(toks.len())];
                if is_cfg_test(attr) {
                    i = item_end(toks, end + 1);
                    continue;
                }
                if let [Token { tok: Tok::Ident(p), .. }, eq, Token { tok: Tok::Str(s), .. }] = attr {
                    if p == "path" && eq.is_punct('=') {
                        path_attr = Some(s.clone());
                    }
                }
                i = end + 1;
                continue;
            }
            match &t.tok {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    path_attr = None;
                }
                Tok::Punct(';') if depth == 0 => path_attr = None,
                Tok::Ident(kw) if kw == "mod" && depth == 0 => {
                    if let (Some(name), Some(next)) =
                        (toks.get(i + 1).and_then(Token::ident), toks.get(i + 2))
                    {
                        let mut child = path.clone();
                        child.push(name.to_owned());
                        if next.is_punct(';') {
                            self.child_file(file, dir, &child_dir, name, path_attr.take(), child);
                            i += 3;
                            continue;
                        }
                        if next.is_punct('{') {
                            let close = matching(toks, i + 2);
                            let inner = &toks[i + 3..close.min(toks.len())];
                            self.body(inner, file, dir, child, child_dir.join(name));
                            i = close + 1;
                            continue;
                        }
                    }
                }
                Tok::Ident(kw) if kw == "use" => {
                    let (trees, end) = use_tree(toks, i + 1);
                    for segments in trees {
                        self.named.push(Named { module: index, segments, line: t.line });
                    }
                    i = end;
                    continue;
                }
                Tok::Ident(_) if starts_path(toks, i) => {
                    let (segments, end) = plain_path(toks, i);
                    self.named.push(Named { module: index, segments, line: t.line });
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn child_file(
        &mut self,
        file: &Path,
        dir: &Path,
        child_dir: &Path,
        name: &str,
        path_attr: Option<String>,
        child: ModPath,
    ) {
        if let Some(p) = path_attr {
            return self.file(&dir.join(p), child, true);
        }
        let flat = child_dir.join(format!("{name}.rs"));
        let nested = child_dir.join(name).join("mod.rs");
        if (self.read)(&flat).is_some() {
            self.file(&flat, child, false);
        } else if (self.read)(&nested).is_some() {
            self.file(&nested, child, true);
        } else {
            self.errors.push(format!(
                "{}: `mod {name};` but neither {} nor {} exists",
                file.display(),
                flat.display(),
                nested.display()
            ));
        }
    }
}

/// The index of the bracket closing the one at `open` (or `toks.len()`).
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// `cfg(test)` or `cfg(all(test, ...))`: the item is compiled for unit tests only.
fn is_cfg_test(attr: &[Token]) -> bool {
    let words: Vec<Option<&str>> = attr.iter().take(5).map(Token::ident).collect();
    let open = |i: usize| attr.get(i).is_some_and(|t| t.is_punct('('));
    match words.as_slice() {
        [Some("cfg"), None, Some("test"), ..] => open(1) && attr.get(3).is_some_and(|t| t.is_punct(')')),
        [Some("cfg"), None, Some("all"), None, Some("test")] => open(1) && open(3),
        _ => false,
    }
}

/// The index after the item starting at `start` (after further attributes): past its `;`, or
/// past the `}` closing its body.
fn item_end(toks: &[Token], start: usize) -> usize {
    let mut i = start;
    while toks.get(i).is_some_and(|t| t.is_punct('#')) && toks.get(i + 1).is_some_and(|t| t.is_punct('[')) {
        i = matching(toks, i + 1) + 1;
    }
    while i < toks.len() {
        match toks[i].tok {
            Tok::Punct(';') => return i + 1,
            Tok::Punct('{') => return matching(toks, i) + 1,
            Tok::Punct('(' | '[') => i = matching(toks, i) + 1,
            _ => i += 1,
        }
    }
    toks.len()
}

/// True if an identifier at `i` begins a path (`name::`), not continuing one (`a::name`) and
/// not after a `.` (method call).
fn starts_path(toks: &[Token], i: usize) -> bool {
    let before = i.checked_sub(1).map(|b| &toks[b]);
    toks.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep)
        && !before.is_some_and(|b| b.tok == Tok::PathSep || b.is_punct('.'))
}

/// `a::b::c` in code: the identifiers joined by `::` (stops before `::<`).
fn plain_path(toks: &[Token], mut i: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    while let Some(name) = toks.get(i).and_then(Token::ident) {
        segments.push(name.to_owned());
        let more = toks.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep)
            && toks.get(i + 2).is_some_and(|t| t.ident().is_some());
        if !more {
            return (segments, i + 1);
        }
        i += 2;
    }
    (segments, i)
}

/// A `use` tree starting at `i`, expanded into its paths (`a::{b, c::d}` -> `a::b`, `a::c::d`;
/// a trailing `self` or `*` is dropped, so it names the module). Paths with a leading `::`
/// (other crates) are left out. Returns the paths and the index after the tree.
fn use_tree(toks: &[Token], i: usize) -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    let end = tree(toks, i, &mut Vec::new(), &mut out);
    out.retain(|p: &Vec<String>| !p.is_empty());
    (out, end)
}

fn tree(toks: &[Token], mut i: usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let base = prefix.len();
    if toks.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
        // `::name`: an external crate.
        let mut ignored = Vec::new();
        return tree(toks, i + 1, &mut vec!["::".to_owned()], &mut ignored);
    }
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(name)) => {
                if name != "self" || prefix.is_empty() {
                    prefix.push(name.clone());
                }
                i += 1;
                if toks.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
                    i += 1;
                    continue;
                }
                if toks.get(i).and_then(Token::ident) == Some("as") {
                    i += 2;
                }
                out.push(prefix.clone());
                break;
            }
            Some(Tok::Punct('*')) => {
                out.push(prefix.clone());
                i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while toks.get(i).is_some_and(|t| !t.is_punct('}')) {
                    i = tree(toks, i, prefix, out);
                    if toks.get(i).is_some_and(|t| t.is_punct(',')) {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(base);
    i
}

/// The module a path names: `crate::`, `super::` and `self::` paths are taken from the crate
/// root, the parent and the module itself; any other path only if its first segment is a child
/// module. The target is the longest prefix of the path that is a module. `None` for paths
/// into other crates and for a module naming itself.
fn resolve(modules: &[Module], named: &Named) -> Option<Import> {
    let from = &modules[named.module];
    let mut segments = named.segments.iter().map(String::as_str).peekable();
    let mut path: ModPath = match segments.peek() {
        Some(&"crate") => {
            segments.next();
            Vec::new()
        }
        Some(&"super") => {
            let mut path = from.path.clone();
            while segments.next_if_eq(&"super").is_some() {
                path.pop()?;
            }
            path
        }
        Some(&"self") => {
            segments.next();
            from.path.clone()
        }
        Some(first) => {
            let mut child = from.path.clone();
            child.push((*first).to_owned());
            modules.iter().any(|m| m.path == child).then(|| from.path.clone())?
        }
        None => return None,
    };
    let mut target = path.clone();
    for s in segments {
        path.push(s.to_owned());
        if modules.iter().any(|m| m.path == path) {
            target = path.clone();
        }
    }
    (target != from.path).then(|| Import {
        from: from.path.clone(),
        to: target,
        file: from.file.clone(),
        line: named.line,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> (Vec<Module>, Vec<Import>) {
        let files: HashMap<PathBuf, String> =
            files.iter().map(|(p, s)| (PathBuf::from(p), (*s).to_owned())).collect();
        load(Path::new("src/lib.rs"), &|p: &Path| files.get(p).cloned()).unwrap()
    }

    fn edges(imports: &[Import]) -> Vec<String> {
        let mut e: Vec<String> =
            imports.iter().map(|i| format!("{} -> {}", i.from.join("::"), i.to.join("::"))).collect();
        e.sort();
        e.dedup();
        e
    }

    #[test]
    fn use_trees_expand() {
        let (paths, end) = use_tree(&lex("crate::{a::{self, B}, c::*, d as e}; x"), 0);
        assert_eq!(
            paths,
            [vec!["crate", "a"], vec!["crate", "a", "B"], vec!["crate", "c"], vec!["crate", "d"]]
        );
        assert!(lex("crate::{a::{self, B}, c::*, d as e}; x")[end].is_punct(';'));
        assert!(use_tree(&lex("::std::fs;"), 0).0.is_empty());
    }

    #[test]
    fn modules_and_imports() {
        let (modules, imports) = crate_of(&[
            ("src/lib.rs", "mod a; pub mod b; pub use a::X;\n#[cfg(test)]\nmod tests;"),
            (
                "src/a.rs",
                "use crate::b::{c, Y};\nmod inner { use super::super::b; }\nfn f() { crate::a::g(); }",
            ),
            ("src/b/mod.rs", "pub mod c;\n#[path = \"other.rs\"] mod d;\nfn f() { c::run(); }"),
            ("src/b/c.rs", "use super::d::Z;\n#[cfg(test)]\nmod tests { use crate::a; }"),
            ("src/b/other.rs", "pub struct Z; fn f() -> std::fs::File { super::super::a::h() }"),
        ]);
        let paths: Vec<String> = modules.iter().map(|m| m.path.join("::")).collect();
        assert_eq!(paths, ["", "a", "a::inner", "b", "b::c", "b::d"]);
        assert_eq!(modules[5].file, PathBuf::from("src/b/other.rs"));
        assert_eq!(
            edges(&imports),
            [" -> a", "a -> b", "a -> b::c", "a::inner -> b", "b -> b::c", "b::c -> b::d", "b::d -> a"]
        );
        let a_to_c = imports.iter().find(|i| i.to == ["b", "c"] && i.from == ["a"]).unwrap();
        assert_eq!((a_to_c.file.to_str().unwrap(), a_to_c.line), ("src/a.rs", 1));
    }

    #[test]
    fn test_only_items_are_left_out() {
        let (modules, imports) = crate_of(&[
            ("src/lib.rs", "mod a; mod b;"),
            ("src/a.rs", "#[cfg(test)]\n#[allow(unused)]\nfn t() { crate::b::x(); }\n#[cfg(all(test, unix))] use crate::b;"),
            ("src/b.rs", "#[cfg(any(test, feature = \"x\"))] use crate::a; const N: [u8; 2] = [0; 2];"),
        ]);
        assert_eq!(modules.len(), 3);
        assert_eq!(edges(&imports), ["b -> a"]);
    }

    #[test]
    fn missing_files_are_reported() {
        let files: HashMap<PathBuf, String> = [(PathBuf::from("src/lib.rs"), "mod gone;".to_owned())].into();
        let errors = load(Path::new("src/lib.rs"), &|p: &Path| files.get(p).cloned()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("mod gone;"), "{errors:?}");
    }
}
