//! The container log: the main process's stdout and stderr, one JSON object per line
//! (`{"time":…,"stream":"stdout","log":"text\n"}`, docker's json-file layout), written by the
//! monitor and read by `container logs`.
//!
//! Output is cut into lines per stream so that `logs -n N` can count lines; a partial line is
//! written when it grows past [`MAX_PARTIAL`] or when the stream ends.
//!
//! Rotation follows docker's json-file driver (`--log-opt max-size=10m --log-opt max-file=3`):
//! once the file has reached `max-size`, the next line first rotates it, keeping at most
//! `max-file` files in all, oldest last:
//!
//! ```text
//! container.log     the file being written
//! container.log.1   the one before
//! container.log.2   older …  up to container.log.<max-file − 1>
//! ```
//!
//! Readers ([`LogFollower`]) start at the oldest file and follow the current one across
//! rotations.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A partial line longer than this is written without waiting for its newline.
pub const MAX_PARTIAL: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (and the pty).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the monitor received it.
    pub time: DateTime<Utc>,
    /// Which stream.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced), with its newline if it had one.
    pub log: String,
}

/// The log drivers a container can have: ours writes docker's json-file layout for both
/// `json-file` and `local` (whose own format only docker's daemon reads), and `none` keeps
/// nothing.
pub const DRIVERS: [&str; 3] = ["json-file", "local", "none"];

/// docker's answer to reading the log of a container whose driver keeps none.
pub const NOT_READABLE: &str = "configured logging driver does not support reading";

/// A `--log-driver` or `--log-opt` that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogConfigError {
    /// A driver other than [`DRIVERS`].
    #[error(
        "log driver {0:?} is not supported: use json-file, local or none (the container's \
         monitor writes its log; no other driver runs here)"
    )]
    Driver(String),
    /// An option the driver does not have (docker's message), or one we do not implement.
    #[error(
        "unknown log opt '{opt}' for {driver} log driver (max-size and max-file are supported)"
    )]
    Opt {
        /// The option.
        opt: String,
        /// The driver.
        driver: String,
    },
    /// `max-size` is not a positive size.
    #[error("invalid log opt max-size={0}: max-size must be a positive size, e.g. 10m")]
    MaxSize(String),
    /// `max-file` is not a positive number.
    #[error("invalid log opt max-file={0}: max-file cannot be less than 1")]
    MaxFile(String),
    /// A `--log-opt` without `=`.
    #[error("invalid log opt {0:?}: KEY=VALUE expected")]
    Syntax(String),
}

/// How a container's output is kept (`--log-driver`, `--log-opt`; docker's
/// `HostConfig.LogConfig`), as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfig {
    /// One of [`DRIVERS`].
    pub driver: String,
    /// Its options as given (`max-size`, `max-file`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opts: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            driver: DRIVERS[0].to_string(),
            opts: BTreeMap::new(),
        }
    }
}

/// When the writer rotates the log, from a [`LogConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds this many bytes; None: never.
    pub max_size: Option<u64>,
    /// Files kept in all, the one being written included (at least 1).
    pub max_files: u32,
}

/// The cap of a container whose log has no options: docker's `local` driver defaults (20 MB
/// in 5 files). docker's json-file has no cap by default; one noisy container could fill the
/// disk here as there.
pub const DEFAULT_ROTATION: Rotation = Rotation {
    max_size: Some(20_000_000),
    max_files: 5,
};

impl LogConfig {
    /// Checks a driver (None: json-file) and its options.
    pub fn new(
        driver: Option<&str>,
        opts: BTreeMap<String, String>,
    ) -> Result<LogConfig, LogConfigError> {
        let config = LogConfig {
            driver: driver.unwrap_or(DRIVERS[0]).to_string(),
            opts,
        };
        config.check()?;
        Ok(config)
    }

