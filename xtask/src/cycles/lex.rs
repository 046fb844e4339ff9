//! A tokenizer for Rust source that is just precise enough to find module paths: identifiers,
//! `::`, string literals (for `#[path = "..."]`) and single punctuation characters, with line
//! numbers. Comments, character literals, lifetimes and numbers are skipped.

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    /// An identifier or keyword (`r#name` is returned as `name`).
    Ident(String),
    /// `::`.
    PathSep,
    /// The contents of a string literal, unescaped only as far as the raw text goes.
    Str(String),
    /// Any other single character that is not whitespace.
    Punct(char),
}

/// A token with its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub tok: Tok,
    pub line: usize,
}

impl Token {
    pub fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Moves past `n` characters, counting newlines.
    fn bump(&mut self, n: usize) {
        for _ in 0..n {
            if self.peek(0) == Some('\n') {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek(0).is_some_and(&f) {
            self.bump(1);
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// `/* ... */`, nested.
    fn block_comment(&mut self) {
        let mut depth = 0;
        while let Some(c) = self.peek(0) {
            match (c, self.peek(1)) {
                ('/', Some('*')) => {
                    depth += 1;
                    self.bump(2);
                }
                ('*', Some('/')) => {
                    depth -= 1;
                    self.bump(2);
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.bump(1),
            }
        }
    }

    /// A `"..."` literal starting at the quote; backslash escapes are skipped over.
    fn quoted(&mut self) -> String {
        self.bump(1);
        let start = self.pos;
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.bump(2),
                '"' => break,
                _ => self.bump(1),
            }
        }
        let text = self.chars[start..self.pos.min(self.chars.len())].iter().collect();
        self.bump(1);
        text
    }

    /// A raw string starting at the `r`: `r"..."`, `r#"..."#`, ...
    fn raw(&mut self) -> String {
        self.bump(1);
        let hashes = self.take_while(|c| c == '#').len();
        self.bump(1); // the opening quote
        let start = self.pos;
        loop {
            match self.peek(0) {
                None => return self.chars[start..].iter().collect(),
                Some('"') if (1..=hashes).all(|i| self.peek(i) == Some('#')) => {
                    let text = self.chars[start..self.pos].iter().collect();
                    self.bump(1 + hashes);
                    return text;
                }
                Some(_) => self.bump(1),
            }
        }
    }

    /// After a `'`: a character literal (skipped) or a lifetime/label (skipped).
    fn quote(&mut self) {
        match (self.peek(1), self.peek(2)) {
            (Some('\\'), _) => {
                // The quote, the backslash and the escaped character, then up to the closing quote.
                self.bump(3);
                while self.peek(0).is_some_and(|c| c != '\'') {
                    self.bump(1);
                }
                self.bump(1);
            }
            (Some(_), Some('\'')) => self.bump(3),
            _ => {
                self.bump(1);
                self.take_while(is_ident_char);
            }
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits `src` into tokens.
pub(super) fn lex(src: &str) -> Vec<Token> {
    let mut lx = Lexer { chars: src.chars().collect(), pos: 0, line: 1 };
    let mut out = Vec::new();
    while let Some(c) = lx.peek(0) {
        let line = lx.line;
        let next = lx.peek(1);
        let tok = match c {
            _ if c.is_whitespace() => {
                lx.bump(1);
                continue;
            }
            '/' if next == Some('/') => {
                lx.take_while(|c| c != '\n');
                continue;
            }
            '/' if next == Some('*') => {
                lx.block_comment();
                continue;
            }
            '"' => Tok::Str(lx.quoted()),
            'r' if next == Some('"')
                || (next == Some('#') && lx.peek(2).is_some_and(|c| c == '"' || c == '#')) =>
            {
                Tok::Str(lx.raw())
            }
            'b' | 'c' if next == Some('"') => {
                lx.bump(1);
                Tok::Str(lx.quoted())
            }
            'b' if next == Some('r') && matches!(lx.peek(2), Some('"' | '#')) => {
                lx.bump(1);
                Tok::Str(lx.raw())
            }
            'b' if next == Some('\'') => {
                lx.bump(1);
                lx.quote();
                continue;
            }
            '\'' => {
                lx.quote();
                continue;
            }
            'r' if next == Some('#') => {
                lx.bump(2);
                Tok::Ident(lx.take_while(is_ident_char))
            }
            _ if is_ident_start(c) => Tok::Ident(lx.take_while(is_ident_char)),
            _ if c.is_ascii_digit() => {
                lx.take_while(is_ident_char);
                continue;
            }
            ':' if next == Some(':') => {
                lx.bump(2);
                Tok::PathSep
            }
            _ => {
                lx.bump(1);
                Tok::Punct(c)
            }
        };
        out.push(Token { tok, line });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        lex(src).into_iter().filter_map(|t| t.ident().map(str::to_owned)).collect()
    }

    #[test]
    fn skips_comments_strings_chars_and_lifetimes() {
        let src = "// crate::a\n/* crate::b /* nested */ crate::c */ let s = \"crate::d \\\" x\";\n\
                   let r = r#\"crate::e \"# ; let c = '\"'; let e = '\\''; fn f<'a>(x: &'a str) {} b'x'";
        let ids = idents(src);
        assert!(!ids.iter().any(|i| i == "crate"), "{ids:?}");
        assert_eq!(ids, ["let", "s", "let", "r", "let", "c", "let", "e", "fn", "f", "x", "str"]);
    }

    #[test]
    fn paths_lines_and_raw_identifiers() {
        let toks = lex("use crate::a;\n\nr#type::b");
        assert_eq!(toks[1], Token { tok: Tok::Ident("crate".into()), line: 1 });
        assert_eq!(toks[2].tok, Tok::PathSep);
        assert!(toks[4].is_punct(';'));
        assert_eq!(toks[5], Token { tok: Tok::Ident("type".into()), line: 3 });
    }

    #[test]
    fn string_contents_are_kept() {
        let toks = lex("#[path = \"x/y.rs\"] mod y; r##\"a\"#b\"##");
        assert!(toks.contains(&Token { tok: Tok::Str("x/y.rs".into()), line: 1 }));
        assert_eq!(toks.last().unwrap().tok, Tok::Str("a\"#b".into()));
    }
}
