//! docker's `--filter KEY=VALUE` for listing containers, volumes and networks, parsed once
//! and matched against what the listings show ([`Summary`], [`VolumeInfo`], [`NetworkInfo`]).
//! The CLI builds a [`Filters`] from its flags ([`Filters::parse`]); the Engine API server
//! builds the same from its `filters` query parameter ([`Filters::from_json`]).
//!
//! Semantics are docker 20.10's (`api/types/filters`, `daemon/list.go`):
//!
//! - Terms with different keys must all hold; terms with the same key are alternatives, except
//!   `label`, whose terms must all hold as well (docker's `MatchKVList`).
//! - `label=K` asks for the key, `label=K=V` for the key with that value.
//! - `name=` matches when it equals the name or, read as a regular expression, matches
//!   anywhere in it (`name=web` also selects `webapp`; `name=^web$` only `web`); a pattern
//!   that is not a valid expression only matches exactly. A container's name matches with and
//!   without docker's leading `/`.
//! - `status=` takes docker's states (`created restarting running removing paused exited
//!   dead`); ours are `created`, `running`, `paused` (a running container whose VM is frozen;
//!   `running` no longer selects it, as in docker), `restarting` and `exited`, so the others
//!   select nothing. A status filter lists stopped containers without `-a`
//!   ([`Filters::shows_all`]).
//! - `id=` is a prefix of the id (docker matches a regular expression anywhere in it).
//! - `ancestor=` is an image reference, digest or digest prefix: it selects containers made
//!   from that image, by their normalised reference or manifest digest and, once
//!   [`Filters::resolve_images`] has looked the value up in the content store, by the manifest
//!   digest it names there (so another tag of the same image matches too). The containers of a
//!   tag since moved to another image still match by name. Images have no parents here, so
//!   there are no descendants to match.
//! - `network=` is a network name (`none` for containers without one); `volume=` a volume
//!   name, a bind mount's host path, or a mount's path in the container; `exited=N` selects
//!   exited containers whose exit code is N; `health=starting|healthy|unhealthy|none` the
//!   containers in that health status (`none`: no health check ran), docker's exact match.
//! - Volumes and networks also take `label!=K` and `label!=K=V` (docker's prune filter): the
//!   label is absent, or has another value.
//! - Volumes take `label`, `name`, `dangling=true|false` (no container uses it) and `driver`;
//!   networks take `label`, `name`, `id` (a prefix), `driver` (always `bridge`) and
//!   `type=custom|builtin` (the default network is the one built in).
//!
//! Keys are case-insensitive and values trimmed, as docker reads them; an unknown key or a
//! value a key cannot take is an error naming both.

use std::collections::BTreeMap;

use regex::Regex;

use crate::container::Summary;
use crate::labels::Labels;
use crate::network::NetworkInfo;
use crate::state::{MountSpec, Status};
use crate::volumes::VolumeInfo;

/// What is being listed: it decides which keys a filter may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// `list`/`ps`: [`Summary`].
    Containers,
    /// `volume ls`: [`VolumeInfo`].
    Volumes,
    /// `network ls`: [`NetworkInfo`].
    Networks,
}

impl FilterKind {
    /// The keys filters of this kind accept.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            FilterKind::Containers => &[
                "ancestor", "exited", "health", "id", "label", "name", "network", "status",
                "volume",
            ],
            FilterKind::Volumes => &["dangling", "driver", "label", "label!", "name"],
            FilterKind::Networks => &["driver", "id", "label", "label!", "name", "type"],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            FilterKind::Containers => "containers",
            FilterKind::Volumes => "volumes",
            FilterKind::Networks => "networks",
        }
    }
}

/// docker's container states, the values `status=` accepts.
const STATES: [&str; 7] = [
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// docker's health statuses, the values `health=` accepts (`none`: no health check).
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];

/// Errors of parsing filters.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not `KEY=VALUE`.
    #[error("bad format of filter {0:?} (expected name=value)")]
    Format(String),
    /// A key these objects cannot be filtered by.
    #[error("invalid filter '{key}': {} can be filtered by {}", .kind.noun(), .kind.keys().join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
        /// What was being listed.
        kind: FilterKind,
    },
    /// A value the key cannot take.
    #[error("invalid filter '{key}={value}': {reason}")]
    Value {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What the key takes.
        reason: String,
    },
    /// The Engine API's `filters` parameter is not a JSON object of strings.
    #[error("invalid filters: expected a JSON object of string lists")]
    Json(#[source] serde_json::Error),
}