    /// Parses `--log-opt KEY=VALUE` values into options.
    pub fn parse_opts(values: &[String]) -> Result<BTreeMap<String, String>, LogConfigError> {
        values
            .iter()
            .map(|v| {
                v.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| LogConfigError::Syntax(v.clone()))
            })
            .collect()
    }

    /// Checks the driver and options; see [`LogConfig::rotation`].
    pub fn check(&self) -> Result<(), LogConfigError> {
        self.rotation().map(drop)
    }

    /// Whether the monitor writes a log at all (not with `none`).
    pub fn keeps_logs(&self) -> bool {
        self.driver != "none"
    }

    /// The rotation these settings ask for: docker's json-file rules (`max-size` a positive
    /// size in decimal units as docker's `FromHumanSize` reads them, `10m` = 10,000,000
    /// bytes; `max-file` at least 1, default 1), or [`DEFAULT_ROTATION`] when no option is
    /// given (and for `local`, whose defaults they are).
    pub fn rotation(&self) -> Result<Rotation, LogConfigError> {
        if !DRIVERS.contains(&self.driver.as_str()) {
            return Err(LogConfigError::Driver(self.driver.clone()));
        }
        let mut rotation = if self.opts.is_empty() || self.driver == "local" {
            DEFAULT_ROTATION
        } else {
            Rotation {
                max_size: None,
                max_files: 1,
            }
        };
        for (key, value) in &self.opts {
            match key.as_str() {
                "max-size" if self.driver != "none" => {
                    let size = parse_decimal_size(value)
                        .filter(|&n| n > 0)
                        .ok_or_else(|| LogConfigError::MaxSize(value.clone()))?;
                    rotation.max_size = Some(size);
                }
                "max-file" if self.driver != "none" => {
                    rotation.max_files = value
                        .parse::<u32>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| LogConfigError::MaxFile(value.clone()))?;
                }
                _ => {
                    return Err(LogConfigError::Opt {
                        opt: key.clone(),
                        driver: self.driver.clone(),
                    })
                }
            }
        }
        Ok(rotation)
    }

    /// Whether these are the settings of a container that gave none.
    pub fn is_default(&self) -> bool {
        *self == LogConfig::default()
    }
}

/// A size as docker's `units.FromHumanSize` reads it: a decimal number, then an optional unit
/// of powers of 1000 (`k`, `m`, `g`, `t`, `p`, any case, optionally with `i` and `b`).
fn parse_decimal_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1e3),
        'm' => (&t[..t.len() - 1], 1e6),
        'g' => (&t[..t.len() - 1], 1e9),
        't' => (&t[..t.len() - 1], 1e12),
        'p' => (&t[..t.len() - 1], 1e15),
        _ => (t, 1.0),
    };
    let num = num.trim_end();
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let bytes = n * mult;
    // Sizes up to 2^53 are exact in an f64; anything near u64's range is no log size.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (bytes.is_finite() && bytes < 9.0e15).then_some(bytes as u64)
}

/// The `n`th rotated file of the log at `path` (`container.log.n`).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends records to a log file, rotating it as asked; or, for a container whose log driver
/// is `none`, keeps nothing.
#[derive(Debug)]
pub struct LogWriter {
    /// None: records are dropped (`--log-driver none`).
    file: Option<File>,
    path: PathBuf,
    /// Bytes in the current file.
    size: u64,
    rotation: Rotation,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending, creating) the log file; it is never rotated.
    pub fn open(path: &Path) -> std::io::Result<LogWriter> {
        let unbounded = Rotation {
            max_size: None,
            max_files: 1,
        };
        LogWriter::open_rotated(path, unbounded)
    }

    /// Opens (appending, creating) the log file, rotated by `rotation`.
    pub fn open_rotated(path: &Path, rotation: Rotation) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogWriter {
            size: file.metadata()?.len(),
            file: Some(file),
            path: path.to_path_buf(),
            rotation,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// A writer that keeps nothing (`--log-driver none`).
    pub fn discard() -> LogWriter {
        LogWriter {
            file: None,
            path: PathBuf::new(),
            size: 0,
            rotation: Rotation {
                max_size: None,
                max_files: 1,
            },
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// The writer `config` asks for, at `path`.
    pub fn for_config(path: &Path, config: &LogConfig) -> std::io::Result<LogWriter> {
        if !config.keeps_logs() {
            return Ok(LogWriter::discard());
        }
        let rotation = config
            .rotation()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        LogWriter::open_rotated(path, rotation)
    }

    /// Moves the full file aside (`.1`, older ones one further, the oldest beyond
    /// `max_files` dropped) and starts an empty one. Readers that follow the log see the
    /// path turn into a new file.
    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.rotation.max_files.saturating_sub(1);
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = 0;
        Ok(())
    }

    /// Adds output of one stream.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let idx = stream as usize;
        self.partial[idx].extend_from_slice(data);
        while let Some(pos) = self.partial[idx].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial[idx].drain(..=pos).collect();
            self.emit(stream, &line)?;
        }
        if self.partial[idx].len() > MAX_PARTIAL {
            let line = std::mem::take(&mut self.partial[idx]);
            self.emit(stream, &line)?;
        }
        Ok(())
    }

    /// Writes whatever partial line a stream still holds (at its end).
    pub fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.partial[stream as usize]);
        if !line.is_empty() {
            self.emit(stream, &line)?;
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        // docker's json-file rule: a file that reached max-size is rotated before the next
        // line, so a file ends at most one line past it.
        if self.rotation.max_size.is_some_and(|max| self.size >= max) {
            self.rotate()?;
        }
        let rec = Record {
            time: Utc::now(),
            stream,
            log: String::from_utf8_lossy(line).into_owned(),
        };
        let mut text = serde_json::to_string(&rec).map_err(std::io::Error::other)?;
        text.push('\n');
        if let Some(file) = self.file.as_mut() {
            if let Err(e) = file.write_all(text.as_bytes()) {
                // A line cut short (the disk filled) would glue itself to the next one, and
                // readers skip the damaged line: the next record would go with it. Take the
                // piece back so the file holds whole lines only.
                let _ = file.set_len(self.size);
                return Err(e);
            }
            self.size += text.len() as u64;
        }
        Ok(())
    }
}

