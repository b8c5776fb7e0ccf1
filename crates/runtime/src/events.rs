//! The event journal: what happened to containers, images, networks and volumes, in order
//! (docker's `/events`, `container system events`).
//!
//! There is no daemon to keep events in memory, so they go to a file every process appends
//! to: the CLI for what it does (create, destroy, pull, tag, …), each container's monitor for
//! what happens to its container (start, die, health status, …). One event is one JSON line
//! written with one `write(2)` on an `O_APPEND` descriptor, which Linux keeps whole and in
//! order between writers on a local filesystem. Readers replay the file for `since` and then
//! follow it for new lines (a poll: events are rare, a reader costs one `fstat` per tick).
//!
//! The journal is bounded: past [`ROTATE_AT`] bytes the file is renamed to `events.jsonl.1`
//! (replacing the previous one) under a lock, so history covers the last one or two files —
//! thousands of events, more than the 1000 docker keeps. Journal faults never fail the
//! operation they describe: an event that cannot be written is logged and dropped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::ContainerRecord;

/// Size past which the journal file is rotated.
pub const ROTATE_AT: u64 = 1 << 20;

/// Events longer than this are not written (one line must stay one atomic `write`; a real
/// event is a few hundred bytes even with many labels).
const MAX_LINE: usize = 64 << 10;

/// What an event is about (docker's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A network.
    Network,
    /// A volume.
    Volume,
}

