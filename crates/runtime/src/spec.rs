//! The container's process, combined from the image config and the user's flags by docker's
//! rules:
//!
//! - args = entrypoint ++ (command-line args, or else the image's Cmd). `--entrypoint X` replaces
//!   the image's Entrypoint *and* drops its Cmd; `--entrypoint ''` clears the entrypoint.
//! - env = image Env, then `--env-file` lines, then `-e` flags, later keys replacing earlier ones
//!   in place; `-e KEY` without `=` copies KEY from the caller's environment (and is dropped if
//!   unset there). PATH gets docker's default when nothing set it; HOSTNAME is the container's;
//!   TERM=xterm with a terminal.
//! - cwd = `-w`, else the image's WorkingDir, else `/`; it must be absolute.
//! - user = `-u`, else the image's User, else root. The guest resolves names against the
//!   container's own /etc/passwd and /etc/group.
//! - capabilities = docker's default set, `--cap-add` added and `--cap-drop` removed (`ALL`
//!   allowed in either), every capability with `--privileged`; `exec` gets the container's set
//!   (every capability with `exec --privileged`).
//! - init = `--init`: the main process runs under vminitd's container init (never an `exec`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Docker's default PATH, used when neither image nor flags set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors combining a process spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the image nor the command line names a command.
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// `-w` or the image's WorkingDir is relative.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    /// An env file could not be read.
    #[error("read env file {path}")]
    ReadEnvFile {
        /// The env file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an env file or a `-e` value is not `KEY[=VALUE]`.
    #[error("invalid environment variable {0:?}")]
    InvalidEnv(String),
    /// `--cap-add`/`--cap-drop` names a capability Linux does not have.
    #[error("invalid capability {0:?} in --cap-add/--cap-drop")]
    UnknownCapability(String),
    /// A signal name or number Linux does not have.
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
}

/// The parts of an OCI image config the process is made from, and those a container keeps
/// from its image (labels, exposed ports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `Env`, as `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: String,
    /// `User`.
    #[serde(default)]
    pub user: String,
    /// `Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` keys as the image writes them (`80/tcp`, `53/udp`, `8080`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// `StopSignal` as the image writes it (`SIGQUIT`, `3`); empty when it has none.
    #[serde(default)]
    pub stop_signal: String,
    /// `Healthcheck` (from `HEALTHCHECK`); None when the image has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<oci::spec::HealthConfig>,
}

