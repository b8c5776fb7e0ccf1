//! Splits a template into text and actions, and an action into tokens, with Go's rules for
//! `{{- ` / ` -}}` trim markers, comments, quoted and raw strings, and numbers.

use serde_json::Number;

/// A piece of the template: literal text or the tokens of one `{{…}}` action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Text(String),
    /// `pos` is the byte offset of the `{{`.
    Action {
        pos: usize,
        toks: Vec<Token>,
    },
}

/// One token and where it sits in the source (byte offsets), so that the parser can tell
/// `(x).Field` from `(x) .Field`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub pos: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// `.` alone.
    Dot,
    /// `.A.B`: the field names.
    Field(Vec<String>),
    /// `$x.A.B`: the variable (`$` included) and the field names.
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(Number),
    Bool(bool),
    Nil,
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    Kw(Kw),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    If,
    Else,
    End,
    Range,
    With,
    Define,
    Template,
    Block,
    Break,
    Continue,
}

/// A lexing failure at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LexError {
    pub pos: usize,
    pub msg: String,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, LexError> {
    Err(LexError {
        pos,
        msg: msg.into(),
    })
}

/// Go trims exactly these around a trim marker.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits `src` into items; trim markers are applied to the neighbouring text here.
pub(crate) fn items(src: &str) -> Result<Vec<Item>, LexError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    // Set by a ` -}}`: the next text loses its leading white space.
    let mut trim_next = false;
    while pos < src.len() {
        let open = src[pos..].find("{{").map(|i| pos + i);
        let text_end = open.unwrap_or(src.len());
        let mut text = &src[pos..text_end];
        if trim_next {
            text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        }
        let Some(open) = open else {
            push_text(&mut out, text);
            break;
        };
        let mut inner = open + 2;
        if bytes.get(inner) == Some(&b'-') && bytes.get(inner + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
            inner += 2;
        }
        push_text(&mut out, text);
        let (toks, close, trim) = action(src, inner, open)?;
        if !toks.is_empty() {
            out.push(Item::Action { pos: open, toks });
        }
        trim_next = trim;
        pos = close;
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Item>, text: &str) {
    if !text.is_empty() {
        out.push(Item::Text(text.to_string()));
    }
}

/// Lexes one action from `start` (past `{{` and a left trim marker) to its `}}`; returns its
/// tokens (none for a comment), the offset after `}}`, and whether it ended in a trim marker.
fn action(src: &str, start: usize, open: usize) -> Result<(Vec<Token>, usize, bool), LexError> {
    let bytes = src.as_bytes();
    let mut pos = start;
    // A comment fills the whole action: `{{/* … */}}`, trim markers allowed around it.
    let skip_spaces = |mut p: usize| {
        while p < bytes.len() && is_space(bytes[p]) {
            p += 1;
        }
        p
    };
    if src[pos..].starts_with("/*") {
        let Some(end) = src[pos + 2..].find("*/") else {
            return err(open, "unclosed comment");
        };
        let after = pos + 2 + end + 2;
        if src[after..].starts_with("}}") {
            return Ok((Vec::new(), after + 2, false));
        }
        if src[after..].starts_with(" -}}") {
            return Ok((Vec::new(), after + 4, true));
        }
        return err(open, "comment ends before closing delimiter");
    }
    let mut toks = Vec::new();
    loop {
        let before = pos;
        pos = skip_spaces(pos);
        if pos >= src.len() {
            return err(open, "unclosed action");
        }
        if pos > before && src[pos..].starts_with("-}}") {
            return Ok((toks, pos + 3, true));
        }
        if src[pos..].starts_with("}}") {
            return Ok((toks, pos + 2, false));
        }
        let c = src[pos..].chars().next().unwrap_or('\0');
        let (kind, end) = match c {
            '(' => (Tok::LParen, pos + 1),
            ')' => (Tok::RParen, pos + 1),
            '|' => (Tok::Pipe, pos + 1),
            ',' => (Tok::Comma, pos + 1),
            '=' => (Tok::Assign, pos + 1),
            ':' if src[pos..].starts_with(":=") => (Tok::Declare, pos + 2),
            '"' => quoted(src, pos)?,
            '`' => match src[pos + 1..].find('`') {
                Some(i) => (Tok::Str(src[pos + 1..pos + 1 + i].to_string()), pos + i + 2),
                None => return err(pos, "unterminated raw quoted string"),
            },
            '\'' => char_constant(src, pos)?,
            '$' => {
                let (name, p) = ident(src, pos + 1);
                let (path, p) = fields(src, p);
                (Tok::Var(format!("${name}"), path), p)
            }
            '.' if !next_is_digit(src, pos + 1) => {
                let (path, p) = fields(src, pos);
                if path.is_empty() {
                    (Tok::Dot, pos + 1)
                } else {
                    (Tok::Field(path), p)
                }
            }
            '0'..='9' | '.' => number(src, pos)?,
            '+' | '-' if next_is_digit(src, pos + 1) || src[pos + 1..].starts_with('.') => {
                number(src, pos)?
            }
            c if c == '_' || c.is_alphabetic() => {
                let (word, p) = ident(src, pos);
                let kind = match word.as_str() {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    "if" => Tok::Kw(Kw::If),
                    "else" => Tok::Kw(Kw::Else),
                    "end" => Tok::Kw(Kw::End),
                    "range" => Tok::Kw(Kw::Range),
                    "with" => Tok::Kw(Kw::With),
                    "define" => Tok::Kw(Kw::Define),
                    "template" => Tok::Kw(Kw::Template),
                    "block" => Tok::Kw(Kw::Block),
                    "break" => Tok::Kw(Kw::Break),
                    "continue" => Tok::Kw(Kw::Continue),
                    _ => Tok::Ident(word),
                };
                (kind, p)
            }
            c => return err(pos, format!("unexpected {c:?} in command")),
        };
        toks.push(Token { kind, pos, end });
        pos = end;
    }
}

