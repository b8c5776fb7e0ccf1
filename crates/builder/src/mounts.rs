//! `RUN --mount=…`: the mount types of BuildKit's Dockerfile frontend, parsed with its
//! defaults and errors (`bind` is the default type; a cache's id defaults to its target; a
//! secret's target to `/run/secrets/<id>`).

use std::path::Path;

/// One `--mount` of a RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// Files of the context (or of a stage or image with `from`), read-only unless `rw`
    /// (writes are then thrown away).
    Bind {
        /// Path in the source (default: its root).
        source: String,
        /// Where it appears.
        target: String,
        /// A stage or image instead of the context.
        from: Option<String>,
        /// Writable (the writes are discarded after the step).
        rw: bool,
    },
    /// A directory kept between builds (package caches), never part of a layer.
    Cache {
        /// Which cache (default: the target).
        id: String,
        /// Where it appears.
        target: String,
        /// Mounted read-only.
        readonly: bool,
        /// Mode of the cache's directory when it is made.
        mode: u32,
        /// Owner of the cache's directory when it is made.
        uid: u32,
        /// Group of the cache's directory when it is made.
        gid: u32,
    },
    /// An empty tmpfs for the step.
    Tmpfs {
        /// Where it appears.
        target: String,
        /// Its size in bytes (none: the kernel's default, half the memory).
        size: Option<u64>,
    },
    /// A secret given to the build with `--secret`, as a read-only file.
    Secret {
        /// Which secret.
        id: String,
        /// Where it appears.
        target: String,
        /// The build fails when the secret was not given.
        required: bool,
        /// Its mode.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
}

fn bool_value(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("invalid value {other:?} for {key}")),
    }
}

fn number(key: &str, v: Option<&str>, radix: u32) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("{key} needs a value"))?;
    u32::from_str_radix(v, radix).map_err(|_| format!("invalid value {v:?} for {key}"))
}

/// Parses one `--mount` value (variables already expanded).
pub fn parse(spec: &str) -> Result<RunMount, String> {
    let mut kind = "bind".to_string();
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        if k == "type" {
            kind = v.unwrap_or_default();
        } else {
            fields.push((k, v));
        }
    }
    let (mut source, mut target, mut from, mut id) = (None, None, None, None);
    let (mut rw, mut readonly, mut required) = (false, false, false);
    let (mut mode, mut uid, mut gid, mut size) = (None, 0, 0, None);
    for (k, v) in &fields {
        let v = v.as_deref();
        match k.as_str() {
            "source" | "src" => source = v.map(str::to_string),
            "target" | "dst" | "destination" => target = v.map(str::to_string),
            "from" => from = v.map(str::to_string),
            "id" => id = v.map(str::to_string),
            "rw" | "readwrite" => rw = bool_value(k, v)?,
            "ro" | "readonly" => readonly = bool_value(k, v)?,
            "required" => required = bool_value(k, v)?,
            "mode" => mode = Some(number(k, v, 8)?),
            "uid" => uid = number(k, v, 10)?,
            "gid" => gid = number(k, v, 10)?,
            "size" => {
                size = Some(
                    v.and_then(parse_size)
                        .ok_or_else(|| format!("invalid value {v:?} for size"))?,
                )
            }
            // Accepted for compatibility; every cache is used by one build at a time here.
            "sharing" => match v {
                Some("shared" | "private" | "locked") => {}
                _ => return Err(format!("invalid value {v:?} for sharing")),
            },
            "env" => {
                return Err("secrets as environment variables (env=) are not supported yet".into())
            }
            other => return Err(format!("unexpected key '{other}' in '{spec}'")),
        }
    }
    let need_target = |t: Option<String>| t.ok_or_else(|| "mount target is required".to_string());
    match kind.as_str() {
        "bind" => Ok(RunMount::Bind {
            source: source.unwrap_or_default(),
            target: need_target(target)?,
            from,
            rw,
        }),
        "cache" => {
            if from.is_some() || source.is_some() {
                return Err(
                    "cache mounts seeded from a stage (from=, source=) are not supported yet"
                        .into(),
                );
            }
            let target = need_target(target)?;
            Ok(RunMount::Cache {
                id: id.unwrap_or_else(|| target.clone()),
                target,
                readonly,
                mode: mode.unwrap_or(0o755),
                uid,
                gid,
            })
        }
        "tmpfs" => Ok(RunMount::Tmpfs {
            target: need_target(target)?,
            size,
        }),
        "secret" => {
            let id = match (id, &target) {
                (Some(id), _) => id,
                (None, Some(t)) => Path::new(t)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| "secret id is required".to_string())?,
                (None, None) => return Err("secret id is required".into()),
            };
            Ok(RunMount::Secret {
                target: target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                id,
                required,
                mode: mode.unwrap_or(0o400),
                uid,
                gid,
            })
        }
        "ssh" => Err("RUN --mount=type=ssh is not supported yet".into()),
        other => Err(format!("unsupported mount type \"{other}\"")),
    }
}

/// `64m`, `1g`, `4096`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last()? {
        'k' => (&s[..s.trim_end_matches('b').len() - 1], 1u64 << 10),
        'm' => (&s[..s.trim_end_matches('b').len() - 1], 1 << 20),
        'g' => (&s[..s.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults() {
        assert_eq!(
            parse("target=/src").unwrap(),
            RunMount::Bind {
                source: String::new(),
                target: "/src".into(),
                from: None,
                rw: false
            }
        );
        assert_eq!(
            parse("type=cache,target=/root/.cache,uid=1000,mode=0700").unwrap(),
            RunMount::Cache {
                id: "/root/.cache".into(),
                target: "/root/.cache".into(),
                readonly: false,
                mode: 0o700,
                uid: 1000,
                gid: 0
            }
        );
        assert_eq!(
            parse("type=secret,id=tok").unwrap(),
            RunMount::Secret {
                id: "tok".into(),
                target: "/run/secrets/tok".into(),
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            parse("type=tmpfs,dst=/t,size=64m").unwrap(),
            RunMount::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20)
            }
        );
        assert_eq!(
            parse("type=bind,from=builder,source=/out,target=/mnt,rw").unwrap(),
            RunMount::Bind {
                source: "/out".into(),
                target: "/mnt".into(),
                from: Some("builder".into()),
                rw: true
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse("type=bind").unwrap_err(), "mount target is required");
        assert!(parse("type=ssh").unwrap_err().contains("not supported"));
        assert!(parse("type=nope,target=/x")
            .unwrap_err()
            .contains("unsupported mount type"));
        assert!(parse("target=/x,bogus=1")
            .unwrap_err()
            .contains("unexpected key 'bogus'"));
        assert!(parse("type=cache,target=/x,mode=9").is_err());
    }
}
