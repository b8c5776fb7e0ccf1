//! Output shared by the object commands (`network`, `volume`): list in the three formats,
//! JSON arrays for inspect, and per-name verbs that go on past a failure.

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
}

/// The names an `inspect` or `delete` verb acts on.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Names.
    #[arg(required = true)]
    pub names: Vec<String>,
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