/// The Engine API's `filters` parameter as key/value pairs: a JSON object mapping each key to
/// a list of values (`{"label": ["a=b"]}`) or, in the older form, to an object whose keys are
/// the values (`{"label": {"a=b": true}}`).
pub fn json_pairs(json: &str) -> Result<Vec<(String, String)>, FilterError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Values {
        List(Vec<String>),
        Set(BTreeMap<String, bool>),
    }
    let map: BTreeMap<String, Values> = serde_json::from_str(json).map_err(FilterError::Json)?;
    let mut pairs = Vec::new();
    for (key, values) in map {
        let values = match values {
            Values::List(v) => v,
            Values::Set(s) => s
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(v, _)| v)
                .collect(),
        };
        pairs.extend(values.into_iter().map(|v| (key.clone(), v)));
    }
    Ok(pairs)
}

/// A set of filters for one kind of object; empty, it selects everything.
#[derive(Debug, Clone)]
pub struct Filters {
    kind: FilterKind,
    /// Terms by key (a key of [`FilterKind::keys`]).
    terms: BTreeMap<&'static str, Vec<Term>>,
}

/// One `KEY=VALUE`, parsed for its key.
#[derive(Debug, Clone)]
enum Term {
    Label {
        key: String,
        value: Option<String>,
    },
    Name {
        text: String,
        /// None when `text` is not a valid expression (it then only matches exactly).
        regex: Option<Regex>,
    },
    Status(String),
    Id(String),
    Ancestor(Ancestor),
    Network(String),
    Volume(String),
    Exited(i32),
    Health(String),
    Dangling(bool),
    Driver(String),
    /// `label!=…`: the label term does not hold.
    Not(Box<Term>),
    /// `type=custom` (true) or `type=builtin` (false): networks users made, or the default.
    Custom(bool),
}

/// An `ancestor=` value and the images it names.
#[derive(Debug, Clone)]
struct Ancestor {
    /// The value read as an image reference, normalised.
    reference: Option<String>,
    /// The value read as a digest or a prefix of one: lowercase hex digits.
    digest_prefix: Option<String>,
    /// Manifest digests of the images it names in the content store.
    digests: Vec<String>,
}

impl Filters {
    /// No filters: every object matches.
    pub fn new(kind: FilterKind) -> Filters {
        Filters {
            kind,
            terms: BTreeMap::new(),
        }
    }

