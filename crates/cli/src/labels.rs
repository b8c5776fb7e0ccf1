//! `--label/-l` and `--label-file`, the metadata flags of `run`/`create`, `volume create` and
//! `network create`; read by the runtime's parser (`runtime::labels`), which every front end
//! shares.

use std::path::PathBuf;

use clap::Args;
use runtime::labels::Labels;

/// Labels of a new container, volume or network.
#[derive(Debug, Args)]
pub struct LabelFlags {
    /// Set a label: KEY=VALUE, or KEY for an empty value (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = check_label)]
    pub label: Vec<String>,
    /// Read labels from a file: one KEY=VALUE per line, `#` comments and blank lines ignored
    /// (repeatable; --label wins over the files).
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
}

impl LabelFlags {
    /// The labels: the files' in order, then the flags'.
    pub fn labels(&self) -> anyhow::Result<Labels> {
        Ok(runtime::labels::collect(&self.label_file, &self.label)?)
    }
}

fn check_label(s: &str) -> Result<String, String> {
    runtime::labels::parse_label(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