/// Reads a log from `offset`, returning the complete records and the offset after the last one
/// (a line still being written is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        // A damaged line (e.g. the disk filled) is skipped rather than ending the read.
        if let Ok(rec) = serde_json::from_str::<Record>(&line) {
            out.push(rec);
        }
    }
    Ok((out, pos))
}

/// Reads a log as it grows through one open descriptor, so that lines written before the
/// file went away (an `--rm` container's directory leaves with it when it exits) are still
/// read: what `logs -f` needs when its client reads the stream only after the removal.
///
/// The first read starts with the rotated files, oldest first; at the end of the current
/// file, a new file at the path (the writer rotated) is followed from its start.
#[derive(Debug)]
pub struct LogFollower {
    path: std::path::PathBuf,
    file: Option<BufReader<File>>,
    /// Device and inode of `file`, to notice a rotation.
    id: (u64, u64),
    /// A line still being written.
    partial: String,
}

impl LogFollower {
    /// Follows the log at `path` (which need not exist yet: a created container has none).
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            file: None,
            id: (0, 0),
            partial: String::new(),
        }
    }

    /// Opens the file at the path now; false when there is none.
    fn reopen(&mut self) -> std::io::Result<bool> {
        match File::open(&self.path) {
            Ok(f) => {
                let m = f.metadata()?;
                self.id = (m.dev(), m.ino());
                self.file = Some(BufReader::new(f));
                self.partial.clear();
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the path names another file than the one open (the writer rotated).
    fn rotated_away(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) != self.id)
    }

    /// The complete records added since the last call (all of them at the first, the rotated
    /// files' first).
    pub fn read(&mut self) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        if self.file.is_none() {
            // The current file first: a rotation from here on shows as a new file at the
            // path, not as lines missed between the rotated files and this one.
            if !self.reopen()? {
                return Ok(out);
            }
            let mut older = Vec::new();
            let mut n = 1;
            while let Ok(text) = std::fs::read_to_string(rotated(&self.path, n)) {
                older.push(text);
                n += 1;
            }
            for text in older.iter().rev() {
                out.extend(
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<Record>(l).ok()),
                );
            }
        }
        loop {
            let Some(reader) = self.file.as_mut() else {
                return Ok(out);
            };
            if reader.read_line(&mut self.partial)? == 0 {
                if !self.rotated_away() {
                    return Ok(out);
                }
                // The writer has left this file: what it wrote there since the read above
                // comes before the new file's lines.
                let mut rest = std::mem::take(&mut self.partial);
                if let Some(reader) = self.file.as_mut() {
                    reader.read_to_string(&mut rest)?;
                }
                out.extend(
                    rest.lines()
                        .filter_map(|l| serde_json::from_str::<Record>(l).ok()),
                );
                if !self.reopen()? {
                    return Ok(out);
                }
                continue;
            }
            if !self.partial.ends_with('\n') {
                return Ok(out);
            }
            // A damaged line is skipped, as in `read_from`.
            if let Ok(rec) = serde_json::from_str::<Record>(&self.partial) {
                out.push(rec);
            }
            self.partial.clear();
        }
    }
}

