//! `container system logs`: what our own processes logged, Apple's `system logs`. There is no
//! daemon here: each container's monitor is the runtime process of that container, and its
//! diagnostics go to the container's `monitor.log` (at the `--log-level`/`--debug` it was started
//! with). This prints them merged in time order, each line prefixed with its container's name,
//! and with `--follow` goes on printing what they append (and the logs of containers created
//! meanwhile) until interrupted.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::global::GlobalOptions;

/// How often `--follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(300);

/// Arguments of `system logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Go on printing new lines until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Only lines of this last span of time (Go's duration form: 30s, 5m, 1h30m).
    #[arg(long, value_name = "DURATION")]
    last: Option<String>,
    /// Only these containers' monitors (names or ids); default: every container's.
    containers: Vec<String>,
}

/// One monitor log being read.
struct Source {
    name: String,
    path: PathBuf,
    offset: u64,
    /// The end of a last line that had no newline yet.
    partial: String,
}

impl Source {
    /// The complete lines appended since the last read.
    fn read_new(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated or replaced (the container was removed and made again): from the top.
            self.offset = 0;
            self.partial.clear();
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete.lines().map(strip_ansi).collect()
    }
}

/// The line without terminal colour sequences (`ESC [ … m`), which tracing writes when the
/// monitor's stderr looked like a terminal to it.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The time a log line starts with (tracing's RFC 3339 stamp), if it has one.
fn stamp(line: &str) -> Option<DateTime<Utc>> {
    let word = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(word)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Runs `system logs`.
pub fn run(global: &GlobalOptions, a: LogsArgs) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let since = match &a.last {
        Some(text) => {
            let nanos = runtime::health::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("invalid --last {text:?}: {e}"))?;
            Some(Utc::now() - chrono::Duration::nanoseconds(nanos))
        }
        None => None,
    };
    let wanted: Vec<String> = a
        .containers
        .iter()
        .map(|key| rt.container(key).map(|c| c.id().to_string()))
        .collect::<Result<_, _>>()?;
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    loop {
        let records = rt.store().list().context("list containers")?;
        for r in records {
            if !wanted.is_empty() && !wanted.contains(&r.id) {
                continue;
            }
            sources.entry(r.id.clone()).or_insert_with(|| Source {
                name: r.name.clone(),
                path: rt.store().dir_of(&r.id).join("monitor.log"),
                offset: 0,
                partial: String::new(),
            });
        }
        let mut lines: Vec<(Option<DateTime<Utc>>, String)> = Vec::new();
        for source in sources.values_mut() {
            // A line without a stamp (a continuation) goes with the line before it.
            let mut last = None;
            for line in source.read_new() {
                let t = stamp(&line).or(last);
                last = t;
                if since.is_some_and(|s| t.is_some_and(|t| t < s)) {
                    continue;
                }
                lines.push((t, format!("{} | {line}", source.name)));
            }
        }
        // Stable: lines of one log keep their order when stamps tie or are missing.
        lines.sort_by_key(|(t, _)| *t);
        for (_, line) in lines {
            println!("{line}");
        }
        if !a.follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_cleaned() {
        let line = "\u{1b}[2m2026-12-06T12:00:01.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m booting";
        let clean = strip_ansi(line);
        assert_eq!(clean, "2026-12-06T12:00:01.123456Z  INFO booting");
        assert_eq!(
            stamp(&clean).map(|t| t.to_rfc3339()),
            Some("2026-12-06T12:00:01.123456+00:00".to_string())
        );
        assert!(stamp("  continued").is_none());
    }

    #[test]
    fn only_complete_lines_are_read_and_a_new_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.log");
        std::fs::write(&path, "a\nb").unwrap();
        let mut s = Source {
            name: "c".into(),
            path: path.clone(),
            offset: 0,
            partial: String::new(),
        };
        assert_eq!(s.read_new(), ["a"]);
        std::fs::write(&path, "a\nbc\nd\n").unwrap();
        assert_eq!(s.read_new(), ["bc", "d"]);
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(s.read_new(), ["x"]);
    }
}
