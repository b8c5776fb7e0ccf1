//! Docker's variable substitution: the small shell-like lexer the builder runs over the words of
//! the instructions it expands (see [`Instruction::expands_variables`](crate::Instruction::expands_variables)).
//!
//! It is not a shell: there is no command substitution, arithmetic or globbing. It handles
//! `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?message}`, `${VAR?message}`, the newer `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`, single quotes (literal), double quotes
//! (only `$`, `"` and the escape character are special inside), and the escape character (`\`,
//! or `` ` `` under `# escape=`` ` ``), which takes the next character literally.
//!
//! Unset variables expand to nothing, as in Docker; so do positional and special parameters
//! (`$1`, `$@`, `$$`…), which a Dockerfile never sets.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Where the lexer looks variables up: the environment of the build step (ENV and ARG values
/// in effect before the instruction).
///
/// Implemented for maps of `String` to `String` and for closures
/// `Fn(&str) -> Option<String>`.
pub trait Lookup {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl<S: BuildHasher> Lookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A word the lexer could not expand: an unterminated quote, a malformed `${…}`, or a
/// `${VAR:?message}` whose variable is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What went wrong, in Docker's words (`FOO: is not allowed to be unset`).
    pub message: String,
}

/// The lexer, set to a Dockerfile's escape character.
///
/// [`Dockerfile::lexer`](crate::Dockerfile::lexer) gives the one a file asked for; the free
/// functions [`expand`] and [`expand_words`] use the default `\`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    /// A lexer with `escape` as its escape character (Docker allows `\` and `` ` ``; any
    /// character works here).
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` as one word: variables substituted, quotes and escapes removed, and
    /// whitespace kept as it is (Docker's `ProcessWord`, used for ENV and LABEL values, paths,
    /// WORKDIR, USER…).
    pub fn expand<L: Lookup + ?Sized>(&self, word: &str, env: &L) -> Result<String, ExpandError> {
        self.run(word, env, Options::default()).map(|(s, _)| s)
    }

    /// Expands `word` and splits the result into words at unquoted whitespace, including
    /// whitespace that came out of a variable (Docker's `ProcessWords`, used for EXPOSE).
    /// Empty words are dropped, even quoted ones (`""`), as Docker does.
    pub fn expand_words<L: Lookup + ?Sized>(
        &self,
        word: &str,
        env: &L,
    ) -> Result<Vec<String>, ExpandError> {
        self.run(word, env, Options::default()).map(|(_, w)| w)
    }

    pub(crate) fn run<L: Lookup + ?Sized>(
        &self,
        word: &str,
        env: &L,
        options: Options,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut scan = Scan {
            chars: word.chars().collect(),
            pos: 0,
            escape: self.escape,
            options,
            raw_escapes: options.raw_escapes,
            env,
            depth: 0,
        };
        scan.stop_on(None, options.raw_escapes)
            .map_err(|message| ExpandError {
                word: word.to_string(),
                message,
            })
    }
}

/// [`Lexer::expand`] with the default escape character `\`.
pub fn expand<L: Lookup + ?Sized>(word: &str, env: &L) -> Result<String, ExpandError> {
    Lexer::default().expand(word, env)
}

/// [`Lexer::expand_words`] with the default escape character `\`.
pub fn expand_words<L: Lookup + ?Sized>(word: &str, env: &L) -> Result<Vec<String>, ExpandError> {
    Lexer::default().expand_words(word, env)
}

/// Expands the body of a here-document whose delimiter was not quoted (`COPY <<EOF`):
/// variables are substituted and `\` escapes processed, but quotes are ordinary characters.
/// Docker uses `\` here whatever the file's escape directive says.
pub fn expand_heredoc<L: Lookup + ?Sized>(content: &str, env: &L) -> Result<String, ExpandError> {
    let options = Options {
        skip_quotes: true,
        ..Options::default()
    };
    Lexer::default().run(content, env, options).map(|(s, _)| s)
}

/// Switches Docker's lexer has for its internal uses; the public entry points use none.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Keep quote characters in the output (still honouring what they quote).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to nothing.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters.
    pub skip_quotes: bool,
}

/// Collects words the way Docker does: characters from the source and from variables split
/// at whitespace, while quoted and escaped text never does.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw(ch);
        }
    }

    fn add_raw(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

struct Scan<'a, L: ?Sized> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    options: Options,
    /// Changes while inside `${VAR#…}` patterns, which keep their escapes for the matcher.
    raw_escapes: bool,
    env: &'a L,
    /// Nesting of `${…}`, bounded so that a hostile word cannot exhaust the stack.
    depth: usize,
}