/// The user's flags that shape the process (`run`/`create`/`exec`).
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Arguments after the image name.
    pub args: Vec<String>,
    /// `--entrypoint` (Some("") clears it).
    pub entrypoint: Option<String>,
    /// `-e` values in order.
    pub env: Vec<String>,
    /// Contents of `--env-file`s, already parsed, in order.
    pub env_files: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-t`.
    pub terminal: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// The caller's terminal size, for `-t`.
    pub console_size: Option<(u16, u16)>,
    /// `--cap-add` values.
    pub cap_add: Vec<String>,
    /// `--cap-drop` values.
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability.
    pub privileged: bool,
    /// `--init`: run under vminitd's container init.
    pub init: bool,
    /// `--ulimit` values (checked, one per name).
    pub ulimits: Vec<crate::ulimit::Ulimit>,
}

/// A process to run in the guest (an OCI runtime-spec `process`, reduced to what we set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSpec {
    /// argv; argv[0] is looked up in PATH by the guest when it has no slash.
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// `user[:group]`, names or numbers; empty means root.
    pub user: String,
    /// Run on a pty.
    pub terminal: bool,
    /// Keep stdin open (a pipe from the client); otherwise stdin is /dev/null.
    pub open_stdin: bool,
    /// Initial terminal size (rows, columns) with `terminal`.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Capability set when it differs from docker's default (`CAP_` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Run under vminitd's container init, which forwards signals to the process and reaps
    /// the container's orphans (`--init`; a container's main process only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Resource limits set before exec (`--ulimit`), for the main process and every exec, as
    /// runc applies them; empty: the guest's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<crate::ulimit::Ulimit>,
}

/// Parses a signal as docker does: a number (1–64), or a name with or without `SIG`, in any
/// case (`TERM`, `sigint`, `SIGKILL`).
pub fn parse_signal(s: &str) -> Result<i32, SpecError> {
    let invalid = || SpecError::InvalidSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| invalid())
}

/// The capability set the flags ask for; `None` for docker's default.
pub fn capabilities(opts: &ProcessOptions) -> Result<Option<Vec<String>>, SpecError> {
    if opts.privileged {
        return Ok(Some(
            agent::caps::ALL.iter().map(|c| c.to_string()).collect(),
        ));
    }
    if opts.cap_add.is_empty() && opts.cap_drop.is_empty() {
        return Ok(None);
    }
    agent::caps::resolve(&opts.cap_add, &opts.cap_drop)
        .map(Some)
        .map_err(SpecError::UnknownCapability)
}

/// Reads an env file: one `KEY[=VALUE]` per line, `#` comments and blank lines ignored.
pub fn read_env_file(path: &Path) -> Result<Vec<String>, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::ReadEnvFile {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// Turns `KEY=VALUE` or `KEY` (looked up with `lookup`) into `KEY=VALUE`; None when a bare
/// KEY is not set.
fn resolve_env(
    item: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, SpecError> {
    let key = item.split_once('=').map_or(item, |(k, _)| k);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(SpecError::InvalidEnv(item.to_string()));
    }
    if item.contains('=') {
        return Ok(Some(item.to_string()));
    }
    Ok(lookup(key).map(|v| format!("{key}={v}")))
}

/// Sets `KEY=VALUE` in `env`, replacing an existing KEY in place.
pub fn set_env(env: &mut Vec<String>, item: String) {
    let key = item
        .split_once('=')
        .map_or(item.as_str(), |(k, _)| k)
        .to_string();
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(slot) => *slot = item,
        None => env.push(item),
    }
}

fn has_key(env: &[String], key: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
}

/// The entrypoint and the command of the main process (its args are the two joined), by
/// docker's rules; kept apart because docker shows them apart (`Config.Entrypoint`, `Cmd`).
pub fn entrypoint_and_cmd(
    image: &ImageConfig,
    opts: &ProcessOptions,
) -> (Vec<String>, Vec<String>) {
    let (entrypoint, image_cmd): (Vec<String>, &[String]) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), &[]),
        Some(e) => (vec![e.clone()], &[]),
        None => (image.entrypoint.clone(), &image.cmd),
    };
    let cmd = if opts.args.is_empty() {
        image_cmd.to_vec()
    } else {
        opts.args.clone()
    };
    (entrypoint, cmd)
}

/// Combines image config and flags into the main process of a container.
pub fn combine(
    image: &ImageConfig,
    opts: &ProcessOptions,
    hostname: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ProcessSpec, SpecError> {
    let (mut args, cmd) = entrypoint_and_cmd(image, opts);
    args.extend(cmd);
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }

    let mut env = Vec::new();
    for e in &image.env {
        set_env(&mut env, e.clone());
    }
    for e in opts.env_files.iter().chain(&opts.env) {
        if let Some(e) = resolve_env(e, lookup)? {
            set_env(&mut env, e);
        }
    }
    if !has_key(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has_key(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if opts.terminal && !has_key(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }

    let cwd = opts
        .workdir
        .clone()
        .unwrap_or_else(|| image.working_dir.clone());
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkdir(cwd));
    }
    let user = opts.user.clone().unwrap_or_else(|| image.user.clone());
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        user,
        terminal: opts.terminal,
        open_stdin: opts.open_stdin,
        console_size: opts.console_size.filter(|_| opts.terminal),
        capabilities: capabilities(opts)?,
        init: opts.init,
        rlimits: crate::ulimit::dedup(opts.ulimits.clone()),
    })
}