impl Kind {
    /// docker's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Network => "network",
            Kind::Volume => "volume",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What it is about.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// What happened (`create`, `start`, `die`, `health_status: healthy`, `pull`, …).
    pub action: String,
    /// The object: a container's id, an image's reference or id, a network's or volume's
    /// name.
    pub id: String,
    /// docker's `Actor.Attributes`: name, image, labels, exitCode, signal, …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

impl Event {
    /// An event of now.
    pub fn new(kind: Kind, action: impl Into<String>, id: impl Into<String>) -> Event {
        Event {
            kind,
            action: action.into(),
            id: id.into(),
            attributes: BTreeMap::new(),
            time_nano: now_nano(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Event {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Whether it happened at or before `until` (None: no bound).
    pub fn not_after(&self, until: Option<i64>) -> bool {
        match until {
            Some(u) => self.time_nano <= u,
            None => true,
        }
    }

    /// docker's `events.Message`: `Type`, `Action`, `Actor`, `scope`, `time`, `timeNano`,
    /// and for containers and images the older `status`, `id` and `from` too.
    pub fn to_docker(&self) -> serde_json::Value {
        use serde_json::json;
        let mut v = json!({
            "Type": self.kind.as_str(),
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if matches!(self.kind, Kind::Container | Kind::Image) {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
        }
        if self.kind == Kind::Container {
            if let Some(image) = self.attributes.get("image") {
                v["from"] = json!(image);
            }
        }
        v
    }

    /// docker's line for the terminal: time, type, action, id and attributes
    /// (`2026-12-05T10:00:00.000000000Z container start 3f… (image=busybox, name=web)`).
    pub fn to_line(&self) -> String {
        let t = chrono::DateTime::from_timestamp_nanos(self.time_nano);
        let mut s = format!(
            "{} {} {} {}",
            t.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
            self.kind.as_str(),
            self.action,
            self.id
        );
        if !self.attributes.is_empty() {
            let attrs: Vec<String> = self
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(" ({})", attrs.join(", ")));
        }
        s
    }

    /// A container's event, with the attributes docker gives every one of them: its
    /// labels, `image` and `name`.
    pub fn container(action: impl Into<String>, record: &ContainerRecord) -> Event {
        let mut e = Event::new(Kind::Container, action, &record.id);
        e.attributes = record.config.labels.clone();
        e.attributes
            .insert("image".to_string(), record.image.clone());
        e.attributes.insert("name".to_string(), record.name.clone());
        e
    }
}

/// Records container `id`'s event `action` with its attributes as they are now (a renamed
/// container's events carry its new name), plus `extra`; nothing when the record is gone.
pub fn container_event(
    store: &crate::state::Store,
    id: &str,
    action: &str,
    extra: &[(&str, String)],
) {
    let Ok(record) = store.load(id) else {
        return;
    };
    let mut e = Event::container(action, &record);
    for (k, v) in extra {
        e.attributes.insert((*k).to_string(), v.clone());
    }
    Journal::new(store.root()).record(&e);
}

/// Records an image event of state root `root`. `id` is docker's `Actor.ID`: the reference
/// for `pull` and `push`, the image id (`sha256:…`) for `tag`, `untag` and `delete`; `name` is
/// the reference the event concerns.
pub fn image_event(root: &Path, action: &str, id: &str, name: &str) {
    Journal::new(root).record(&Event::new(Kind::Image, action, id).with("name", name));
}

/// docker's `--since`/`--until` (and the API's `since`/`until`): Unix seconds with optional
/// fractional nanoseconds (what docker clients send), an RFC 3339 date, a date
/// (`2006-01-02`, UTC), or a Go duration counted back from `now` (`10m`); empty is `None`.
/// Nanoseconds since the epoch.
pub fn parse_time(value: &str, now: i64) -> Result<Option<i64>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{v:?} is not a timestamp, date or duration");
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt().map(Some).ok_or_else(bad);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .map(Some)
            .ok_or_else(bad);
    }
    if v.starts_with(|c: char| c.is_ascii_digit()) && v.ends_with(|c: char| c.is_ascii_alphabetic())
    {
        let (negative, nanos) = dockerfile::parse_go_duration(v).map_err(|_| bad())?;
        let nanos = i64::try_from(nanos).map_err(|_| bad())?;
        return Ok(Some(if negative { now + nanos } else { now - nanos }));
    }
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .map(Some)
        .ok_or_else(bad)
}

/// Nanoseconds since the epoch, now.
pub fn now_nano() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The journal of one state root.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal of state root `root` (nothing is touched until the first event).
    pub fn new(root: &Path) -> Journal {
        Journal {
            path: root.join("events.jsonl"),
        }
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self) -> PathBuf {
        self.path.with_extension("jsonl.1")
    }

    /// Appends `event`; a failure is logged, never returned (see the module doc).
    pub fn record(&self, event: &Event) {
        if let Err(e) = self.try_record(event) {
            tracing::warn!(
                "event {} {} not recorded in {}: {e}",
                event.kind.as_str(),
                event.action,
                self.path.display()
            );
        }
    }

    fn try_record(&self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        if line.len() > MAX_LINE {
            return Err(io::Error::other(format!(
                "{} bytes, more than an event may have",
                line.len()
            )));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        if f.metadata()?.len() > ROTATE_AT {
            self.rotate()?;
        }
        Ok(())
    }

    /// Renames a full journal aside; under a lock so that two writers that both see it full
    /// do not rotate twice (which would drop the history just renamed).
    fn rotate(&self) -> io::Result<()> {
        let lock_path = self.path.with_extension("lock");
        let lock = File::create(&lock_path)?;
        fs4::fs_std::FileExt::lock_exclusive(&lock)?;
        if fs::metadata(&self.path)?.len() > ROTATE_AT {
            fs::rename(&self.path, self.rotated())?;
        }
        Ok(())
    }

    /// Events at or after `since` (nanoseconds) in order: the rotated file's, then the
    /// current one's, and a reader positioned at the current file's end that
    /// [`Follower::next_batch`] continues from, so nothing between the two is lost.
    pub fn replay(&self, since: i64) -> io::Result<(Vec<Event>, Follower)> {
        let mut out = Vec::new();
        if let Ok(f) = File::open(self.rotated()) {
            read_lines(BufReader::new(f), &mut |e| {
                if e.time_nano >= since {
                    out.push(e)
                }
            })?;
        }
        let mut follower = Follower::open(&self.path)?;
        for e in follower.next_batch()? {
            if e.time_nano >= since {
                out.push(e);
            }
        }
        Ok((out, follower))
    }
}

/// How often a watcher of the journal should look for new events ([`Watch::next_batch`]).
pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Journal {
    /// What an `events` request sees: the events since `since` (None: from now on, as docker),
    /// then the new ones as they come, until `until` (None: for ever), those `filter` passes.
    pub fn watch(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: EventFilter,
    ) -> io::Result<Watch> {
        let (history, follower) = self.replay(since.unwrap_or_else(now_nano))?;
        Ok(Watch {
            history: Some(history),
            follower,
            until,
            filter,
            ended: false,
        })
    }
}

/// An `events` request's view of the journal (see [`Journal::watch`]).
#[derive(Debug)]
pub struct Watch {
    history: Option<Vec<Event>>,
    follower: Follower,
    until: Option<i64>,
    filter: EventFilter,
    ended: bool,
}

impl Watch {
    /// The next events that pass: the history on the first call, then what was appended
    /// since the last; `None` once `until` has passed and everything before it was given.
    /// Callers wait [`POLL`] between calls.
    pub fn next_batch(&mut self) -> io::Result<Option<Vec<Event>>> {
        if self.ended {
            return Ok(None);
        }
        let batch = match self.history.take() {
            Some(h) => h,
            None => {
                // Whether `until` had passed is decided before the read, so the read still
                // takes what was written up to then.
                self.ended = self.until.is_some_and(|u| now_nano() > u);
                self.follower.next_batch()?
            }
        };
        let until = self.until;
        Ok(Some(
            batch
                .into_iter()
                .filter(|e| self.filter.matches(e) && e.not_after(until))
                .collect(),
        ))
    }
}

/// Parses complete lines; a line that is not an event (torn by a crash, or from a newer
/// version) is skipped.
fn read_lines(mut r: impl BufRead, f: &mut dyn FnMut(Event)) -> io::Result<u64> {
    let mut consumed = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // The end, or a line still being written: left for the next read.
            return Ok(consumed);
        }
        consumed += n as u64;
        if let Ok(e) = serde_json::from_slice::<Event>(&line) {
            f(e);
        }
    }
}

/// Follows the journal file: each [`Follower::next_batch`] returns the events appended since
/// the last, across rotations.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pos: u64,
}

impl Follower {
    fn open(path: &Path) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pos: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    /// Opens the file now at the path, from its start. The first open creates it: a
    /// follower must hold the file it started on, or a rotation before its first read would
    /// hide the events in the rotated file.
    fn reopen(&mut self) -> io::Result<()> {
        let opened = if self.file.is_none() && self.inode == 0 {
            OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)
        } else {
            File::open(&self.path)
        };
        match opened {
            Ok(file) => {
                self.inode = file.metadata()?.ino();
                self.file = Some(file);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.file = None;
                self.inode = 0;
            }
            Err(e) => return Err(e),
        }
        self.pos = 0;
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.pos))?;
        let reader = BufReader::new(Read::by_ref(file));
        self.pos += read_lines(reader, &mut |e| out.push(e))?;
        Ok(())
    }

    /// The events written since the last call (none: empty).
    pub fn next_batch(&mut self) -> io::Result<Vec<Event>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        let now_at_path = match fs::metadata(&self.path) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if now_at_path.is_some() && now_at_path != Some(self.inode) || self.file.is_none() {
            // Rotated (or created): what was appended to the old file before the rename has
            // been read above; the new file is read from its start.
            if now_at_path.is_some() {
                self.reopen()?;
                self.drain(&mut out)?;
            }
        }
        Ok(out)
    }
}

