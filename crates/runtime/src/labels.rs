//! Labels: the `KEY=VALUE` metadata docker lets users put on containers, volumes and networks
//! (`--label/-l`, `--label-file`), kept in their records and matched by `--filter label=…`
//! ([`crate::filter`]).
//!
//! The syntax is docker 20.10's (`opts.ReadKVStrings`, then `ConvertKVStringsToMap`): a label is
//! `KEY=VALUE`, or `KEY` alone for an empty value; a label file has one per line, with leading
//! whitespace, blank lines and lines starting with `#` ignored, a UTF-8 byte order mark dropped,
//! a key with whitespace in it refused, and the value taken verbatim (trailing spaces and `=`
//! included). Files are read first and the flags override them, key by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Labels by key, in key order (docker shows them as a map).
pub type Labels = BTreeMap<String, String>;

/// Errors reading labels.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// A `--label` value with nothing before its `=`.
    #[error("invalid label {0:?}: it needs a key (KEY=VALUE)")]
    NoKey(String),
    /// A label file cannot be read.
    #[error("read label file {}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a label file is not `KEY[=VALUE]`.
    #[error("label file {}, line {line}: {reason}", .path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses one `--label` value: `KEY=VALUE`, or `KEY` for an empty value.
pub fn parse_label(s: &str) -> Result<(String, String), LabelError> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    if key.is_empty() {
        return Err(LabelError::NoKey(s.to_string()));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses the text of a label file (`path` names it in errors).
pub fn parse_label_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, LabelError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |reason| LabelError::BadLine {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A bare KEY is a label with an empty value, as with `--label KEY`.
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if key.contains([' ', '\t']) {
            return Err(bad("the key contains whitespace"));
        }
        if key.is_empty() {
            return Err(bad("no key before '='"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Reads a label file.
pub fn read_label_file(path: &Path) -> Result<Vec<(String, String)>, LabelError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_label_file(path, &text)
}

/// The labels of `--label-file FILE…` and `--label K=V…` together: the files in order, then
/// the flags, a later value of a key replacing an earlier one (docker's order).
pub fn collect(files: &[PathBuf], flags: &[String]) -> Result<Labels, LabelError> {
    let mut out = Labels::new();
    for path in files {
        out.extend(read_label_file(path)?);
    }
    for flag in flags {
        let (k, v) = parse_label(flag)?;
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_label_is_key_value_or_a_bare_key() {
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        assert_eq!(parse_label("flag").unwrap(), ("flag".into(), "".into()));
        assert!(matches!(parse_label("=v"), Err(LabelError::NoKey(_))));
        assert!(matches!(parse_label(""), Err(LabelError::NoKey(_))));
    }

    #[test]
    fn label_files_read_as_docker_reads_them() {
        let p = Path::new("labels");
        let text = "\u{feff}# a comment\n\ncom.example.a=1\n   indented=two words \n\
                    bare\n  bare2\nempty=\nwith=equals=inside\n\t# indented comment\n";
        assert_eq!(
            parse_label_file(p, text).unwrap(),
            pairs(&[
                ("com.example.a", "1"),
                ("indented", "two words "),
                ("bare", ""),
                ("bare2", ""),
                ("empty", ""),
                ("with", "equals=inside"),
            ])
        );
        assert_eq!(parse_label_file(p, "a=1\r\nb=2\r\n").unwrap().len(), 2);
        let e = parse_label_file(p, "ok=1\nkey with space=1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "label file labels, line 2: the key contains whitespace"
        );
        assert!(parse_label_file(p, "bare \n").is_err());
        let e = parse_label_file(p, "=value\n").unwrap_err();
        assert!(e.to_string().contains("line 1: no key"), "{e}");
    }

    #[test]
    fn flags_override_files_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let (f1, f2) = (dir.path().join("one"), dir.path().join("two"));
        std::fs::write(&f1, "a=file1\nb=file1\n").unwrap();
        std::fs::write(&f2, "b=file2\nc=file2\n").unwrap();
        let labels = collect(&[f1, f2], &["c=flag".into(), "d".into()]).unwrap();
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            pairs(&[("a", "file1"), ("b", "file2"), ("c", "flag"), ("d", "")])
        );
        let missing = dir.path().join("missing");
        let e = collect(std::slice::from_ref(&missing), &[]).unwrap_err();
        assert!(matches!(e, LabelError::ReadFile { .. }), "{e}");
    }
}
