//! The container log: the main process's stdout and stderr, one JSON object per line
//! (`{"time":…,"stream":"stdout","log":"text\n"}`, docker's json-file layout), written by the
//! monitor and read by `container logs`.
//!
//! Output is cut into lines per stream so that `logs -n N` can count lines; a partial line is
//! written when it grows past [`MAX_PARTIAL`] or when the stream ends.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

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

/// Appends records to a log file.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending, creating) the log file.
    pub fn open(path: &Path) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogWriter {
            file,
            partial: [Vec::new(), Vec::new()],
        })
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
        let rec = Record {
            time: Utc::now(),
            stream,
            log: String::from_utf8_lossy(line).into_owned(),
        };
        let mut text = serde_json::to_string(&rec).map_err(std::io::Error::other)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())
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
#[derive(Debug)]
pub struct LogFollower {
    path: std::path::PathBuf,
    file: Option<BufReader<File>>,
    /// A line still being written.
    partial: String,
}

impl LogFollower {
    /// Follows the log at `path` (which need not exist yet: a created container has none).
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            file: None,
            partial: String::new(),
        }
    }

    /// The complete records added since the last call (all of them at the first).
    pub fn read(&mut self) -> std::io::Result<Vec<Record>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(BufReader::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::new();
        let Some(reader) = self.file.as_mut() else {
            return Ok(out);
        };
        loop {
            if reader.read_line(&mut self.partial)? == 0 || !self.partial.ends_with('\n') {
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

    #[test]
    fn missing_log_reads_empty() {
        assert!(read_from(Path::new("/nonexistent/log"), 0)
            .unwrap()
            .0
            .is_empty());
    }
}
