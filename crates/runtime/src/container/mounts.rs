//! Docker's mount syntaxes (`-v`, `--mount`, `--tmpfs`) read into [`MountSpec`]s, and the
//! container's final mount list: the given mounts, then an anonymous volume for each image
//! `VOLUME` they do not cover. Front ends pass the strings their users wrote (the Engine API's
//! `Binds` use the `-v` syntax), so every front end reads them the same way.

use crate::volume::{MountSpec, VolumeError, VolumeStore, DEFAULT_SIZE};

/// A mount flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The path in the container is not absolute, is `/`, or has `..`.
    #[error("{flag}: container path {target:?} must be absolute, not / and without ..")]
    Target {
        /// The flag it came from.
        flag: &'static str,
        /// The path.
        target: String,
    },
    /// The host path of a bind cannot be resolved.
    #[error("{flag}: bind source {source_path}")]
    BindSource {
        /// The flag it came from.
        flag: &'static str,
        /// The host path.
        source_path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host path of a bind is neither a directory nor a regular file.
    #[error("{flag}: bind source {source_path} is neither a directory nor a regular file")]
    BindKind {
        /// The flag it came from.
        flag: &'static str,
        /// The host path.
        source_path: String,
    },
    /// The value does not follow the flag's syntax.
    #[error("{flag} {value}: {problem}")]
    Syntax {
        /// The flag.
        flag: &'static str,
        /// The whole value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two mounts at one path.
    #[error("duplicate mount point {0}")]
    Duplicate(String),
    /// A named volume could not be found or created.
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

fn syntax(flag: &'static str, value: &str, problem: impl Into<String>) -> MountError {
    MountError::Syntax {
        flag,
        value: value.to_string(),
        problem: problem.into(),
    }
}

fn check_target(target: &str, flag: &'static str) -> Result<(), MountError> {
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") || target == "/" {
        return Err(MountError::Target {
            flag,
            target: target.to_string(),
        });
    }
    Ok(())
}

/// A bind mount of the host path `source` (which must exist).
fn bind(
    source: &str,
    target: &str,
    readonly: bool,
    flag: &'static str,
) -> Result<MountSpec, MountError> {
    let dir = std::fs::canonicalize(source).map_err(|e| MountError::BindSource {
        flag,
        source_path: source.to_string(),
        source: e,
    })?;
    if std::fs::metadata(&dir).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        // Reached through a relay, not a share: the guest listens at the target.
        return Ok(MountSpec::Socket {
            source: dir,
            target: target.to_string(),
        });
    }
    if dir.is_dir() {
        return Ok(MountSpec::Bind {
            source: dir,
            target: target.to_string(),
            readonly,
            file: None,
        });
    }
    // A single file: its directory is shared with the VM, only the file enters the container.
    let kind_err = || MountError::BindKind {
        flag,
        source_path: source.to_string(),
    };
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(kind_err());
    };
    if !dir.is_file() {
        return Err(kind_err());
    }
    Ok(MountSpec::Bind {
        source: parent.to_path_buf(),
        target: target.to_string(),
        readonly,
        file: Some(name.to_string_lossy().into_owned()),
    })
}

/// A new anonymous volume at `target`.
fn anonymous(target: &str, readonly: bool, nocopy: bool) -> MountSpec {
    MountSpec::Volume {
        source: crate::volume::anonymous_name(),
        target: target.to_string(),
        readonly,
        anonymous: true,
        nocopy,
    }
}