/// Far beyond any real Dockerfile; each level costs a few stack frames.
const MAX_DEPTH: usize = 256;

impl<L: Lookup + ?Sized> Scan<'_, L> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        if self.depth >= MAX_DEPTH {
            return Err("substitutions nested too deeply".into());
        }
        self.depth += 1;
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let result = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        result
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    // A variable's value is split at its whitespace, unlike quoted text.
                    words.add_str(&value);
                }
                '<' => {
                    let text = self.possible_heredoc();
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                '\'' if !self.options.skip_quotes => {
                    let text = self.single_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                '"' if !self.options.skip_quotes => {
                    let text = self.double_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw(ch);
                            result.push(ch);
                        }
                        // An escape at the very end escapes nothing and disappears.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        self.next();
        if self.options.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.options.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        self.next();
        if self.options.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.options.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The loop then reports the missing closing quote.
                            None => continue,
                            // As in sh, only these are escapable inside double quotes; before
                            // anything else the escape character stays.
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<<` and the blanks after it stay glued to the next word, so that `<< EOF` is one
    /// heredoc word when the parser looks for heredocs.
    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(ch @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(ch);
            self.next();
        }
        out
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                // Positional parameters: all the digits make the name.
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.lookup(name)
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err("syntax error: missing '}'".into()),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let (null_is_unset, modifier) = if first == ':' {
                    (true, self.next())
                } else {
                    (false, Some(first))
                };
                let spelled = match (null_is_unset, modifier) {
                    (true, Some(m)) => format!(":{m}"),
                    (true, None) => ":".into(),
                    (false, m) => m.map(String::from).unwrap_or_default(),
                };
                let pattern = matches!(modifier, Some('#' | '%'));
                if null_is_unset && pattern {
                    return Err(format!("unsupported modifier ({spelled}) in substitution"));
                }
                let word = self.closing(Some('}'), pattern, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if self.options.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{spelled}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                let unset = !set || (null_is_unset && value.is_empty());
                match modifier {
                    Some('-') => Ok(if unset { word } else { value }),
                    Some('+') => Ok(if unset { String::new() } else { word }),
                    Some('?') => {
                        let default = if !set {
                            "is not allowed to be unset"
                        } else {
                            "is not allowed to be empty"
                        };
                        if unset {
                            let message = if word.is_empty() { default } else { &word };
                            Err(format!("{name}: {message}"))
                        } else {
                            Ok(value)
                        }
                    }
                    Some(m @ ('#' | '%')) => {
                        let (longest, pattern) = match word.strip_prefix(m) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let glob = Glob::compile(&pattern)?;
                        Ok(if m == '#' {
                            glob.trim_prefix(&value, longest)
                        } else {
                            glob.trim_suffix(&value, longest)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({spelled}) in substitution")),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = self.closing(Some('/'), true, "syntax error: missing '/' in ${}")?;
                let replacement = self.closing(Some('}'), true, "syntax error: missing '}'")?;
                let Some(value) = self.lookup(&name) else {
                    if self.options.skip_unset {
                        let slashes = if all { "//" } else { "/" };
                        return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let glob = Glob::compile(&pattern)?;
                Ok(glob.replace(&value, &replacement, all))
            }
            Some(other) => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// The text up to `stop`, expanded; running out of input reports `missing`.
    fn closing(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        missing: &str,
    ) -> Result<String, String> {
        match self.stop_on(stop, raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(missing.into()),
            Err(e) => Err(e),
        }
    }
}

/// The patterns of `${VAR#pat}` and friends: `*` any run of characters, `?` one character,
/// `\*`, `\?` and `\\` literal, everything else itself. No bracket expressions, as in Docker.
#[derive(Debug)]
struct Glob(Vec<GlobToken>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum GlobToken {
    Literal(char),
    One,
    Any,
}

impl Glob {
    fn compile(pattern: &str) -> Result<Glob, String> {
        let invalid = |e: String| format!("invalid pattern ({pattern}) in substitution: {e}");
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(GlobToken::Any),
                '?' => tokens.push(GlobToken::One),
                '\\' => match chars.peek() {
                    // Escaped only so the lexer would not end the ${…} there.
                    Some('}' | '/') => {}
                    Some(&c @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(GlobToken::Literal(c));
                    }
                    Some(&c) => return Err(invalid(format!("invalid escape '\\{c}'"))),
                    None => return Err(invalid("invalid escape '\\'".into())),
                },
                c => tokens.push(GlobToken::Literal(c)),
            }
        }
        Ok(Glob(tokens))
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self.match_end(&chars, 0, longest) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// A suffix match is a prefix match of the reversed pattern on the reversed text.
    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let reversed: Vec<char> = value.chars().rev().collect();
        let pattern = Glob(self.0.iter().rev().copied().collect());
        match pattern.match_end(&reversed, 0, longest) {
            Some(len) => reversed[len..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// The end of the shortest or longest match starting at `start`, by running the pattern
    /// as a set of states over the text once (linear in the text, unlike trying every end).
    fn match_end(&self, s: &[char], start: usize, longest: bool) -> Option<usize> {
        let tokens = &self.0;
        let m = tokens.len();
        // `*` also matches nothing, so a state before it is also a state after it.
        let close = |states: &mut Vec<bool>| {
            for i in 0..m {
                if states[i] && tokens[i] == GlobToken::Any {
                    states[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; m + 1];
        states[0] = true;
        close(&mut states);
        let mut best = states[m].then_some(start);
        if best.is_some() && !longest {
            return best;
        }
        for (j, &c) in s.iter().enumerate().skip(start) {
            let mut next = vec![false; m + 1];
            for i in (0..m).filter(|&i| states[i]) {
                match tokens[i] {
                    GlobToken::Any => next[i] = true,
                    GlobToken::One => next[i + 1] = true,
                    GlobToken::Literal(l) if l == c => next[i + 1] = true,
                    GlobToken::Literal(_) => {}
                }
            }
            close(&mut next);
            if !next.iter().any(|&x| x) {
                break;
            }
            if next[m] {
                best = Some(j + 1);
                if !longest {
                    break;
                }
            }
            states = next;
        }
        best
    }

    /// Replaces the leftmost (then, with `all`, each following) longest match.
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut last_end: Option<usize> = None;
        while pos <= chars.len() {
            match self.match_end(&chars, pos, true) {
                // An empty match right where the previous one ended would repeat it.
                Some(end) if !(end == pos && last_end == Some(pos)) => {
                    out.push_str(replacement);
                    last_end = Some(end);
                    if end == pos {
                        if let Some(&c) = chars.get(pos) {
                            out.push(c);
                        }
                        pos += 1;
                    } else {
                        pos = end;
                    }
                    if !all {
                        out.extend(chars.get(pos..).unwrap_or_default());
                        return out;
                    }
                }
                _ => {
                    if let Some(&c) = chars.get(pos) {
                        out.push(c);
                    }
                    pos += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("NULL", ""),
            ("KOREAN", "한국어"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[track_caller]
    fn ok(word: &str, want: &str) {
        assert_eq!(expand(word, &env()).unwrap(), want, "expanding {word:?}");
    }

    #[track_caller]
    fn err(word: &str) {
        assert!(expand(word, &env()).is_err(), "{word:?} should not expand");
    }

    #[test]
    fn quotes_and_escapes() {
        ok("plain", "plain");
        ok("a'b c'd", "ab cd");
        err("a'bc");
        ok(r"it\'s", "it's");
        err(r"x\\'y");
        ok(r"a\tb", "atb");
        ok(r#""a\tb""#, r"a\tb");
        ok(r#""a\\tb""#, r"a\tb");
        ok(r"'a\tb'", r"a\tb");
        ok(r"end\", "end");
        ok(r"end\\", r"end\");
        err(r#""open"#);
        err(r#""open\""#);
        ok(r#""it's""#, "it's");
        ok(r"'back\'", r"back\");
        ok(r#""''""#, "''");
        ok(r#"'"x"'"#, r#""x""#);
        ok("유니'코'드", "유니코드");
    }

    #[test]
    fn variables() {
        ok("$.", "$.");
        ok("a$1b", "ab");
        ok("a$.b", "a$.b");
        ok("x$pwd.", "x.");
        ok("x$PWD", "x/home");
        ok(r"x\$PWD", "x$PWD");
        ok(r"x\\$PWD", r"x\/home");
        ok(r#""x\$PWD""#, "x$PWD");
        ok(r#""x\\$PWD""#, r"x\/home");
        ok(r"\${}", "${}");
        ok(r"x\${}y", "x${}y");
        err("${}");
        err("x${}y");
        ok("x${unset}y", "xy");
        ok("x${PWD}y", "x/homey");
        err("x${.}");
        ok("'x${PWD}'", "x${PWD}");
        ok(r#""x'$PWD'""#, "x'/home'");
        ok("$KOREAN!", "한국어!");
        err("x${PWD");
        ok("${a}}", "}");
        err("${{a}");
        err("${a");
    }

    #[test]
    fn modifiers() {
        ok("${X:-000}", "000");
        ok("${PWD:-000}", "/home");
        ok("${X:-$PWD}", "/home");
        ok("${X:-${PWD:-y}}", "/home");
        ok("${X:-${Y:-y}}", "y");
        err("${X:Y}");
        err("${X?}");
        err("${X:?}");
        ok("${PWD?}", "/home");
        ok("${PWD:?}", "/home");
        ok("${NULL?}", "");
        err("${NULL:?}");
        ok("${X:+${PWD}}", "");
        ok("${PWD:+${X}}", "");
        ok("${PWD:+${SHELL}}", "bash");
        ok("${PWD:+000}", "000");
        ok("${NULL-d}", "");
        ok("${NULL:-d}", "d");
        ok("${NULL+a}", "a");
        ok("${NULL:+a}", "");
        err("${PWD:=000}");
        ok("${PWD:+${PWD}:}", "/home:");
        ok(r"${X:-\$PWD:}", "$PWD:");
        ok(r"${X:-\${PWD}z}", "${PWDz}");
        ok("${a:-b}}", "b}");
        err("${a:-b");
        err("${a:-b ${c}");
        ok("${a:-b {c}", "b {c");
        err("${:}");
        err("${:-b}");
        ok("${1:-b}", "b");
        ok("$999a", "a");
        ok("${@:-b}a", "ba");
        ok("$@@@", "@@");
        ok("$$", "");
        ok("${0:+b}", "");
    }

    #[test]
    fn required_messages() {
        let e = expand("${NOPE:?set it}", &env()).unwrap_err();
        assert_eq!(e.message, "NOPE: set it");
        let e = expand("${NULL:?}", &env()).unwrap_err();
        assert_eq!(e.message, "NULL: is not allowed to be empty");
        assert_eq!(
            e.to_string(),
            r#"failed to process "${NULL:?}": NULL: is not allowed to be empty"#
        );
    }

    #[test]
    fn patterns() {
        let env: BTreeMap<String, String> = [("s".to_string(), "foobarbaz".to_string())].into();
        let x = |w: &str| expand(w, &env).unwrap();
        assert_eq!(x("${s#f*b}"), "arbaz");
        assert_eq!(x("${s##f*b}"), "az");
        assert_eq!(x("${s%b*}"), "foobar");
        assert_eq!(x("${s%%b*}"), "foo");
        assert_eq!(x("${s/ba/fo}"), "fooforbaz");
        assert_eq!(x("${s//ba/fo}"), "fooforfoz");
        assert_eq!(x("${s#x}"), "foobarbaz");
        assert_eq!(x("${s#*}"), "foobarbaz");
        assert_eq!(x("${s##*}"), "");
        assert_eq!(x("${s%*}"), "foobarbaz");
        assert_eq!(x("${s%%*}"), "");
        assert_eq!(x("${s#f?o}"), "barbaz");
        assert_eq!(x("${s%a?}"), "foobarb");
        assert_eq!(x("${s%%a*}"), "foob");
        assert_eq!(x("${s##*a}"), "z");
        assert_eq!(x("${s/o?/_}"), "f_barbaz");
        assert_eq!(x(r"${s/\*/_}"), "foobarbaz");
        assert_eq!(x("${unset/a/b}"), "");
        assert_eq!(x("${s//?/-}"), "---------");
        assert_eq!(x("${s/*/all}"), "all");
        assert_eq!(x("${s/b*/X}"), "fooX");
        assert_eq!(x("${s//z/}"), "foobarba");
        assert!(expand(r"${s#\x}", &env).is_err());
        assert!(expand("${s:#x}", &env).is_err());
    }

    #[test]
    fn words() {
        let env: BTreeMap<String, String> = [
            ("space", "abc  def"),
            ("leading", "  ab c"),
            ("trailing", "ab c   "),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let w = |s: &str| expand_words(s, &env).unwrap();
        assert_eq!(w("hello"), ["hello"]);
        assert_eq!(w("hello${space}bye"), ["helloabc", "defbye"]);
        assert_eq!(w(r#"hello"${space}"bye"#), ["helloabc  defbye"]);
        assert_eq!(w(r#"hello "${space}"bye"#), ["hello", "abc  defbye"]);
        assert_eq!(w("hello${leading}def"), ["hello", "ab", "cdef"]);
        assert_eq!(w("hello${trailing}d"), ["helloab", "c", "d"]);
        assert_eq!(w(r#"hel"lo${trailing}""#), ["helloab c   "]);
        assert_eq!(w("hello there    "), ["hello", "there"]);
        assert_eq!(w(r"hello\ there"), ["hello there"]);
        assert_eq!(w(r#"hello\" there"#), ["hello\"", "there"]);
        assert_eq!(w(r#"a "" b"#), ["a", "b"]);
        assert!(expand_words(r#"hello" there"#, &env).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}x{}", "${a:-".repeat(10_000), "}".repeat(10_000));
        assert!(expand(&deep, &env()).is_err());
        let fine = format!("{}x{}", "${a:-".repeat(100), "}".repeat(100));
        assert_eq!(expand(&fine, &env()).unwrap(), "x");
    }

    #[test]
    fn backtick_escape() {
        let lexer = Lexer::new('`');
        let env = env();
        assert_eq!(lexer.expand(r"c:\dir\", &env).unwrap(), r"c:\dir\");
        assert_eq!(lexer.expand("`$PWD", &env).unwrap(), "$PWD");
        assert_eq!(lexer.expand(r#""a`"b""#, &env).unwrap(), r#"a"b"#);
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let env = env();
        assert_eq!(
            expand_heredoc("echo \"hi $SHELL\" 'x' \\$PWD\n", &env).unwrap(),
            "echo \"hi bash\" 'x' $PWD\n"
        );
    }

    #[test]
    fn closures_and_hashmaps_look_up() {
        let f = |name: &str| (name == "A").then(|| "1".to_string());
        assert_eq!(expand("$A$B", &f).unwrap(), "1");
        let h: HashMap<String, String> = [("B".to_string(), "2".to_string())].into();
        assert_eq!(expand("$A$B", &h).unwrap(), "2");
    }
}
