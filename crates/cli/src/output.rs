//! Output shared by the object commands (`network`, `volume`): list in the three formats,
//! JSON arrays or Go templates for inspect, per-name verbs that go on past a failure, and the one way sizes
//! are read from flags and printed.

use clap::Args;
use serde::Serialize;

use crate::global::Format;

/// Flags of a `list` verb.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only print names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only list what matches KEY=VALUE (repeatable; same keys ORed, others ANDed): volumes
    /// take label=KEY[=VALUE], name=, dangling=true|false, driver=; networks label=, name=,
    /// id=.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// The names a `delete` verb acts on.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// The arguments of an `inspect` verb.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Go template rendered over each object's JSON document, one line each; `json` (the
    /// default) prints the JSON array.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

impl InspectArgs {
    /// Prints `items` as the format asks.
    pub fn print<T: Serialize>(&self, items: &[T]) -> anyhow::Result<()> {
        let docs = items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        crate::format::print_inspect(&docs, self.format.as_deref())
    }
}

/// Prints `items` as a pretty JSON array.
pub fn json<T: Serialize>(items: &[T]) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(items)?);
    Ok(())
}

/// How one kind of object is listed.
pub struct Listing<'a, T> {
    /// The table's header line.
    pub header: String,
    /// The object's name (what `-q` prints).
    pub name: &'a dyn Fn(&T) -> &str,
    /// One table row.
    pub row: &'a dyn Fn(&T) -> String,
}

impl<T: Serialize> Listing<'_, T> {
    /// Prints `items`: names only with `quiet`, else a JSON array or a table.
    pub fn print(&self, items: &[T], format: Format, quiet: bool) -> anyhow::Result<()> {
        if quiet {
            for i in items {
                println!("{}", (self.name)(i));
            }
        } else if format == Format::Json {
            json(items)?;
        } else {
            println!("{}", self.header);
            for i in items {
                println!("{}", (self.row)(i));
            }
        }
        Ok(())
    }
}

/// Applies `verb` to every name, printing the names it succeeded on (as docker does); the
/// failures are reported together at the end, so one bad name does not stop the others.
pub fn each_name(
    names: &[String],
    mut verb: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for name in names {
        match verb(name) {
            Ok(()) => println!("{name}"),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// 1536 → "1.5 KiB".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Parses a byte count: a number with an optional K/M/G/T suffix (powers of 1024, any case,
/// optionally followed by B as in `128mb`); a plain number is bytes (docker's rule).
pub fn parse_size(s: &str) -> Result<u64, String> {
    runtime::size::parse(s)
}

#[cfg(test)]
mod tests {
    use super::{human_size, parse_size};

    #[test]
    fn sizes_read_and_print() {
        // The rules themselves are `runtime::size`'s (tested there).
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert!(parse_size("12Q").is_err());
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(100), "100 B");
    }
}

/// docker's sizes (go-units `HumanSizeWithPrecision`): powers of 1000, units B kB MB GB TB,
/// `precision` significant digits without trailing zeros (Go's `%.*g`): 1234567 → "1.235MB".
pub fn go_human_size(n: u64, precision: usize) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // Integer digits of v, which is below 1000 here.
    let digits = match v {
        v if v >= 100.0 => 3,
        v if v >= 10.0 => 2,
        _ => 1,
    };
    let decimals = precision.saturating_sub(digits);
    let mut text = format!("{v:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[i])
}

/// Rows aligned as Go's `tabwriter` with `minwidth` and `padding` aligns tab-separated cells
/// (what docker's `top` and `history` print): every column but the last is padded to its
/// widest cell plus `padding`, and at least `minwidth`.
pub fn tab_aligned(rows: &[Vec<String>], minwidth: usize, padding: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + padding).max(minwidth));
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod go_format_tests {
    use super::*;

    #[test]
    fn docker_sizes() {
        assert_eq!(go_human_size(0, 4), "0B");
        assert_eq!(go_human_size(999, 4), "999B");
        assert_eq!(go_human_size(1500, 4), "1.5kB");
        assert_eq!(go_human_size(1_234_567, 4), "1.235MB");
        assert_eq!(go_human_size(4_400_000, 3), "4.4MB");
        assert_eq!(go_human_size(12_000, 3), "12kB");
    }

    #[test]
    fn tab_alignment() {
        let rows = vec![
            vec!["UID".to_string(), "PID".to_string(), "CMD".to_string()],
            vec!["root".to_string(), "1".to_string(), "sleep 9".to_string()],
        ];
        assert_eq!(
            tab_aligned(&rows, 5, 3),
            "UID    PID   CMD\nroot   1     sleep 9\n"
        );
    }
}