/// Reads one `-v` value: `NAME:PATH[:OPTS]` (a volume), `/HOST:PATH[:OPTS]` (a bind) or
/// `PATH` (an anonymous volume); options `ro`, `rw`, `nocopy`.
pub fn parse_volume(v: &str) -> Result<MountSpec, MountError> {
    const FLAG: &str = "--volume";
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        [t] => {
            check_target(t, FLAG)?;
            return Ok(anonymous(t, false, false));
        }
        _ => return Err(syntax(FLAG, v, "expected NAME:PATH[:OPTIONS]")),
    };
    let (mut readonly, mut nocopy) = (false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => nocopy = true,
            _ => {
                return Err(syntax(
                    FLAG,
                    v,
                    format!("unknown option {o:?} (ro, rw, nocopy)"),
                ))
            }
        }
    }
    check_target(target, FLAG)?;
    if source.starts_with('/') {
        return bind(source, target, readonly, FLAG);
    }
    if source.starts_with('.') || source.starts_with('~') {
        return Err(syntax(FLAG, v, "host paths must be absolute"));
    }
    Ok(MountSpec::Volume {
        source: source.to_string(),
        target: target.to_string(),
        readonly,
        anonymous: false,
        nocopy,
    })
}

/// Reads one `--mount` value: `type=volume|bind|tmpfs,source=…,target=…[,readonly]
/// [,volume-nocopy][,tmpfs-size=N][,tmpfs-mode=M]`.
pub fn parse_mount(v: &str) -> Result<MountSpec, MountError> {
    const FLAG: &str = "--mount";
    let mut kind = "volume";
    let (mut source, mut target, mut readonly, mut nocopy) = (None, None, false, false);
    let mut options = Vec::new();
    for field in v.split(',') {
        let (k, val) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = val,
            "source" | "src" => source = Some(val.to_string()),
            "target" | "destination" | "dst" => target = Some(val.to_string()),
            "readonly" | "ro" if val.is_empty() || val == "true" || val == "1" => readonly = true,
            "readonly" | "ro" if val == "false" || val == "0" => readonly = false,
            "volume-nocopy" if val.is_empty() || val == "true" || val == "1" => nocopy = true,
            "volume-nocopy" if val == "false" || val == "0" => nocopy = false,
            "tmpfs-size" => options.push(format!("size={val}")),
            "tmpfs-mode" => options.push(format!("mode={val}")),
            _ => return Err(syntax(FLAG, v, format!("unknown field {field:?}"))),
        }
    }
    let Some(target) = target else {
        return Err(syntax(FLAG, v, "target= is required"));
    };
    check_target(&target, FLAG)?;
    match kind {
        "volume" => Ok(match source {
            None => anonymous(&target, readonly, nocopy),
            Some(source) => MountSpec::Volume {
                source,
                target,
                readonly,
                anonymous: false,
                nocopy,
            },
        }),
        "tmpfs" => {
            if readonly {
                options.push("ro".into());
            }
            Ok(MountSpec::Tmpfs { target, options })
        }
        "bind" => {
            let Some(source) = source else {
                return Err(syntax(FLAG, v, "source= is required for a bind mount"));
            };
            if !source.starts_with('/') {
                return Err(syntax(FLAG, v, "host paths must be absolute"));
            }
            bind(&source, &target, readonly, FLAG)
        }
        other => Err(syntax(FLAG, v, format!("unknown type {other:?}"))),
    }
}

