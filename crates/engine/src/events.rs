//! `GET /events`: the runtime's event journal ([`runtime::events`]) in docker's shape, replayed
//! from `since` and followed until `until` or until the client goes away.

use hyper::StatusCode;
use runtime::events::{Event, EventFilter, Journal, POLL};

use crate::error::ApiError;
use crate::http::{self, Answer, Req};
use crate::Engine;

/// `GET /events?since=&until=&filters=`.
pub fn events(engine: &Engine, req: &Req) -> Answer {
    let now = runtime::events::now_nano();
    let time = |key: &str| {
        runtime::events::parse_time(req.q(key).unwrap_or(""), now)
            .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))
    };
    let (since, until) = (time("since")?, time("until")?);
    let filter = match req.q("filters").filter(|f| !f.is_empty()) {
        Some(f) => EventFilter::from_json(f).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => EventFilter::default(),
    };
    let mut watch = Journal::new(engine.runtime().root())
        .watch(since, until, filter)
        .map_err(|e| ApiError::internal(format!("read the event journal: {e}")))?;
    let (response, tx) = http::channel(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        loop {
            let batch = match watch.next_batch() {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("follow the event journal: {e}");
                    return;
                }
            };
            for e in &batch {
                if tx.send(line(e)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(response)
}

/// One event as docker's JSON line.
fn line(e: &Event) -> bytes::Bytes {
    let mut s = e.to_docker().to_string();
    s.push('\n');
    bytes::Bytes::from(s)
}
