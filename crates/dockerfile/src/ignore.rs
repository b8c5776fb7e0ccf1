//! `.dockerignore`: which paths of the build context are left out, with Docker's rules.
//!
//! - A line starting with `#` (in column 1) is a comment; blank lines are skipped.
//! - Patterns are trimmed, cleaned like Go's `filepath.Clean` (`./a//b/` is `a/b`, `a/../b`
//!   is `b`) and lose a leading `/`: they are relative to the context root.
//! - Go's `filepath.Match` syntax: `*` any run of characters but `/`, `?` one character but
//!   `/`, `[a-z]` and `[^a-z]` classes, `\` to take the next character literally; plus `**`,
//!   any number of directories (`**/*.go`, `a/**/b`, `a/**`).
//! - A pattern matching a directory matches everything under it.
//! - `!pattern` re-includes what earlier lines excluded; the last line that matches a path
//!   decides.
//!
//! The same matcher serves `COPY --exclude` ([`Ignore::from_patterns`]).

/// A pattern the matcher refuses: `!` alone or a malformed `[` class or trailing `\`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore:{line}: {message}")]
pub struct IgnoreError {
    /// 1-based line of the pattern (its position, for [`Ignore::from_patterns`]).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the `!`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
}

impl Ignore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            // Only a `#` in the very first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut body = if body.is_empty() {
                String::new()
            } else {
                clean(body)
            };
            if body.len() > 1 && body.starts_with('/') {
                body.remove(0);
            }
            let pattern = if exclusion { format!("!{body}") } else { body };
            patterns.extend(Pattern::new(&pattern, index + 1)?);
        }
        Ok(Ignore { patterns })
    }

    /// A matcher from patterns given one by one (`COPY --exclude`), which are cleaned but
    /// otherwise taken as they are; `!` works as in a file.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Ignore, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for (index, pattern) in patterns.into_iter().enumerate() {
            out.extend(Pattern::new(pattern.as_ref(), index + 1)?);
        }
        Ok(Ignore { patterns: out })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, cleaned, each with whether it is an exception (`!`).
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.patterns.iter().map(|p| (p.text.as_str(), p.exclusion))
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern matching it or one of its parent directories decides. The root itself (`.`,
    /// `""`) is never excluded.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(at) => {
                let parent = &path[..at];
                parent
                    .char_indices()
                    .filter(|&(_, c)| c == '/')
                    .map(|(i, _)| &parent[..i])
                    .chain(std::iter::once(parent))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // An exclusion can only change an excluded path, and an inclusion only a kept one.
            if pattern.exclusion != excluded {
                continue;
            }
            let hit = pattern.matcher.matches(&path)
                || parents.iter().any(|dir| pattern.matcher.matches(dir));
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// For a directory that [`Ignore::matches`]: whether an exception (`!`) might re-include
    /// something under it. When false, a walker can skip the whole directory; when true it
    /// must look inside and ask about each path. Conservative like Docker's own walker: an
    /// exception with wildcards (other than a trailing `/*` or `/**`) could match anywhere,
    /// so it makes every directory worth entering.
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let exceptions: Vec<&Pattern> = self.patterns.iter().filter(|p| p.exclusion).collect();
        if exceptions.is_empty() {
            return false;
        }
        let literal = |p: &Pattern| -> String {
            let text = p.text.as_str();
            let text = text.strip_suffix("/**").unwrap_or(text);
            text.strip_suffix("/*").unwrap_or(text).to_string()
        };
        let wild = |s: &str| s.contains(['*', '[', ']', '?', '^', '\\']);
        if exceptions.iter().any(|p| wild(&literal(p))) {
            return true;
        }
        let dir = clean(dir.trim_start_matches('/'));
        let dir_slash = format!("{dir}/");
        exceptions
            .iter()
            .any(|p| format!("{}/", literal(p)).starts_with(&dir_slash))
    }
}