/// Reads one `--tmpfs` value: `PATH[:OPTIONS]` (options as in mount(8), comma-separated).
pub fn parse_tmpfs(v: &str) -> Result<MountSpec, MountError> {
    let (target, opts) = v.split_once(':').unwrap_or((v, ""));
    check_target(target, "--tmpfs")?;
    Ok(MountSpec::Tmpfs {
        target: target.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// The container's mounts: `given` in order, then an anonymous volume for each of the
/// image's `VOLUME` paths they do not cover. Refuses two mounts at one path, and creates the
/// named volumes that do not exist yet (as docker does).
pub fn resolve(
    volumes: &VolumeStore,
    given: Vec<MountSpec>,
    image_volumes: &[String],
) -> Result<Vec<MountSpec>, MountError> {
    let mut out = given;
    for path in image_volumes {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if check_target(path, "image VOLUME").is_ok() && !out.iter().any(|m| m.target() == path) {
            out.push(anonymous(path, false, false));
        }
    }
    for (i, m) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.target() == m.target()) {
            return Err(MountError::Duplicate(m.target().to_string()));
        }
    }
    for m in &out {
        if let MountSpec::Volume { source, .. } = m {
            match volumes.get(source) {
                Ok(_) => {}
                Err(VolumeError::NotFound(_)) => match volumes.create(source, DEFAULT_SIZE) {
                    Ok(_) | Err(VolumeError::Exists(_)) => {}
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

/// One `--volumes-from CONTAINER[:ro|rw]` value: the container (name or id) and the mode
/// that overrides its mounts' own (None: keep each one's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFrom {
    /// Name or id of the container whose volumes and binds are taken.
    pub container: String,
    /// `ro` (Some(true)) or `rw` (Some(false)); None: as the container has them.
    pub readonly: Option<bool>,
}

impl VolumesFrom {
    /// Parses `CONTAINER[:ro|rw]` as docker does (`parseVolumesFrom`).
    pub fn parse(value: &str) -> Result<VolumesFrom, MountError> {
        let flag = "--volumes-from";
        let (container, readonly) = match value.split_once(':') {
            None => (value, None),
            Some((c, "ro")) => (c, Some(true)),
            Some((c, "rw")) => (c, Some(false)),
            Some((_, mode)) => {
                return Err(syntax(
                    flag,
                    value,
                    format!("invalid mode for volumes-from: {mode} (use ro or rw)"),
                ))
            }
        };
        if container.is_empty() {
            return Err(syntax(flag, value, "no container given"));
        }
        Ok(VolumesFrom {
            container: container.to_string(),
            readonly,
        })
    }

    /// The mounts a new container takes from `source`'s: its volumes and binds at the same
    /// paths, with this mode if one was given, never its tmpfs mounts (docker's rule). Its
    /// anonymous volumes come as they are named: the new container shares them and does not
    /// delete them with itself.
    pub fn mounts_of(&self, source: &[MountSpec]) -> Vec<MountSpec> {
        source
            .iter()
            .filter_map(|m| match m.clone() {
                MountSpec::Volume {
                    source,
                    target,
                    readonly,
                    nocopy,
                    ..
                } => Some(MountSpec::Volume {
                    source,
                    target,
                    readonly: self.readonly.unwrap_or(readonly),
                    anonymous: false,
                    nocopy,
                }),
                MountSpec::Bind {
                    source,
                    target,
                    readonly,
                    file,
                } => Some(MountSpec::Bind {
                    source,
                    target,
                    readonly: self.readonly.unwrap_or(readonly),
                    file,
                }),
                socket @ MountSpec::Socket { .. } => Some(socket),
                MountSpec::Tmpfs { .. } => None,
            })
            .collect()
    }
}

/// `given` with `inherited` (from `--volumes-from`) at the paths `given` leaves free: as in
/// docker, a container's own `-v`/`--mount` replaces an inherited mount at the same path, and
/// the first of several inherited ones at a path wins.
pub fn with_inherited(mut given: Vec<MountSpec>, inherited: Vec<MountSpec>) -> Vec<MountSpec> {
    for m in inherited {
        if !given.iter().any(|g| g.target() == m.target()) {
            given.push(m);
        }
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_from_takes_volumes_and_binds_with_the_mode_given() {
        assert_eq!(
            VolumesFrom::parse("data").unwrap(),
            VolumesFrom {
                container: "data".into(),
                readonly: None
            }
        );
        assert_eq!(VolumesFrom::parse("data:ro").unwrap().readonly, Some(true));
        assert_eq!(VolumesFrom::parse("data:rw").unwrap().readonly, Some(false));
        let e = VolumesFrom::parse("data:rx").unwrap_err().to_string();
        assert!(
            e.contains("--volumes-from") && e.contains("invalid mode"),
            "{e}"
        );
        assert!(VolumesFrom::parse(":ro").is_err());

        let source = vec![
            anonymous("/anon", false, false),
            parse_volume("named:/named:ro").unwrap(),
            MountSpec::Tmpfs {
                target: "/t".into(),
                options: vec![],
            },
        ];
        let keep = VolumesFrom::parse("x").unwrap().mounts_of(&source);
        assert_eq!(keep.len(), 2, "tmpfs mounts are not inherited");
        assert!(matches!(
            &keep[0],
            MountSpec::Volume { anonymous: false, readonly: false, target, .. } if target == "/anon"
        ));
        assert!(matches!(&keep[1], MountSpec::Volume { readonly: true, .. }));
        let rw = VolumesFrom::parse("x:rw").unwrap().mounts_of(&source);
        assert!(matches!(
            &rw[1],
            MountSpec::Volume {
                readonly: false,
                ..
            }
        ));

        let own = vec![parse_volume("mine:/named").unwrap()];
        let all = with_inherited(own, keep);
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0], MountSpec::Volume { source, .. } if source == "mine"));
        assert_eq!(all[1].target(), "/anon");
    }

    #[test]
    fn volume_flags_parse() {
        assert_eq!(
            parse_volume("data:/data:ro").unwrap(),
            MountSpec::Volume {
                source: "data".into(),
                target: "/data".into(),
                readonly: true,
                anonymous: false,
                nocopy: false,
            }
        );
        assert!(matches!(
            parse_volume("data:/data:ro,nocopy").unwrap(),
            MountSpec::Volume {
                readonly: true,
                nocopy: true,
                ..
            }
        ));
        assert!(parse_volume("data:/data:rx").is_err());
        assert!(parse_volume("/nonexistent-dir-xyz:/data").is_err());
        assert!(parse_volume("./rel:/data").is_err());
        assert_eq!(
            parse_volume("/tmp/:/data:ro").unwrap(),
            MountSpec::Bind {
                source: std::fs::canonicalize("/tmp").unwrap(),
                target: "/data".into(),
                readonly: true,
                file: None,
            }
        );
        assert!(parse_volume("data:rel").is_err());
        assert!(parse_volume("data:/a/../b").is_err());
        assert!(matches!(
            parse_volume("/data").unwrap(),
            MountSpec::Volume { anonymous: true, ref target, ref source, .. }
                if target == "/data" && source.len() == 64
        ));
        assert_eq!(
            parse_mount("type=volume,source=d,target=/x,readonly").unwrap(),
            MountSpec::Volume {
                source: "d".into(),
                target: "/x".into(),
                readonly: true,
                anonymous: false,
                nocopy: false,
            }
        );
        assert!(matches!(
            parse_mount("type=volume,source=d,target=/x,volume-nocopy").unwrap(),
            MountSpec::Volume { nocopy: true, .. }
        ));
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            MountSpec::Tmpfs {
                target: "/t".into(),
                options: vec!["size=1m".into()]
            }
        );
        assert!(matches!(
            parse_mount("type=volume,target=/x,readonly").unwrap(),
            MountSpec::Volume {
                anonymous: true,
                readonly: true,
                ..
            }
        ));
        assert!(parse_mount("type=volume,source=d,target=/x,bogus=1").is_err());
        assert_eq!(
            parse_tmpfs("/run/x:size=1m,mode=700").unwrap(),
            MountSpec::Tmpfs {
                target: "/run/x".into(),
                options: vec!["size=1m".into(), "mode=700".into()]
            }
        );
    }

    #[test]
    fn image_volumes_fill_in_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = VolumeStore::open(dir.path()).unwrap();
        let given = vec![parse_tmpfs("/data").unwrap()];
        let out = resolve(&volumes, given, &["/data/".into(), "/cache".into()]).unwrap();
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[1], MountSpec::Volume { target, anonymous: true, .. } if target == "/cache")
        );
        let twice = vec![parse_tmpfs("/a").unwrap(), parse_tmpfs("/a").unwrap()];
        assert!(matches!(
            resolve(&volumes, twice, &[]),
            Err(MountError::Duplicate(p)) if p == "/a"
        ));
    }
}