    /// Parses `--filter` values, each `KEY=VALUE`.
    pub fn parse<S: AsRef<str>>(kind: FilterKind, args: &[S]) -> Result<Filters, FilterError> {
        let pairs = args
            .iter()
            .map(|a| {
                let a = a.as_ref();
                a.split_once('=')
                    .ok_or_else(|| FilterError::Format(a.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Filters::from_pairs(kind, pairs)
    }

    /// Filters from keys and values already apart.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        kind: FilterKind,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Filters, FilterError> {
        let mut filters = Filters::new(kind);
        for (key, value) in pairs {
            filters.add(key.as_ref(), value.as_ref())?;
        }
        Ok(filters)
    }

    /// Filters from the Engine API's `filters` parameter: a JSON object mapping each key to a
    /// list of values (`{"label": ["a=b"]}`) or, in the older form, to an object whose keys
    /// are the values (`{"label": {"a=b": true}}`).
    pub fn from_json(kind: FilterKind, json: &str) -> Result<Filters, FilterError> {
        Filters::from_pairs(kind, json_pairs(json)?)
    }

    fn add(&mut self, key: &str, value: &str) -> Result<(), FilterError> {
        let lower = key.trim().to_ascii_lowercase();
        let Some(&key) = self.kind.keys().iter().find(|k| **k == lower) else {
            return Err(FilterError::UnknownKey {
                key: lower,
                kind: self.kind,
            });
        };
        let value = value.trim();
        let invalid = |reason: String| FilterError::Value {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        let label = || match value.split_once('=') {
            Some((k, v)) => Term::Label {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => Term::Label {
                key: value.to_string(),
                value: None,
            },
        };
        let term = match key {
            "label" => label(),
            "label!" => Term::Not(Box::new(label())),
            "name" => Term::Name {
                text: value.to_string(),
                regex: Regex::new(value).ok(),
            },
            "status" => {
                if !STATES.contains(&value) {
                    return Err(invalid(format!("status is one of {}", STATES.join(", "))));
                }
                Term::Status(value.to_string())
            }
            "id" => Term::Id(value.to_ascii_lowercase()),
            "ancestor" => Term::Ancestor(Ancestor::parse(value)),
            "network" => Term::Network(value.to_string()),
            "volume" => Term::Volume(value.to_string()),
            "exited" => Term::Exited(
                value
                    .parse()
                    .map_err(|_| invalid("exited takes an exit code".to_string()))?,
            ),
            "health" => {
                if !HEALTH.contains(&value) {
                    return Err(invalid(format!("health is one of {}", HEALTH.join(", "))));
                }
                Term::Health(value.to_string())
            }
            "dangling" => Term::Dangling(match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(invalid("dangling is true or false".to_string())),
            }),
            "driver" => Term::Driver(value.to_string()),
            "type" => Term::Custom(match value {
                "custom" => true,
                "builtin" => false,
                _ => return Err(invalid("type is custom or builtin".to_string())),
            }),
            _ => unreachable!("every key of FilterKind::keys is parsed above"),
        };
        self.terms.entry(key).or_default().push(term);
        Ok(())
    }

    /// What is being listed.
    pub fn kind(&self) -> FilterKind {
        self.kind
    }

    /// Whether there are no filters.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether some filter uses `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.terms.contains_key(key)
    }

    /// Whether stopped containers are listed without `-a`: docker lists every container when
    /// a `status` filter is given, so that `status=exited` means what it says.
    pub fn shows_all(&self) -> bool {
        self.terms.contains_key("status")
    }

    /// Looks the `ancestor` values up in the content store, so that they also match the
    /// containers of the image they name under another name (another tag of it, or the digest
    /// `image list` shows for it). Without this, they match by reference and manifest digest
    /// alone.
    pub fn resolve_images(&mut self, store: &oci::Store) {
        let Some(terms) = self.terms.get_mut("ancestor") else {
            return;
        };
        let entries = store.list().unwrap_or_default();
        let manifest =
            |r: &oci::Reference| store.image(r).ok().map(|i| i.manifest_digest().to_string());
        for term in terms {
            let Term::Ancestor(a) = term else { continue };
            if let Some(r) = a
                .reference
                .as_deref()
                .and_then(|r| oci::Reference::parse(r).ok())
            {
                a.digests.extend(manifest(&r));
            }
            if let Some(prefix) = &a.digest_prefix {
                // A digest `image list` shows: an index's, or a single image's manifest.
                for e in entries
                    .iter()
                    .filter(|e| e.descriptor.digest.hex().starts_with(prefix.as_str()))
                {
                    a.digests.extend(manifest(&e.reference));
                }
            }
        }
    }

    /// Whether a container passes.
    pub fn matches(&self, c: &Summary) -> bool {
        self.passes(Subject::Container(c))
    }

    /// Whether a volume passes.
    pub fn matches_volume(&self, v: &VolumeInfo) -> bool {
        self.passes(Subject::Volume(v))
    }

    /// Whether a network passes.
    pub fn matches_network(&self, n: &NetworkInfo) -> bool {
        self.passes(Subject::Network(n))
    }

    fn passes(&self, s: Subject<'_>) -> bool {
        self.terms.iter().all(|(key, terms)| {
            if *key == "label" || *key == "label!" {
                terms.iter().all(|t| t.matches(&s))
            } else {
                terms.iter().any(|t| t.matches(&s))
            }
        })
    }
}

impl Ancestor {
    fn parse(value: &str) -> Ancestor {
        let hex = value.strip_prefix("sha256:").unwrap_or(value);
        let is_hex =
            !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        Ancestor {
            reference: oci::Reference::parse(value).ok().map(|r| r.to_string()),
            digest_prefix: is_hex.then(|| hex.to_ascii_lowercase()),
            digests: Vec::new(),
        }
    }

    fn matches(&self, c: &Summary) -> bool {
        self.digests.contains(&c.image_digest)
            || self.reference.as_deref() == Some(c.image.as_str())
            || self.digest_prefix.as_deref().is_some_and(|p| {
                let hex = c
                    .image_digest
                    .strip_prefix("sha256:")
                    .unwrap_or(&c.image_digest);
                hex.starts_with(p)
            })
    }
}

/// What a term is matched against.
enum Subject<'a> {
    Container(&'a Summary),
    Volume(&'a VolumeInfo),
    Network(&'a NetworkInfo),
}

impl Subject<'_> {
    fn labels(&self) -> &Labels {
        match self {
            Subject::Container(c) => &c.labels,
            Subject::Volume(v) => &v.volume.labels,
            Subject::Network(n) => &n.config.labels,
        }
    }
}

impl Term {
    fn matches(&self, s: &Subject<'_>) -> bool {
        match (self, s) {
            (Term::Not(term), s) => !term.matches(s),
            (Term::Label { key, value }, s) => match (s.labels().get(key), value) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
            (Term::Name { text, regex }, Subject::Container(c)) => {
                name_matches(text, regex.as_ref(), &c.name)
                    || name_matches(text, regex.as_ref(), &format!("/{}", c.name))
            }
            (Term::Name { text, regex }, Subject::Volume(v)) => {
                name_matches(text, regex.as_ref(), &v.volume.name)
            }
            (Term::Name { text, regex }, Subject::Network(n)) => {
                name_matches(text, regex.as_ref(), &n.config.name)
            }
            (Term::Status(want), Subject::Container(c)) => c.state() == *want,
            (Term::Health(want), Subject::Container(c)) => {
                c.health.map_or("none", |h| h.as_str()) == want.as_str()
            }
            (Term::Id(prefix), Subject::Container(c)) => c.id.starts_with(prefix.as_str()),
            (Term::Id(prefix), Subject::Network(n)) => n.config.id.starts_with(prefix.as_str()),
            (Term::Ancestor(a), Subject::Container(c)) => a.matches(c),
            (Term::Network(name), Subject::Container(c)) => {
                c.networks.contains(name) || (name == "none" && c.networks.is_empty())
            }
            (Term::Volume(v), Subject::Container(c)) => c.mounts.iter().any(|m| mounts(m, v)),
            (Term::Exited(code), Subject::Container(c)) => {
                c.status == Status::Exited && c.exit_code == Some(*code)
            }
            (Term::Dangling(dangling), Subject::Volume(v)) => v.containers.is_empty() == *dangling,
            (Term::Driver(d), Subject::Volume(v)) => v.volume.driver == *d,
            // Every network is a Linux bridge.
            (Term::Driver(d), Subject::Network(_)) => d == "bridge",
            (Term::Custom(custom), Subject::Network(n)) => {
                (n.config.name != net::DEFAULT_NETWORK) == *custom
            }
            // Keys are checked against the kind when parsed: a term meant for another kind
            // of object selects nothing.
            _ => false,
        }
    }
}

/// docker's `filters.Args.Match`: equal, or a regular expression found in `name`.
fn name_matches(text: &str, regex: Option<&Regex>, name: &str) -> bool {
    text == name || regex.is_some_and(|r| r.is_match(name))
}

/// Whether mount `m` is what `volume=` names: its volume, its host path or its path inside.
fn mounts(m: &MountSpec, value: &str) -> bool {
    match m {
        MountSpec::Volume { source, target, .. } => source == value || target == value,
        MountSpec::Bind {
            source,
            target,
            file,
            ..
        } => {
            let host = match file {
                Some(f) => source.join(f),
                None => source.clone(),
            };
            host.as_os_str() == value || target == value
        }
        MountSpec::Socket { source, target } => source.as_os_str() == value || target == value,
        MountSpec::Tmpfs { target, .. } => target == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, status: Status) -> Summary {
        Summary {
            ip: None,
            id: format!("{:0<64}", hex_of(name)),
            name: name.to_string(),
            image: "docker.io/library/busybox:latest".to_string(),
            image_digest: format!("sha256:{}", "ab".repeat(32)),
            status,
            command: vec!["sh".into()],
            created: chrono::Utc::now(),
            exit_code: (status == Status::Exited).then_some(0),
            paused: false,
            ports: Vec::new(),
            labels: Labels::new(),
            networks: vec!["default".to_string()],
            mounts: Vec::new(),
            health: None,
        }
    }

    /// A distinct hex id prefix for each test name.
    fn hex_of(name: &str) -> String {
        name.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn parse(args: &[&str]) -> Filters {
        Filters::parse(FilterKind::Containers, args).unwrap()
    }

    fn names<'a>(f: &Filters, all: &'a [Summary]) -> Vec<&'a str> {
        all.iter()
            .filter(|c| f.matches(c))
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn keys_and_values_are_checked() {
        let e = Filters::parse(FilterKind::Containers, &["colour=red"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter 'colour': containers can be filtered by ancestor, exited, health, id, \
             label, name, network, status, volume"
        );
        let e = Filters::parse(FilterKind::Containers, &["status"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad format of filter \"status\" (expected name=value)"
        );
        let e = Filters::parse(FilterKind::Containers, &["status=sleeping"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid filter 'status=sleeping': status is one of"),
            "{e}"
        );
        assert!(Filters::parse(FilterKind::Containers, &["exited=x"]).is_err());
        assert!(Filters::parse(FilterKind::Volumes, &["status=running"]).is_err());
        assert!(Filters::parse(FilterKind::Volumes, &["dangling=maybe"]).is_err());
        assert!(Filters::parse(FilterKind::Networks, &["dangling=true"]).is_err());
        // docker reads keys in any case and trims both sides.
        let f = parse(&[" Status = exited "]);
        assert!(f.shows_all());
        assert!(!parse(&["name=x"]).shows_all());
        // docker's states we never have are accepted and select nothing.
        let all = [summary("a", Status::Running)];
        assert!(names(&parse(&["status=paused"]), &all).is_empty());
        assert!(Filters::new(FilterKind::Containers).matches(&all[0]));
    }

    #[test]
    fn same_key_ors_different_keys_and_labels_and() {
        let mut web = summary("web", Status::Running);
        web.labels.insert("tier".into(), "front".into());
        web.labels.insert("team".into(), "core".into());
        let mut db = summary("db", Status::Exited);
        db.labels.insert("tier".into(), "back".into());
        let mut cache = summary("cache", Status::Created);
        cache.labels.insert("team".into(), "core".into());
        let all = [web, db, cache];

        assert_eq!(names(&parse(&["label=tier"]), &all), ["web", "db"]);
        assert_eq!(names(&parse(&["label=tier=back"]), &all), ["db"]);
        assert!(names(&parse(&["label=tier=backend"]), &all).is_empty());
        // Label terms must all hold, as docker's MatchKVList.
        assert_eq!(names(&parse(&["label=tier", "label=team"]), &all), ["web"]);
        assert_eq!(
            names(&parse(&["status=running", "status=created"]), &all),
            ["web", "cache"]
        );
        assert_eq!(
            names(
                &parse(&["status=running", "status=created", "label=team=core"]),
                &all
            ),
            ["web", "cache"]
        );
        assert_eq!(
            names(&parse(&["status=exited", "label=team=core"]), &all),
            Vec::<&str>::new()
        );
        assert_eq!(names(&parse(&["exited=0"]), &all), ["db"]);
        assert!(names(&parse(&["exited=1"]), &all).is_empty());
    }

    #[test]
    fn names_match_as_docker_regexps() {
        let all = [
            summary("web", Status::Running),
            summary("webapp", Status::Running),
            summary("my-web.1", Status::Running),
        ];
        assert_eq!(
            names(&parse(&["name=web"]), &all),
            ["web", "webapp", "my-web.1"]
        );
        assert_eq!(names(&parse(&["name=^web$"]), &all), ["web"]);
        assert_eq!(names(&parse(&["name=^/web"]), &all), ["web", "webapp"]);
        assert_eq!(names(&parse(&["name=b\\.1$"]), &all), ["my-web.1"]);
        assert_eq!(
            names(&parse(&["name=app", "name=my"]), &all),
            ["webapp", "my-web.1"]
        );
        // Not an expression: only an equal name would match.
        assert!(names(&parse(&["name=web("]), &all).is_empty());
    }

    #[test]
    fn health_matches_docker_s_statuses() {
        use crate::health::HealthStatus;
        let mut a = summary("a", Status::Running);
        a.health = Some(HealthStatus::Healthy);
        let mut b = summary("b", Status::Running);
        b.health = Some(HealthStatus::Starting);
        let c = summary("c", Status::Running);
        let pick = |f: &[&str]| -> Vec<String> {
            let f = parse(f);
            [&a, &b, &c]
                .into_iter()
                .filter(|s| f.matches(s))
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(pick(&["health=healthy"]), ["a"]);
        assert_eq!(pick(&["health=none"]), ["c"]);
        assert_eq!(pick(&["health=starting", "health=healthy"]), ["a", "b"]);
        assert!(pick(&["health=unhealthy"]).is_empty());
        let err = Filters::parse(FilterKind::Containers, &["health=sick"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid filter 'health=sick': health is one of starting, healthy, unhealthy, none"
        );
    }

    #[test]
    fn networks_by_type_driver_and_absent_labels() {
        let network = |name: &str, labels: &[(&str, &str)]| NetworkInfo {
            config: net::NetworkConfig {
                name: name.into(),
                id: format!("{name}-id"),
                subnet: "10.0.0.0/24".parse().unwrap(),
                gateway: "10.0.0.1".parse().unwrap(),
                internal: false,
                bridge: "cbr0".into(),
                mtu: 1500,
                created: String::new(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                subnet6: None,
                gateway6: None,
            },
            active: false,
            containers: Vec::new(),
        };
        let all = [
            network(net::DEFAULT_NETWORK, &[]),
            network("kept", &[("keep", "1")]),
            network("other", &[("keep", "0")]),
        ];
        let pick = |args: &[&str]| -> Vec<String> {
            let f = Filters::parse(FilterKind::Networks, args).unwrap();
            all.iter()
                .filter(|n| f.matches_network(n))
                .map(|n| n.config.name.clone())
                .collect()
        };
        assert_eq!(pick(&["type=custom"]), ["kept", "other"]);
        assert_eq!(pick(&["type=builtin"]), [net::DEFAULT_NETWORK]);
        assert_eq!(pick(&["driver=bridge"]).len(), 3);
        assert!(pick(&["driver=overlay"]).is_empty());
        assert_eq!(pick(&["label!=keep"]), [net::DEFAULT_NETWORK]);
        assert_eq!(pick(&["label!=keep=1"]), [net::DEFAULT_NETWORK, "other"]);
        assert!(Filters::parse(FilterKind::Networks, &["type=weird"]).is_err());
        assert!(Filters::parse(FilterKind::Containers, &["label!=x"]).is_err());
    }

    #[test]
    fn ids_networks_volumes_and_images() {
        let mut a = summary("a", Status::Running);
        a.mounts = vec![
            MountSpec::Volume {
                source: "data".into(),
                target: "/data".into(),
                readonly: false,
                anonymous: false,
                nocopy: false,
            },
            MountSpec::Bind {
                source: "/srv".into(),
                target: "/www".into(),
                readonly: true,
                file: None,
            },
        ];
        let mut b = summary("b", Status::Running);
        b.networks = vec!["back".into(), "default".into()];
        b.image = "localhost:5000/app:1".into();
        b.image_digest = format!("sha256:{}", "cd".repeat(32));
        let mut none = summary("none", Status::Created);
        none.networks.clear();
        let all = [a, b, none];

        assert_eq!(
            names(&parse(&[&format!("id={}", &all[1].id[..4])]), &all),
            ["b"]
        );
        assert_eq!(names(&parse(&["id=6"]), &all), ["a", "b", "none"]);
        assert_eq!(names(&parse(&["network=back"]), &all), ["b"]);
        assert_eq!(names(&parse(&["network=default"]), &all), ["a", "b"]);
        assert_eq!(names(&parse(&["network=none"]), &all), ["none"]);
        for v in ["data", "/data", "/srv", "/www"] {
            assert_eq!(names(&parse(&[&format!("volume={v}")]), &all), ["a"], "{v}");
        }
        assert!(names(&parse(&["volume=/"]), &all).is_empty());
        // By normalised reference, and by digest or digest prefix.
        assert_eq!(names(&parse(&["ancestor=busybox"]), &all), ["a", "none"]);
        assert_eq!(
            names(&parse(&["ancestor=busybox:latest"]), &all),
            ["a", "none"]
        );
        assert_eq!(
            names(&parse(&["ancestor=localhost:5000/app:1"]), &all),
            ["b"]
        );
        assert_eq!(names(&parse(&["ancestor=sha256:cdcd"]), &all), ["b"]);
        assert_eq!(names(&parse(&["ancestor=CDCDCD"]), &all), ["b"]);
        assert!(names(&parse(&["ancestor=alpine"]), &all).is_empty());
    }

    #[test]
    fn engine_api_json_filters() {
        let f = Filters::from_json(
            FilterKind::Containers,
            r#"{"status":["exited"],"label":{"a=b":true,"c":false}}"#,
        )
        .unwrap();
        let mut c = summary("x", Status::Exited);
        assert!(!f.matches(&c));
        c.labels.insert("a".into(), "b".into());
        assert!(f.matches(&c));
        assert!(f.shows_all());
        assert!(Filters::from_json(FilterKind::Containers, r#"{"bogus":["1"]}"#).is_err());
        assert!(Filters::from_json(FilterKind::Containers, r#"["status"]"#).is_err());
    }
}