impl Pattern {
    /// `None` for a pattern that is blank after trimming.
    fn new(raw: &str, line: usize) -> Result<Option<Pattern>, IgnoreError> {
        let error = |message: String| IgnoreError { line, message };
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let cleaned = clean(raw);
        let (exclusion, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(error("illegal exclusion pattern: \"!\"".into())),
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned.clone()),
        };
        validate(&text).map_err(|m| error(format!("{m} in pattern {text:?}")))?;
        let matcher = Matcher::compile(&text);
        Ok(Some(Pattern {
            text,
            exclusion,
            matcher,
        }))
    }
}

/// Go's `path.Clean`: the shortest equivalent path, lexically.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Refuses what Go's `filepath.Match` calls a bad pattern: a `\` with nothing after it, or a
/// `[` class that is unclosed, empty, or has a `-` or `]` where a character belongs.
fn validate(pattern: &str) -> Result<(), &'static str> {
    const BAD: &str = "syntax error";
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(BAD);
                }
                i += 2;
            }
            '[' => {
                i = class_end(&chars, i + 1).ok_or(BAD)?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Reads a class body starting after `[`; returns the index after its `]`.
fn class_end(chars: &[char], mut i: usize) -> Option<usize> {
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    let mut ranges = 0;
    loop {
        if chars.get(i) == Some(&']') && ranges > 0 {
            return Some(i + 1);
        }
        i = class_char(chars, i)?.1;
        if chars.get(i) == Some(&'-') {
            i = class_char(chars, i + 1)?.1;
        }
        ranges += 1;
    }
}

/// One (possibly escaped) character of a class, and the index after it; something must
/// follow it, since the class still needs its `]`.
fn class_char(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    match chars.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let c = *chars.get(i)?;
    (i + 1 < chars.len()).then_some((c, i + 1))
}

/// How a pattern is matched. Docker turns patterns into regular expressions except for three
/// shortcuts whose results differ in corner cases (`**foo` is "ends with foo"), so they are
/// kept as such.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard at all.
    Exact(String),
    /// Literal text then a final `**`: starts with the text.
    Prefix(String),
    /// A leading `**` then literal text: ends with it (or equals it without its `/`).
    Suffix(String),
    /// Anything else, matched against the whole path.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**/` (or `**` before more text): nothing, or anything ending in `/`.
    Dirs,
    /// `**` at the end: anything.
    Rest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(PartialEq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

impl Matcher {
    fn compile(pattern: &str) -> Matcher {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut detected = Detected::Exact;
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            tokens.push(Token::Rest);
                            detected = Detected::Tokens;
                        }
                    } else {
                        tokens.push(Token::Dirs);
                        detected = Detected::Tokens;
                    }
                    if first {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    detected = Detected::Tokens;
                }
                '?' => {
                    tokens.push(Token::One);
                    detected = Detected::Tokens;
                }
                '\\' => match chars.get(i) {
                    Some(&c) => {
                        i += 1;
                        tokens.push(Token::Literal(c));
                        detected = Detected::Tokens;
                    }
                    None => tokens.push(Token::Literal('\\')),
                },
                '[' => {
                    let (token, end) = class(&chars, i);
                    tokens.push(token);
                    i = end;
                    detected = Detected::Tokens;
                }
                ']' => {
                    tokens.push(Token::Literal(']'));
                    detected = Detected::Tokens;
                }
                c => tokens.push(Token::Literal(c)),
            }
            first = false;
        }
        match detected {
            Detected::Exact => Matcher::Exact(pattern.to_string()),
            Detected::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_string()),
            Detected::Suffix => Matcher::Suffix(pattern[2..].to_string()),
            Detected::Tokens => Matcher::Tokens(tokens),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(text) => path == text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Matcher::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(tokens, &chars)
            }
        }
    }
}

