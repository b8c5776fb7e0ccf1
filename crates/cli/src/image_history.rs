//! `container image history`: docker's table of an image's build steps (columns IMAGE,
//! CREATED, CREATED BY, SIZE, COMMENT; docker/cli `cli/command/image/history.go` and
//! `formatter/history.go`), over `runtime::image_history`.

use clap::Args;
use runtime::image_history::{HistoryItem, MISSING};
use serde_json::{json, Value};

use crate::format::{ellipsis, human_duration, ListFormat};
use crate::global::GlobalOptions;

/// Arguments of `image history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image (name or name@digest).
    pub image: String,
    /// Print sizes and dates in human-readable form (`-H=false`: bytes and RFC 3339 times).
    #[arg(
        short = 'H',
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub human: bool,
    /// Don't truncate output (full image ids and commands).
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table, json (the Engine API's items), a Go template over docker's
    /// fields (`{{.ID}}`, `{{.CreatedSince}}`, `{{.CreatedAt}}`, `{{.CreatedBy}}`,
    /// `{{.Size}}`, `{{.Comment}}`), or `table TEMPLATE`.
    #[arg(long, default_value = "table", value_name = "FORMAT")]
    pub format: ListFormat,
}

/// `container image history`.
pub fn history(global: &GlobalOptions, a: HistoryArgs) -> anyhow::Result<()> {
    let items = global.runtime()?.image_history(&a.image)?;
    let now = chrono::Utc::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|h| fields(h, a.human, !a.no_trunc, now))
        .collect();
    if a.quiet {
        let ids: String = rows
            .iter()
            .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default()))
            .collect();
        return crate::format::write_stdout(&ids);
    }
    match &a.format {
        ListFormat::Json => {
            crate::format::write_stdout(&format!("{}\n", serde_json::to_string_pretty(&items)?))
        }
        ListFormat::Template { text, table } => {
            crate::format::print_rows(text, &rows, table.then(headers).as_ref())
        }
        ListFormat::Table => {
            let created = if a.human { "CreatedSince" } else { "CreatedAt" };
            let text =
                format!("{{{{.ID}}}}\t{{{{.{created}}}}}\t{{{{.CreatedBy}}}}\t{{{{.Size}}}}\t{{{{.Comment}}}}");
            crate::format::print_rows(&text, &rows, Some(&headers()))
        }
    }
}

/// The fields of one step as docker's history formatter shows them.
fn fields(h: &HistoryItem, human: bool, trunc: bool, now: chrono::DateTime<chrono::Utc>) -> Value {
    let id = if trunc && h.id != MISSING {
        let hex = h.id.strip_prefix("sha256:").unwrap_or(&h.id);
        hex.chars().take(12).collect()
    } else {
        h.id.clone()
    };
    // docker shows Go's zero time for a step without one; "N/A" says the same plainly.
    let created_at = h.created.map_or_else(
        || "N/A".to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let created_since = match (human, h.created) {
        (true, Some(t)) => format!("{} ago", human_duration(now - t)),
        _ => created_at.clone(),
    };
    let created_by = h.created_by.replace('\t', " ");
    json!({
        "ID": id,
        "CreatedSince": created_since,
        "CreatedAt": created_at,
        "CreatedBy": if trunc { ellipsis(&created_by, 45) } else { created_by },
        "Size": if human { decimal_size(h.size) } else { h.size.to_string() },
        "Comment": h.comment,
    })
}

/// The header row: docker's column titles.
fn headers() -> Value {
    json!({
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    })
}

/// docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units (`B kB MB GB TB PB`), three
/// significant digits, trailing zeros dropped (`0B`, `1.23kB`, `4.26MB`, `123MB`).
fn decimal_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let decimals = match v {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_s() {
        for (n, s) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.23kB"),
            (12_345, "12.3kB"),
            (123_456, "123kB"),
            (4_261_234, "4.26MB"),
            (1_500_000_000, "1.5GB"),
        ] {
            assert_eq!(decimal_size(n), s);
        }
    }

    #[test]
    fn fields_truncate_like_docker() {
        let now = chrono::Utc::now();
        let h = HistoryItem {
            id: format!("sha256:{}", "ab".repeat(32)),
            created: Some(now - chrono::Duration::hours(5)),
            created_by: format!("/bin/sh -c\t{}", "x".repeat(60)),
            tags: Vec::new(),
            size: 4_261_234,
            comment: "c".into(),
        };
        let f = fields(&h, true, true, now);
        assert_eq!(f["ID"], "abababababab");
        assert_eq!(f["CreatedSince"], "5 hours ago");
        assert_eq!(f["Size"], "4.26MB");
        let by = f["CreatedBy"].as_str().unwrap();
        assert!(by.starts_with("/bin/sh -c x") && by.ends_with('…'));
        assert_eq!(by.chars().count(), 45);
        let f = fields(&h, false, false, now);
        assert_eq!(f["ID"], h.id);
        assert_eq!(f["Size"], "4261234");
        assert_eq!(f["CreatedSince"], f["CreatedAt"]);
        assert!(f["CreatedAt"].as_str().unwrap().ends_with('Z'));
        let missing = HistoryItem {
            id: MISSING.into(),
            created: None,
            ..h
        };
        assert_eq!(fields(&missing, true, true, now)["ID"], "<missing>");
        assert_eq!(fields(&missing, true, true, now)["CreatedSince"], "N/A");
    }
}
