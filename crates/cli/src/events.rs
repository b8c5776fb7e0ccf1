//! `container events` (also `system events`): the event journal ([`runtime::events`]) as
//! docker prints it, replayed from `--since` and followed until `--until` or Ctrl-C.

use std::io::Write;

use anyhow::{anyhow, Result};
use clap::Args;

use runtime::events::{Event, EventFilter, Journal, POLL};

use crate::global::GlobalOptions;

/// Arguments of `container events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show events since this time: Unix seconds, an RFC 3339 date, a date, or a duration
    /// back from now (`10m`).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms as --since); without it, follow until interrupted.
    #[arg(long)]
    until: Option<String>,
    /// Only events that pass: container=, event=, image=, label=, network=, type=,
    /// volume=, scope= (repeatable).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// `json` (one object per line) or a Go template over docker's event shape
    /// (`{{.Type}} {{.Action}} {{.Actor.Attributes.name}}`).
    #[arg(long)]
    format: Option<String>,
}

/// Runs `container events`.
pub fn events(global: &GlobalOptions, a: EventsArgs) -> Result<()> {
    let now = runtime::events::now_nano();
    let time = |flag: &str, v: &Option<String>| {
        runtime::events::parse_time(v.as_deref().unwrap_or(""), now)
            .map_err(|e| anyhow!("invalid --{flag}: {e}"))
    };
    let (since, until) = (time("since", &a.since)?, time("until", &a.until)?);
    let filter = EventFilter::parse(&a.filter)?;
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(t) => Some(crate::format::template(t)?),
    };
    let json = a.format.as_deref() == Some("json");
    let show = |e: &Event| -> Result<()> {
        let text = match &template {
            Some(t) => t
                .render(&e.to_docker())
                .map_err(|err| anyhow!("template parsing error: {err}"))?,
            None if json => e.to_docker().to_string(),
            None => e.to_line(),
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            // `| head` closed the pipe: done.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => Ok(r?),
        }
    };
    let mut watch = Journal::new(&global.root_dir()).watch(since, until, filter)?;
    while let Some(batch) = watch.next_batch()? {
        for e in &batch {
            show(e)?;
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}
