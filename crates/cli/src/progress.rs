//! Per-blob progress for pull and push on stderr: bars when it is a terminal (`--progress
//! auto`, the default), a line per blob event otherwise asked for (`plain`), or nothing
//! (`none`, `-q`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci::{BlobOutcome, Digest, Progress};

/// indicatif bars, one per blob.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    verb: &'static str,
}

/// `--progress`: Apple's (and buildx's) choice of progress output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, nothing otherwise.
    #[default]
    Auto,
    /// One line per blob started and finished, terminal or not.
    Plain,
    /// Nothing.
    None,
}

impl ProgressMode {
    /// The sink for this mode (`quiet` wins: `-q` is `none`).
    pub fn sink(self, quiet: bool, verb: &'static str) -> Option<Arc<dyn Progress>> {
        match (self, quiet) {
            (_, true) | (ProgressMode::None, _) => None,
            (ProgressMode::Auto, false) => Bars::for_terminal(false, verb),
            (ProgressMode::Plain, false) => Some(Arc::new(Plain { verb })),
        }
    }
}

/// Lines on stderr: `<digest> pulling 1.2 MiB`, then `<digest> done` (or `exists`).
struct Plain {
    verb: &'static str,
}

impl Progress for Plain {
    fn start(&self, digest: &Digest, size: u64) {
        eprintln!(
            "{} {} {}",
            digest.short(),
            self.verb,
            crate::output::human_size(size)
        );
    }

    fn advance(&self, _digest: &Digest, _bytes: u64) {}

    fn finish(&self, digest: &Digest, outcome: BlobOutcome) {
        let word = match outcome {
            BlobOutcome::Transferred => "done",
            BlobOutcome::Skipped => "exists",
        };
        eprintln!("{} {word}", digest.short());
    }
}

impl Bars {
    /// Bars if stderr is a terminal and not `quiet`, else nothing.
    pub fn for_terminal(quiet: bool, verb: &'static str) -> Option<Arc<dyn Progress>> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            verb,
        }))
    }
}

impl Progress for Bars {
    fn start(&self, digest: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template(
            "{prefix} {msg:12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(digest.short().to_string());
        bar.set_message(self.verb);
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(digest.clone(), bar);
        }
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(digest).cloned()) {
            bar.inc(bytes);
        }
    }

    fn finish(&self, digest: &Digest, outcome: BlobOutcome) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(digest).cloned()) {
            bar.set_position(bar.length().unwrap_or(0));
            bar.finish_with_message(match outcome {
                BlobOutcome::Transferred => "done",
                BlobOutcome::Skipped => "exists",
            });
        }
    }
}