/// The last `n` records of a list.
pub fn tail(records: Vec<Record>, n: Option<usize>) -> Vec<Record> {
    match n {
        Some(n) if n < records.len() => records[records.len() - n..].to_vec(),
        _ => records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_reads_what_was_written_before_the_file_went_away() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut f = LogFollower::new(&path);
        assert!(f.read().unwrap().is_empty(), "no file yet");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        assert_eq!(f.read().unwrap().len(), 1);
        w.write(Stream::Stdout, b"o\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        let recs = f.read().unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].log, "two\n");
        assert!(f.read().unwrap().is_empty());
    }

    #[test]
    fn lines_are_split_per_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\nthree").unwrap();
        w.flush_stream(Stream::Stdout).unwrap();
        let (recs, end) = read_from(&path, 0).unwrap();
        let got: Vec<_> = recs.iter().map(|r| (r.stream, r.log.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, "one\n"),
                (Stream::Stderr, "err\n"),
                (Stream::Stdout, "two\n"),
                (Stream::Stdout, "three")
            ]
        );
        assert_eq!(tail(recs, Some(1))[0].log, "three");
        // Reading again from the end yields nothing new.
        assert!(read_from(&path, end).unwrap().0.is_empty());
        w.write(Stream::Stdout, b"four\n").unwrap();
        assert_eq!(read_from(&path, end).unwrap().0[0].log, "four\n");
    }

    #[test]
    fn long_partial_lines_are_flushed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_PARTIAL + 1])
            .unwrap();
        assert_eq!(read_from(&path, 0).unwrap().0.len(), 1);
    }

    fn lines(recs: &[Record]) -> Vec<&str> {
        recs.iter().map(|r| r.log.trim_end()).collect()
    }

    #[test]
    fn the_log_rotates_as_dockers_json_file_and_reads_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("container.log");
        let rotation = Rotation {
            max_size: Some(1),
            max_files: 3,
        };
        let mut w = LogWriter::open_rotated(&path, rotation).unwrap();
        let mut follower = LogFollower::new(&path);
        w.write(Stream::Stdout, b"1\n").unwrap();
        assert_eq!(lines(&follower.read().unwrap()), ["1"]);
        // Every line fills a file: each next one rotates first.
        w.write(Stream::Stdout, b"2\n3\n4\n").unwrap();
        assert!(rotated(&path, 2).exists() && !rotated(&path, 3).exists());
        // A reader from the start sees the 3 files kept, oldest first.
        assert_eq!(
            lines(&LogFollower::new(&path).read().unwrap()),
            ["2", "3", "4"]
        );
        // One that followed along only misses what went by in a file it never saw.
        assert_eq!(lines(&follower.read().unwrap()), ["4"]);
        w.write(Stream::Stderr, b"5\n").unwrap();
        assert_eq!(lines(&follower.read().unwrap()), ["5"]);
    }

    #[test]
    fn one_file_is_replaced_and_none_keeps_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("container.log");
        let rotation = Rotation {
            max_size: Some(10),
            max_files: 1,
        };
        let mut w = LogWriter::open_rotated(&path, rotation).unwrap();
        w.write(Stream::Stdout, b"first line\nsecond\n").unwrap();
        assert!(!rotated(&path, 1).exists());
        assert_eq!(lines(&LogFollower::new(&path).read().unwrap()), ["second"]);
        let none = LogConfig::new(Some("none"), BTreeMap::new()).unwrap();
        let other = tmp.path().join("none.log");
        let mut w = LogWriter::for_config(&other, &none).unwrap();
        w.write(Stream::Stdout, b"x\n").unwrap();
        assert!(!other.exists());
    }

    #[test]
    fn log_options_follow_docker() {
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let r = |d: Option<&str>, kv: &[(&str, &str)]| LogConfig::new(d, opts(kv))?.rotation();
        assert_eq!(r(None, &[]).unwrap(), DEFAULT_ROTATION);
        assert_eq!(
            r(None, &[("max-size", "10m"), ("max-file", "3")]).unwrap(),
            Rotation {
                max_size: Some(10_000_000),
                max_files: 3
            }
        );
        assert_eq!(
            r(None, &[("max-file", "3")]).unwrap().max_size,
            None,
            "json-file rotates only with max-size"
        );
        assert_eq!(
            r(Some("local"), &[("max-size", "1.5k")]).unwrap(),
            Rotation {
                max_size: Some(1500),
                max_files: 5
            }
        );
        assert_eq!(
            r(None, &[("max-size", "2KiB")]).unwrap().max_size,
            Some(2000)
        );
        let err = |d: Option<&str>, kv: &[(&str, &str)]| r(d, kv).unwrap_err().to_string();
        assert!(err(Some("syslog"), &[]).contains("log driver \"syslog\" is not supported"));
        assert!(err(None, &[("max-size", "0")]).contains("max-size must be a positive size"));
        assert!(err(None, &[("max-size", "ten")]).contains("max-size"));
        assert!(err(None, &[("max-file", "0")]).contains("max-file cannot be less than 1"));
        assert!(err(None, &[("compress", "true")])
            .starts_with("unknown log opt 'compress' for json-file log driver"));
        assert!(err(Some("none"), &[("max-size", "1m")]).contains("for none log driver"));
        assert!(LogConfig::parse_opts(&["max-size".into()]).is_err());
    }

    #[test]
    fn missing_log_reads_empty() {
        assert!(read_from(Path::new("/nonexistent/log"), 0)
            .unwrap()
            .0
            .is_empty());
    }
}