/// A class body after `[` (already validated); returns the token and the index after `]`.
fn class(chars: &[char], mut i: usize) -> (Token, usize) {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let one = |i: &mut usize| -> char {
        if chars.get(*i) == Some(&'\\') {
            *i += 1;
        }
        let c = chars.get(*i).copied().unwrap_or('\\');
        *i += 1;
        c
    };
    while i < chars.len() && (chars[i] != ']' || ranges.is_empty()) {
        let lo = one(&mut i);
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            one(&mut i)
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    (Token::Class { negated, ranges }, i + 1)
}

/// Whole-path match by dynamic programming over (token, position): patterns and paths are
/// short, and this never backtracks exponentially.
fn match_tokens(tokens: &[Token], s: &[char]) -> bool {
    let n = s.len();
    // next[j]: whether tokens[k+1..] match s[j..]; starts as "empty pattern matches".
    let mut next: Vec<bool> = (0..=n).map(|j| j == n).collect();
    for token in tokens.iter().rev() {
        let mut cur = vec![false; n + 1];
        match token {
            Token::Literal(c) => {
                for j in 0..n {
                    cur[j] = s[j] == *c && next[j + 1];
                }
            }
            Token::One => {
                for j in 0..n {
                    cur[j] = s[j] != '/' && next[j + 1];
                }
            }
            Token::Class { negated, ranges } => {
                for j in 0..n {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= s[j] && s[j] <= hi);
                    cur[j] = inside != *negated && next[j + 1];
                }
            }
            Token::Star => {
                cur[n] = next[n];
                for j in (0..n).rev() {
                    cur[j] = next[j] || (s[j] != '/' && cur[j + 1]);
                }
            }
            Token::Rest => {
                cur[n] = next[n];
                for j in (0..n).rev() {
                    cur[j] = next[j] || cur[j + 1];
                }
            }
            Token::Dirs => {
                // Empty, or any run of characters whose last one is `/`.
                let mut slash_then_rest = false;
                cur[n] = next[n];
                for j in (0..n).rev() {
                    slash_then_rest = slash_then_rest || (s[j] == '/' && next[j + 1]);
                    cur[j] = next[j] || slash_then_rest;
                }
            }
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/b", "a/b"),
            ("a//b/", "a/b"),
            ("./a/./b/.", "a/b"),
            ("a/../b", "b"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//", "/"),
            ("..", ".."),
            ("a/..", "."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn bad_patterns() {
        for bad in ["[", "[]", "[a", "[a-", "[a-]", "[]a]", "[-a]", "a\\", "[\\"] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "[a]", "[^a]", "[a-z]", "[\\]]", "\\*", "[a-z0-9]x"] {
            assert!(validate(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn matcher_kinds() {
        assert!(matches!(Matcher::compile("a/b"), Matcher::Exact(_)));
        assert!(matches!(Matcher::compile("a/**"), Matcher::Prefix(p) if p == "a/"));
        assert!(matches!(Matcher::compile("**/a"), Matcher::Suffix(s) if s == "/a"));
        assert!(matches!(Matcher::compile("**/*.go"), Matcher::Tokens(_)));
        // Docker's shortcut: a leading ** then literal text is "ends with".
        assert!(Matcher::compile("**foo").matches("barfoo"));
        assert!(Matcher::compile("**").matches("anything/at/all"));
    }

    #[test]
    fn tokens() {
        let m = |p: &str, s: &str| Matcher::compile(p).matches(s);
        assert!(m("*.go", "main.go"));
        assert!(!m("*.go", "dir/main.go"));
        assert!(m("**/*.go", "main.go"));
        assert!(m("**/*.go", "a/b/main.go"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("a/*/**", "a/x/y"));
        assert!(m("temp?", "tempa"));
        assert!(!m("temp?", "temp"));
        assert!(!m("a?b", "a/b"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("\\*x", "*x"));
        assert!(!m("\\*x", "ax"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b*", "axb"));
    }
}