fn next_is_digit(src: &str, pos: usize) -> bool {
    src.as_bytes().get(pos).is_some_and(u8::is_ascii_digit)
}

/// An identifier (possibly empty) from `pos`.
fn ident(src: &str, pos: usize) -> (String, usize) {
    let len: usize = src[pos..]
        .chars()
        .take_while(|&c| is_alnum(c))
        .map(char::len_utf8)
        .sum();
    (src[pos..pos + len].to_string(), pos + len)
}

/// A chain of `.Name` from `pos`.
fn fields(src: &str, mut pos: usize) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    while src[pos..].starts_with('.') {
        let (name, p) = ident(src, pos + 1);
        if name.is_empty() {
            break;
        }
        path.push(name);
        pos = p;
    }
    (path, pos)
}

/// A Go interpreted string literal from the `"` at `pos`.
fn quoted(src: &str, pos: usize) -> Result<(Tok, usize), LexError> {
    let mut out = String::new();
    let mut chars = src[pos + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(out), pos + 1 + i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String =
                            (0..n).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == n);
                        match code.and_then(char::from_u32) {
                            Some(ch) => out.push(ch),
                            None => return err(pos, format!("invalid escape \\{e}{hex}")),
                        }
                    }
                    '0'..='7' => {
                        let mut oct = e.to_string();
                        for _ in 0..2 {
                            if let Some((_, d)) = chars.next() {
                                oct.push(d);
                            }
                        }
                        match u32::from_str_radix(&oct, 8).ok().and_then(char::from_u32) {
                            Some(ch) if oct.len() == 3 => out.push(ch),
                            _ => return err(pos, format!("invalid escape \\{oct}")),
                        }
                    }
                    _ => return err(pos, format!("unknown escape sequence \\{e}")),
                }
            }
            c => out.push(c),
        }
    }
    err(pos, "unterminated quoted string")
}

/// `'a'` is a number in Go templates (the character's code point).
fn char_constant(src: &str, pos: usize) -> Result<(Tok, usize), LexError> {
    let rest = &src[pos + 1..];
    let mut chars = rest.char_indices();
    let c = match chars.next() {
        Some((_, '\\')) => match chars.next() {
            Some((_, 'n')) => '\n',
            Some((_, 't')) => '\t',
            Some((_, '\\')) => '\\',
            Some((_, '\'')) => '\'',
            _ => return err(pos, "unsupported escape in character constant"),
        },
        Some((_, c)) => c,
        None => return err(pos, "unterminated character constant"),
    };
    match chars.next() {
        Some((i, '\'')) => Ok((Tok::Num(Number::from(u32::from(c))), pos + 1 + i + 1)),
        _ => err(pos, "unterminated character constant"),
    }
}