/// docker's event filters (`--filter`, the `filters` parameter of `/events`): terms with
/// different keys must all hold, terms with one key are alternatives — except `label`, whose
/// terms must all hold — as docker 20.10's `daemon/events/filter.go` reads them.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    terms: BTreeMap<&'static str, Vec<String>>,
}

/// The keys event filters take.
const FILTER_KEYS: [&str; 8] = [
    "container",
    "event",
    "image",
    "label",
    "network",
    "scope",
    "type",
    "volume",
];

impl EventFilter {
    /// From keys and values; an unknown key is an error naming it.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<EventFilter, crate::filter::FilterError> {
        let mut f = EventFilter::default();
        for (key, value) in pairs {
            let lower = key.as_ref().trim().to_ascii_lowercase();
            let Some(&key) = FILTER_KEYS.iter().find(|k| **k == lower) else {
                return Err(crate::filter::FilterError::Value {
                    key: lower,
                    value: value.as_ref().to_string(),
                    reason: format!("events can be filtered by {}", FILTER_KEYS.join(", ")),
                });
            };
            f.terms
                .entry(key)
                .or_default()
                .push(value.as_ref().trim().to_string());
        }
        Ok(f)
    }

    /// From `--filter KEY=VALUE` flags.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<EventFilter, crate::filter::FilterError> {
        let pairs = args
            .iter()
            .map(|a| {
                let a = a.as_ref();
                a.split_once('=')
                    .ok_or_else(|| crate::filter::FilterError::Format(a.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        EventFilter::from_pairs(pairs)
    }

    /// From the Engine API's `filters` JSON.
    pub fn from_json(json: &str) -> Result<EventFilter, crate::filter::FilterError> {
        EventFilter::from_pairs(crate::filter::json_pairs(json)?)
    }

    fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        self.terms
            .get(key)
            .is_none_or(|values| values.iter().any(|v| matches(v)))
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.attributes.get(k).map(String::as_str);
        let is = |kind: Kind| e.kind == kind;
        // A name or id, as docker's fuzzy match: exact, or an id prefix.
        let names = |v: &str, id: &str, name: Option<&str>| {
            name == Some(v) || id == v || (!v.is_empty() && id.starts_with(v))
        };
        self.any("type", |v| v == e.kind.as_str())
            && self.any("event", |v| {
                v == e.action || e.action.split(':').next().is_some_and(|a| a == v)
            })
            && self.any("scope", |v| v == "local")
            && self.any("container", |v| match e.kind {
                Kind::Container => names(v, &e.id, attr("name")),
                _ => attr("container").is_some_and(|c| names(v, c, None)),
            })
            && self.any("image", |v| {
                let subject = if is(Kind::Image) {
                    attr("name")
                } else {
                    attr("image")
                };
                let id = if is(Kind::Image) { e.id.as_str() } else { "" };
                image_matches(v, subject) || (is(Kind::Image) && names(v, id, None))
            })
            && self.any("network", |v| {
                is(Kind::Network) && names(v, &e.id, attr("name"))
                    || attr("network").is_some_and(|n| n == v)
            })
            && self.any("volume", |v| {
                is(Kind::Volume) && e.id == v || attr("volume").is_some_and(|n| n == v)
            })
            && self.terms.get("label").is_none_or(|labels| {
                labels.iter().all(|l| match l.split_once('=') {
                    Some((k, want)) => attr(k) == Some(want),
                    None => attr(l).is_some(),
                })
            })
    }
}

/// An `image=` value against a reference: the same name, with or without its tag
/// (`busybox` selects `busybox:latest`, as docker's), normalised or as written.
fn image_matches(value: &str, subject: Option<&str>) -> bool {
    let Some(subject) = subject else {
        return false;
    };
    if value == subject {
        return true;
    }
    let (Ok(v), Ok(s)) = (oci::Reference::parse(value), oci::Reference::parse(subject)) else {
        return false;
    };
    let same_repo = v.registry() == s.registry() && v.repository() == s.repository();
    // A value without a tag or digest selects every tag of its repository.
    let last = value.rsplit('/').next().unwrap_or(value);
    v == s || same_repo && !last.contains([':', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, t: i64) -> Event {
        let mut e = Event::new(Kind::Container, action, "abc");
        e.time_nano = t;
        e
    }

    #[test]
    fn replays_since_and_follows_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        let (old, mut f) = j.replay(0).unwrap();
        assert!(old.is_empty());
        j.record(&ev("create", 10));
        j.record(&ev("start", 20));
        let got: Vec<_> = f.next_batch().unwrap();
        assert_eq!(
            got.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["create", "start"]
        );
        assert!(f.next_batch().unwrap().is_empty());
        let (since, _) = j.replay(15).unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].action, "start");
    }

    #[test]
    fn a_watch_gives_history_then_new_events_and_ends_after_until() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        j.record(&ev("create", 10));
        j.record(&ev("start", 20));
        let only_start = EventFilter::from_pairs([("event", "start")]).unwrap();
        let mut w = j.watch(Some(0), None, only_start).unwrap();
        let first = w.next_batch().unwrap().unwrap();
        assert_eq!(
            first.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["start"]
        );
        j.record(&ev("start", 30));
        assert_eq!(w.next_batch().unwrap().unwrap().len(), 1);
        // An `until` in the past: the history up to it, then the end.
        let mut done = j.watch(Some(0), Some(15), EventFilter::default()).unwrap();
        assert_eq!(done.next_batch().unwrap().unwrap().len(), 1);
        assert_eq!(done.next_batch().unwrap().unwrap().len(), 0);
        assert!(done.next_batch().unwrap().is_none());
    }

    #[test]
    fn a_torn_line_is_read_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        j.record(&ev("create", 1));
        let (_, mut f) = j.replay(0).unwrap();
        let line = serde_json::to_string(&ev("start", 2)).unwrap();
        let (a, b) = line.split_at(10);
        let mut file = OpenOptions::new().append(true).open(j.path()).unwrap();
        file.write_all(a.as_bytes()).unwrap();
        assert!(f.next_batch().unwrap().is_empty());
        file.write_all(format!("{b}\nnot json\n").as_bytes())
            .unwrap();
        let got = f.next_batch().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "start");
    }

    #[test]
    fn rotation_keeps_history_and_followers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        let (_, mut f) = j.replay(0).unwrap();
        let mut big = ev("create", 1);
        big.attributes.insert("pad".into(), "x".repeat(50_000));
        let mut n = 0;
        while !j.rotated().exists() {
            big.time_nano = n;
            j.record(&big);
            n += 1;
        }
        j.record(&ev("after", n));
        let got = f.next_batch().unwrap();
        assert_eq!(
            got.len() as i64,
            n + 1,
            "every event once, across the rotation"
        );
        assert_eq!(got.last().unwrap().action, "after");
        let (all, _) = j.replay(0).unwrap();
        assert_eq!(all.len() as i64, n + 1);
    }

    #[test]
    fn filters_as_docker_reads_them() {
        let mut e = Event::new(Kind::Container, "health_status: healthy", "abcdef0123");
        e.attributes.insert("name".into(), "web".into());
        e.attributes
            .insert("image".into(), "docker.io/library/busybox:latest".into());
        e.attributes
            .insert("com.docker.compose.project".into(), "p".into());
        let f = |pairs: &[(&str, &str)]| EventFilter::from_pairs(pairs.iter().copied()).unwrap();
        assert!(f(&[]).matches(&e));
        assert!(f(&[("type", "container"), ("event", "health_status")]).matches(&e));
        assert!(f(&[("event", "die"), ("event", "health_status: healthy")]).matches(&e));
        assert!(!f(&[("event", "die")]).matches(&e));
        assert!(f(&[("container", "web")]).matches(&e));
        assert!(f(&[("container", "abcdef")]).matches(&e));
        assert!(!f(&[("container", "we")]).matches(&e));
        assert!(f(&[("image", "busybox")]).matches(&e));
        assert!(f(&[("image", "busybox:latest")]).matches(&e));
        assert!(!f(&[("image", "alpine")]).matches(&e));
        assert!(f(&[("label", "com.docker.compose.project=p")]).matches(&e));
        assert!(!f(&[("label", "com.docker.compose.project=p"), ("label", "x")]).matches(&e));
        assert!(!f(&[("type", "image")]).matches(&e));
        assert!(EventFilter::from_pairs([("bogus", "1")]).is_err());
        let json =
            EventFilter::from_json(r#"{"type":{"container":true},"event":["health_status"]}"#)
                .unwrap();
        assert!(json.matches(&e));
    }

    #[test]
    fn times_as_docker_reads_them() {
        let now = 100_000_000_000;
        let t = |s: &str| parse_time(s, now);
        assert_eq!(t("").unwrap(), None);
        assert_eq!(t("12").unwrap(), Some(12_000_000_000));
        assert_eq!(t("12.5").unwrap(), Some(12_500_000_000));
        assert_eq!(t("1.000000001").unwrap(), Some(1_000_000_001));
        assert_eq!(t("1970-01-01T00:00:02Z").unwrap(), Some(2_000_000_000));
        assert_eq!(t("1970-01-02").unwrap(), Some(86_400_000_000_000));
        assert_eq!(t("10s").unwrap(), Some(90_000_000_000));
        assert_eq!(t("1m30s").unwrap(), Some(10_000_000_000));
        assert!(t("yesterday").unwrap_err().contains("yesterday"));
        assert!(t("1.1234567890").is_err());
    }

    #[test]
    fn docker_shapes() {
        let mut e = Event::new(Kind::Container, "die", "abc").with("image", "busybox");
        e.time_nano = 1_500_000_000;
        let v = e.to_docker();
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["time"], 1);
        assert_eq!(v["Actor"]["Attributes"]["image"], "busybox");
        assert_eq!(
            e.to_line(),
            "1970-01-01T00:00:01.500000000Z container die abc (image=busybox)"
        );
        let n = Event::new(Kind::Network, "create", "net1").to_docker();
        assert!(n.get("status").is_none());
        assert_eq!(n["Type"], "network");
    }

    #[test]
    fn events_round_trip_with_attributes() {
        let e = Event::new(Kind::Image, "pull", "busybox:latest").with("name", "busybox");
        assert_eq!(e.attributes["name"], "busybox");
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
