//! `--format` with docker's Go templates ([`gotmpl`]): `inspect -f` renders a template over each
//! object's JSON document, one line per object; `list --format` takes `table`, `json`, a
//! template, or `table TEMPLATE` (a header row and aligned columns, as `docker ps` prints).

use std::io::Write;

use anyhow::anyhow;
use serde_json::Value;

/// Parses a template; a bad one is an error naming the problem in Go's words.
pub fn template(text: &str) -> anyhow::Result<gotmpl::Template> {
    gotmpl::Template::parse(text).map_err(|e| anyhow!("template parsing error: {e}"))
}

fn render(t: &gotmpl::Template, doc: &Value) -> anyhow::Result<String> {
    t.render(doc)
        .map_err(|e| anyhow!("template parsing error: {e}"))
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// What an `inspect` verb prints: without a format (or with `json`, or an empty one, as docker
/// takes it) the documents as a JSON array; with a template, each document rendered and followed by a newline, as docker does.
/// Every document is rendered before anything is printed, so a failing template prints
/// nothing but its error.
pub fn print_inspect(docs: &[Value], format: Option<&str>) -> anyhow::Result<()> {
    match format {
        None | Some("json") => write_stdout(&format!("{}\n", serde_json::to_string_pretty(docs)?)),
        Some(text) => {
            let t = template(text)?;
            let mut out = String::new();
            for doc in docs {
                out.push_str(&render(&t, doc)?);
                out.push('\n');
            }
            write_stdout(&out)
        }
    }
}

/// `--format` of `container list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFormat {
    /// The built-in table.
    Table,
    /// A JSON array.
    Json,
    /// A Go template per row; with `table`, a header row and columns aligned at tabs.
    Template {
        /// The template, `\t` and `\n` written as such turned into a tab and a newline (docker
        /// does, so that a shell's double quotes can carry them).
        text: String,
        /// `table TEMPLATE`.
        table: bool,
    },
}

impl std::str::FromStr for ListFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ListFormat, String> {
        let (table, rest) = match s.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let text = rest
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        Ok(match (table, text.is_empty()) {
            (true, true) => ListFormat::Table,
            (false, _) if s == "json" => ListFormat::Json,
            (false, true) => return Err("empty format (use table, json or a template)".into()),
            (table, false) => ListFormat::Template { text, table },
        })
    }
}

/// Renders one row per document; with `header` (for `table TEMPLATE`) a header row first,
/// rendered from the header's document, and the columns aligned.
pub fn print_rows(text: &str, rows: &[Value], header: Option<&Value>) -> anyhow::Result<()> {
    let t = template(text)?;
    let mut out = String::new();
    for doc in header.into_iter().chain(rows) {
        out.push_str(&render(&t, doc)?);
        out.push('\n');
    }
    if header.is_some() {
        out = align(&out);
    }
    write_stdout(&out)
}

/// Aligns tab-separated cells into columns as docker's table output does (Go's tabwriter with
/// a minimum width of 10 and 3 spaces of padding); what follows a line's last tab is not a
/// cell and is left as it is.
fn align(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (cell.chars().count() + PADDING).max(MIN_WIDTH);
            match widths.get_mut(i) {
                Some(have) => *have = (*have).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// docker's "how long ago" wording (`Up 5 minutes`, `Exited (0) 2 hours ago`).
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    // Hours round to the nearest one, as docker's do.
    let hours = (d.num_seconds() + 1800) / 3600;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", d.num_hours() / 24 / 365),
    }
}

/// `s` cut to `width` characters, the last one an ellipsis when cut.
pub fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_formats() {
        assert_eq!("table".parse(), Ok(ListFormat::Table));
        assert_eq!("json".parse(), Ok(ListFormat::Json));
        assert_eq!(
            r"table {{.ID}}\t{{.Names}}".parse(),
            Ok(ListFormat::Template {
                text: "{{.ID}}\t{{.Names}}".into(),
                table: true
            })
        );
        assert_eq!(
            "{{.Names}}".parse(),
            Ok(ListFormat::Template {
                text: "{{.Names}}".into(),
                table: false
            })
        );
        assert!("".parse::<ListFormat>().is_err());
    }

    #[test]
    fn tables_align_like_docker() {
        let got = align("CONTAINER ID\tNAMES\nabc\tweb\n0123456789abcdef\tx\n");
        assert_eq!(
            got,
            "CONTAINER ID       NAMES\nabc                web\n0123456789abcdef   x\n"
        );
        assert_eq!(align("a\tb\n"), "a         b\n");
    }

    #[test]
    fn durations_and_ellipses() {
        let d = |s: i64| human_duration(chrono::Duration::seconds(s));
        assert_eq!(d(0), "Less than a second");
        assert_eq!(d(1), "1 second");
        assert_eq!(d(59), "59 seconds");
        assert_eq!(d(60), "About a minute");
        assert_eq!(d(45 * 60), "45 minutes");
        assert_eq!(d(3600), "About an hour");
        assert_eq!(d(5 * 3600), "5 hours");
        assert_eq!(d(3 * 86400), "3 days");
        assert_eq!(d(21 * 86400), "3 weeks");
        assert_eq!(d(90 * 86400), "3 months");
        assert_eq!(d(3 * 365 * 86400), "3 years");
        assert_eq!(
            ellipsis("sh -c 'sleep 1000; echo'", 20),
            "sh -c 'sleep 1000; …"
        );
        assert_eq!(ellipsis("short", 20), "short");
    }

    #[test]
    fn rows_render_and_errors_name_the_template() {
        let t = template("{{.A}}").unwrap();
        assert_eq!(render(&t, &json!({"A": 1})).unwrap(), "1");
        let e = template("{{nope}}").unwrap_err().to_string();
        assert_eq!(
            e,
            r#"template parsing error: template: :1: function "nope" not defined"#
        );
    }
}