/// A number from `pos`: decimal, `0x`/`0o`/`0b` or leading-zero octal integers, and decimal
/// floats, with `_` separators and an optional sign.
fn number(src: &str, pos: usize) -> Result<(Tok, usize), LexError> {
    let len: usize = src[pos..]
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || (i == 0 && (c == '+' || c == '-'))
                || ((c == '+' || c == '-')
                    && matches!(src.as_bytes()[pos + i - 1], b'e' | b'E')
                    && !src[pos..pos + i].contains(['x', 'X']))
        })
        .map(|(_, c)| c.len_utf8())
        .sum();
    let text = &src[pos..pos + len];
    let bad = || LexError {
        pos,
        msg: format!("bad number syntax: {text:?}"),
    };
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let value = if let Some((r, body)) = radix(digits) {
        let n = i128::from_str_radix(body, r).map_err(|_| bad())?;
        integer(if neg { -n } else { n }).ok_or_else(bad)?
    } else if let Ok(n) = digits.parse::<i128>() {
        integer(if neg { -n } else { n }).ok_or_else(bad)?
    } else {
        let f: f64 = clean.parse().map_err(|_| bad())?;
        Number::from_f64(f).ok_or_else(bad)?
    };
    Ok((Tok::Num(value), pos + len))
}

/// The base of an integer literal and its digits after the prefix; `None` for decimal.
fn radix(p: &str) -> Option<(u32, &str)> {
    let lower = p.get(..2)?.to_ascii_lowercase();
    match lower.as_str() {
        "0x" => Some((16, &p[2..])),
        "0o" => Some((8, &p[2..])),
        "0b" => Some((2, &p[2..])),
        _ if p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some((8, &p[1..]))
        }
        _ => None,
    }
}

fn integer(n: i128) -> Option<Number> {
    if let Ok(i) = i64::try_from(n) {
        Some(Number::from(i))
    } else {
        u64::try_from(n).ok().map(Number::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        match &items(src).unwrap()[0] {
            Item::Action { toks, .. } => toks.iter().map(|t| t.kind.clone()).collect(),
            other => panic!("not an action: {other:?}"),
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            kinds(r#"{{index .Config.Labels "k\tx" $v.A 0x1F -2 1.5e3 'a' nil}}"#),
            vec![
                Tok::Ident("index".into()),
                Tok::Field(vec!["Config".into(), "Labels".into()]),
                Tok::Str("k\tx".into()),
                Tok::Var("$v".into(), vec!["A".into()]),
                Tok::Num(31.into()),
                Tok::Num((-2).into()),
                Tok::Num(Number::from_f64(1500.0).unwrap()),
                Tok::Num(97.into()),
                Tok::Nil,
            ]
        );
        assert_eq!(
            kinds("{{range $k, $v := .}}"),
            vec![
                Tok::Kw(Kw::Range),
                Tok::Var("$k".into(), vec![]),
                Tok::Comma,
                Tok::Var("$v".into(), vec![]),
                Tok::Declare,
                Tok::Dot,
            ]
        );
        assert_eq!(kinds("{{-3}}"), vec![Tok::Num((-3).into())]);
        assert_eq!(kinds("{{`a\"}}b`}}"), vec![Tok::Str("a\"}}b".into())]);
    }

    #[test]
    fn trim_markers_and_comments() {
        let got = items("a  {{- .A -}}  b {{/* c */}} d\n{{- /* e */ -}}\n f").unwrap();
        let texts: Vec<_> = got
            .iter()
            .filter_map(|i| match i {
                Item::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["a", "b ", " d", "f"]);
        assert!(items("{{.A").is_err());
        assert!(items("{{\"abc}}").is_err());
        assert!(items("{{/* x }}").is_err());
        assert!(items("{{3x}}").is_err());
    }
}
