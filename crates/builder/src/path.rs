//! Paths inside a tree (the build context, a stage's root filesystem, a layer): always
//! relative to the tree's root, `/`-separated, cleaned, `""` for the root itself; and Go's
//! `filepath.Match`, which Docker uses for COPY sources.

/// How a path that climbs above the root is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Above {
    /// `..` at the root stays at the root, as in a chroot (a stage's or an image's files).
    Clamp,
    /// Climbing above the root is an error (the build context: nothing outside it is sent).
    Refuse,
}

/// Cleans `path` lexically into a root-relative path: a leading `/` is dropped, `.` and
/// empty components vanish, `..` removes the previous component. `None` when `..` climbs
/// above the root and `above` is [`Above::Refuse`].
pub(crate) fn clean(path: &str, above: Above) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && above == Above::Refuse {
                    return None;
                }
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// `a` joined with `b` (both root-relative).
pub(crate) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The parent of a root-relative path (`""` for a top-level name and for the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The last component of a root-relative path.
pub(crate) fn base(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// Every ancestor of `path`, outermost first, without the root and without `path`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// `/path` for messages.
pub(crate) fn display(path: &str) -> String {
    format!("/{path}")
}

/// Whether `pattern` has a wildcard of `filepath.Match` (`*`, `?`, `[`), `\` escaping.
pub(crate) fn has_wildcards(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// A malformed pattern (`filepath.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Go's `filepath.Match` on `/`-separated names: `*` is any run of characters but `/`, `?`
/// one character but `/`, `[...]`/`[^...]` a class with ranges, `\` takes the next character
/// literally. The whole `name` must match.
pub(crate) fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    // Checked up front so that a bad pattern is an error whatever the name.
    validate(&p)?;
    Ok(match_from(&p, &s))
}

fn validate(p: &[char]) -> Result<(), BadPattern> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(BadPattern);
                }
                i += 2;
            }
            '[' => {
                let (_, end) = class(p, i + 1, '\0').ok_or(BadPattern)?;
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Backtracking over `*` (patterns are short; a `*` retries only at later positions of
/// the same path component, so this stays polynomial).
fn match_from(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' if si < s.len() && s[si] != '/' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' if si < s.len() && s[si] != '/' => {
                    if let Some((true, end)) = class(p, pi + 1, s[si]) {
                        pi = end;
                        si += 1;
                        continue;
                    }
                }
                '\\' if si < s.len() && pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c != '*'
                    && c != '?'
                    && c != '['
                    && c != '\\'
                    && si < s.len()
                    && c == s[si] =>
                {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last `*` take one more character, unless that is a `/`.
        match star {
            Some((sp, ss)) if ss < s.len() && s[ss] != '/' => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// A class body starting after `[`: whether `c` is in it, and the index after `]`. `None`
/// for a malformed class.
fn class(p: &[char], mut i: usize, c: char) -> Option<(bool, usize)> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            return Some((matched != negated, i + 1));
        }
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
        ranges += 1;
    }
}

fn class_char(p: &[char], mut i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let c = *p.get(i)?;
    Some((c, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean("/a//b/./c/", Above::Refuse).as_deref(), Some("a/b/c"));
        assert_eq!(clean("a/../b", Above::Refuse).as_deref(), Some("b"));
        assert_eq!(clean(".", Above::Refuse).as_deref(), Some(""));
        assert_eq!(clean("../x", Above::Refuse), None);
        assert_eq!(clean("a/../../x", Above::Refuse), None);
        assert_eq!(clean("/../x", Above::Clamp).as_deref(), Some("x"));
    }

    #[test]
    fn go_match() {
        let m = |p: &str, s: &str| glob_match(p, s).unwrap();
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "d/a.txt"));
        assert!(m("*/*.txt", "d/a.txt"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("index.?s", "index.js"));
        assert!(!m("?", "/"));
        assert!(m("arr[[]0].txt", "arr[0].txt"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("*", ""));
        assert!(glob_match("[", "a").is_err());
        assert!(glob_match("a\\", "a").is_err());
        assert!(glob_match("[]a]", "a").is_err());
    }

    #[test]
    fn wildcards_and_escapes() {
        assert!(has_wildcards("a/*.go"));
        assert!(!has_wildcards("a\\*b"));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(base("a/b/c"), "c");
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
    }
}