/// The process of `exec`: the container's environment plus `-e`, its cwd unless `-w`, its user
/// unless `-u` (docker's rules for exec).
pub fn exec_spec(
    main: &ProcessSpec,
    args: Vec<String>,
    opts: &ProcessOptions,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ProcessSpec, SpecError> {
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut env: Vec<String> = main
        .env
        .iter()
        .filter(|e| !e.starts_with("TERM="))
        .cloned()
        .collect();
    for e in opts.env_files.iter().chain(&opts.env) {
        if let Some(e) = resolve_env(e, lookup)? {
            set_env(&mut env, e);
        }
    }
    if opts.terminal && !has_key(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    let cwd = opts.workdir.clone().unwrap_or_else(|| main.cwd.clone());
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkdir(cwd));
    }
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        user: opts.user.clone().unwrap_or_else(|| main.user.clone()),
        terminal: opts.terminal,
        open_stdin: opts.open_stdin,
        console_size: opts.console_size.filter(|_| opts.terminal),
        capabilities: match capabilities(opts)? {
            Some(all) => Some(all),
            None => main.capabilities.clone(),
        },
        // Only the container's first process is its PID 1.
        init: false,
        rlimits: main.rlimits.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn none(_: &str) -> Option<String> {
        None
    }

    fn image() -> ImageConfig {
        ImageConfig {
            env: s(&["PATH=/bin", "A=image", "B=image"]),
            entrypoint: s(&["/entry"]),
            cmd: s(&["default", "cmd"]),
            working_dir: "/srv".into(),
            user: "nobody".into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults_are_used() {
        let p = combine(&image(), &ProcessOptions::default(), "h", &none).unwrap();
        assert_eq!(p.args, s(&["/entry", "default", "cmd"]));
        assert_eq!(p.env, s(&["PATH=/bin", "A=image", "B=image", "HOSTNAME=h"]));
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "nobody");
        assert!(!p.terminal);
    }

    #[test]
    fn args_replace_cmd_but_keep_entrypoint() {
        let o = ProcessOptions {
            args: s(&["x", "y"]),
            ..Default::default()
        };
        assert_eq!(
            combine(&image(), &o, "h", &none).unwrap().args,
            s(&["/entry", "x", "y"])
        );
    }

    #[test]
    fn entrypoint_flag_drops_image_cmd() {
        let o = ProcessOptions {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        assert_eq!(
            combine(&image(), &o, "h", &none).unwrap().args,
            s(&["/bin/sh"])
        );
        let o = ProcessOptions {
            entrypoint: Some("/bin/sh".into()),
            args: s(&["-c", "true"]),
            ..Default::default()
        };
        assert_eq!(
            combine(&image(), &o, "h", &none).unwrap().args,
            s(&["/bin/sh", "-c", "true"])
        );
        let o = ProcessOptions {
            entrypoint: Some(String::new()),
            args: s(&["ls"]),
            ..Default::default()
        };
        assert_eq!(combine(&image(), &o, "h", &none).unwrap().args, s(&["ls"]));
        let split = |o: &ProcessOptions| entrypoint_and_cmd(&image(), o);
        assert_eq!(split(&o), (vec![], s(&["ls"])));
        assert_eq!(
            split(&ProcessOptions::default()),
            (s(&["/entry"]), s(&["default", "cmd"]))
        );
        let o = ProcessOptions {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        assert_eq!(split(&o), (s(&["/bin/sh"]), vec![]));
    }

    #[test]
    fn signals_parse_as_docker_parses_them() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGINT").unwrap(), 2);
        assert_eq!(parse_signal("HUP").unwrap(), 1);
        for bad in ["0", "65", "-1", "BOGUS", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_is_the_main_process_s_alone() {
        let o = ProcessOptions {
            init: true,
            ..Default::default()
        };
        let main = combine(&image(), &o, "h", &none).unwrap();
        assert!(main.init);
        let exec = exec_spec(&main, s(&["ls"]), &ProcessOptions::default(), &none).unwrap();
        assert!(!exec.init);
    }

    #[test]
    fn no_command_is_an_error() {
        let img = ImageConfig::default();
        let err = combine(&img, &ProcessOptions::default(), "h", &none).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand));
        let o = ProcessOptions {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            combine(&image(), &o, "h", &none),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn env_precedence_and_lookup() {
        let o = ProcessOptions {
            env_files: s(&["A=file", "C=file", "FROMHOST"]),
            env: s(&["C=flag", "UNSET", "D=x=y"]),
            ..Default::default()
        };
        let lookup = |k: &str| (k == "FROMHOST").then(|| "hostval".to_string());
        let p = combine(&image(), &o, "h", &lookup).unwrap();
        assert_eq!(
            p.env,
            s(&[
                "PATH=/bin",
                "A=file",
                "B=image",
                "C=flag",
                "FROMHOST=hostval",
                "D=x=y",
                "HOSTNAME=h"
            ])
        );
    }

    #[test]
    fn default_path_and_term() {
        let img = ImageConfig {
            cmd: s(&["sh"]),
            ..Default::default()
        };
        let o = ProcessOptions {
            terminal: true,
            ..Default::default()
        };
        let p = combine(&img, &o, "box", &none).unwrap();
        assert_eq!(
            p.env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box".into(),
                "TERM=xterm".into()
            ]
        );
        assert_eq!(p.cwd, "/");
        assert_eq!(p.user, "");
        assert!(p.terminal);
    }

    #[test]
    fn flags_override_workdir_and_user() {
        let o = ProcessOptions {
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        let p = combine(&image(), &o, "h", &none).unwrap();
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/tmp", "1000:1000"));
        let o = ProcessOptions {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert!(matches!(
            combine(&image(), &o, "h", &none),
            Err(SpecError::RelativeWorkdir(_))
        ));
    }

    #[test]
    fn bad_env_is_rejected() {
        for bad in ["=x", "A B=1", ""] {
            let o = ProcessOptions {
                env: vec![bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(
                    combine(&image(), &o, "h", &none),
                    Err(SpecError::InvalidEnv(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_file_parsing() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), "# comment\n\nA=1\n  B=two words\nC\n").unwrap();
        assert_eq!(
            read_env_file(tmp.path()).unwrap(),
            s(&["A=1", "B=two words", "C"])
        );
        assert!(matches!(
            read_env_file(Path::new("/nonexistent/env")),
            Err(SpecError::ReadEnvFile { .. })
        ));
    }

    #[test]
    fn exec_inherits_container_env_cwd_user() {
        let main = combine(
            &image(),
            &ProcessOptions {
                terminal: true,
                ..Default::default()
            },
            "h",
            &none,
        )
        .unwrap();
        let o = ProcessOptions {
            env: s(&["A=exec"]),
            ..Default::default()
        };
        let p = exec_spec(&main, s(&["ls"]), &o, &none).unwrap();
        assert_eq!(p.args, s(&["ls"]));
        assert_eq!(p.env, s(&["PATH=/bin", "A=exec", "B=image", "HOSTNAME=h"]));
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/srv", "nobody"));
        assert!(matches!(
            exec_spec(&main, vec![], &o, &none),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn capabilities_follow_cap_add_drop_and_privileged() {
        let with = |o: ProcessOptions| combine(&image(), &o, "h", &none);
        assert_eq!(with(ProcessOptions::default()).unwrap().capabilities, None);
        let main = with(ProcessOptions {
            cap_add: s(&["sys_admin"]),
            cap_drop: s(&["NET_RAW"]),
            ..Default::default()
        })
        .unwrap();
        let caps = main.capabilities.clone().unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        let all = with(ProcessOptions {
            privileged: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(all.capabilities.unwrap().len(), agent::caps::ALL.len());
        assert!(matches!(
            with(ProcessOptions {
                cap_add: s(&["FLY"]),
                ..Default::default()
            }),
            Err(SpecError::UnknownCapability(n)) if n == "FLY"
        ));
        // exec keeps the container's set unless it asks for every capability.
        let plain = ProcessOptions::default();
        let e = exec_spec(&main, s(&["ls"]), &plain, &none).unwrap();
        assert_eq!(e.capabilities, Some(caps));
        let privileged = ProcessOptions {
            privileged: true,
            ..Default::default()
        };
        let e = exec_spec(&main, s(&["ls"]), &privileged, &none).unwrap();
        assert_eq!(e.capabilities.unwrap().len(), agent::caps::ALL.len());
    }
}
