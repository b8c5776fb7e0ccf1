//! `-v/--volume`, `--mount`, `--tmpfs` and `--read-only`: parsed into the runtime's
//! [`MountSpec`]s. Named volumes that do not exist yet are created (docker does the same).

use clap::Args;
use runtime::volume::{MountSpec, VolumeStore, DEFAULT_SIZE};

use crate::global::GlobalOptions;

/// The mount flags of `run`/`create`.
#[derive(Debug, Args)]
pub struct MountFlags {
    /// Mount a named volume: NAME:/path[:ro] (created when missing).
    #[arg(short = 'v', long = "volume", value_name = "NAME:PATH[:ro]")]
    pub volume: Vec<String>,
    /// Mount: type=volume,source=NAME,target=PATH[,readonly] or type=tmpfs,target=PATH[,tmpfs-size=N].
    #[arg(long = "mount", value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a fresh tmpfs: PATH[:OPTIONS] (options as in mount(8), comma-separated).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
}

fn check_target(target: &str, flag: &str) -> anyhow::Result<()> {
    if !target.starts_with('/') || target.split('/').any(|c| c == "..") || target == "/" {
        anyhow::bail!("{flag}: container path {target:?} must be absolute, not / and without ..");
    }
    Ok(())
}

/// A bind mount of the host directory `source` (which must exist).
fn bind(source: &str, target: &str, readonly: bool, flag: &str) -> anyhow::Result<MountSpec> {
    let dir = std::fs::canonicalize(source)
        .map_err(|e| anyhow::anyhow!("{flag}: bind source {source}: {e}"))?;
    if dir.is_dir() {
        return Ok(MountSpec::Bind {
            source: dir,
            target: target.to_string(),
            readonly,
            file: None,
        });
    }
    // A single file: its directory is shared with the VM, only the file enters the container.
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        anyhow::bail!("{flag}: bind source {source} is neither a directory nor a file");
    };
    if !dir.is_file() {
        anyhow::bail!("{flag}: bind source {source} is neither a directory nor a regular file");
    }
    Ok(MountSpec::Bind {
        source: parent.to_path_buf(),
        target: target.to_string(),
        readonly,
        file: Some(name.to_string_lossy().into_owned()),
    })
}

/// A new anonymous volume at `target`.
fn anonymous(target: &str) -> MountSpec {
    MountSpec::Volume {
        source: runtime::volume::anonymous_name(),
        target: target.to_string(),
        readonly: false,
        anonymous: true,
        nocopy: false,
    }
}

/// Parses one `-v` value.
fn parse_volume(v: &str) -> anyhow::Result<MountSpec> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        [t] => {
            check_target(t, "--volume")?;
            return Ok(anonymous(t));
        }
        _ => anyhow::bail!("--volume {v}: expected NAME:PATH[:OPTIONS]"),
    };
    let (mut readonly, mut nocopy) = (false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => nocopy = true,
            _ => anyhow::bail!("--volume {v}: unknown option {o:?} (ro, rw, nocopy)"),
        }
    }
    check_target(target, "--volume")?;
    if source.starts_with('/') {
        return bind(source, target, readonly, "--volume");
    }
    if source.starts_with('.') || source.starts_with('~') {
        anyhow::bail!("--volume {v}: host paths must be absolute");
    }
    Ok(MountSpec::Volume {
        source: source.to_string(),
        target: target.to_string(),
        readonly,
        anonymous: false,
        nocopy,
    })
}

/// Parses one `--mount` value.
fn parse_mount(v: &str) -> anyhow::Result<MountSpec> {
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
            _ => anyhow::bail!("--mount {v}: unknown field {field:?}"),
        }
    }
    let Some(target) = target else {
        anyhow::bail!("--mount {v}: target= is required");
    };
    check_target(&target, "--mount")?;
    match kind {
        "volume" => {
            let Some(source) = source else {
                let mut m = anonymous(&target);
                if let MountSpec::Volume {
                    readonly: ro,
                    nocopy: nc,
                    ..
                } = &mut m
                {
                    *ro = readonly;
                    *nc = nocopy;
                }
                return Ok(m);
            };
            Ok(MountSpec::Volume {
                source,
                target,
                readonly,
                anonymous: false,
                nocopy,
            })
        }
        "tmpfs" => {
            if readonly {
                options.push("ro".into());
            }
            Ok(MountSpec::Tmpfs { target, options })
        }
        "bind" => {
            let Some(source) = source else {
                anyhow::bail!("--mount {v}: source= is required for a bind mount");
            };
            if !source.starts_with('/') {
                anyhow::bail!("--mount {v}: host paths must be absolute");
            }
            bind(&source, &target, readonly, "--mount")
        }
        other => anyhow::bail!("--mount {v}: unknown type {other:?}"),
    }
}

/// Parses one `--tmpfs` value.
fn parse_tmpfs(v: &str) -> anyhow::Result<MountSpec> {
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

impl MountFlags {
    /// The mounts in command-line order (`-v`, then `--mount`, then `--tmpfs`), then an
    /// anonymous volume for each of the image's `VOLUME` paths the flags do not cover; creates
    /// the volumes that do not exist yet.
    pub fn resolve(
        &self,
        global: &GlobalOptions,
        image_volumes: &[String],
    ) -> anyhow::Result<Vec<MountSpec>> {
        let mut out = Vec::new();
        for v in &self.volume {
            out.push(parse_volume(v)?);
        }
        for v in &self.mount {
            out.push(parse_mount(v)?);
        }
        for v in &self.tmpfs {
            out.push(parse_tmpfs(v)?);
        }
        for path in image_volumes {
            let path = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            if check_target(path, "image VOLUME").is_ok() && !out.iter().any(|m| m.target() == path)
            {
                out.push(anonymous(path));
            }
        }
        for (i, m) in out.iter().enumerate() {
            if out[..i].iter().any(|o| o.target() == m.target()) {
                anyhow::bail!("duplicate mount point {}", m.target());
            }
        }
        let needs_store = out.iter().any(|m| matches!(m, MountSpec::Volume { .. }));
        if needs_store {
            let store = VolumeStore::open(&global.root_dir())?;
            for m in &out {
                if let MountSpec::Volume { source, .. } = m {
                    match store.get(source) {
                        Ok(_) => {}
                        Err(runtime::volume::VolumeError::NotFound(_)) => {
                            match store.create(source, DEFAULT_SIZE) {
                                Ok(_) | Err(runtime::volume::VolumeError::Exists(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
