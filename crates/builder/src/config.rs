//! What the instructions that change no files do to the image config (`ENV`, `LABEL`, `CMD`,
//! `ENTRYPOINT`, …), and the history entry each step leaves, as Docker's builders write them.
//! Also what `image import --change` and `commit --change` apply.

use std::time::Duration;

use dockerfile::{Command, Healthcheck, Instruction};
use oci::spec::HealthConfig;
use oci::ContainerConfig;

/// The shell of shell-form commands when neither the stage nor its base set one.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The PATH a RUN gets when the image sets none (Docker's default for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An instruction that cannot be applied to the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The stage's shell: its own `SHELL`, else the base image's, else `/bin/sh -c`.
pub fn shell(config: &ContainerConfig) -> Vec<String> {
    if config.shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        config.shell.clone()
    }
}

/// The argv of a command: exec form as written, shell form through the stage's shell.
pub fn argv(command: &Command, config: &ContainerConfig) -> Vec<String> {
    match command {
        Command::Exec(args) => args.clone(),
        Command::Shell(line) => {
            let mut args = shell(config);
            args.push(line.clone());
            args
        }
    }
}

/// Sets `KEY=value` in an environment list, replacing an earlier value of `KEY`.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// The value of `key` in an environment list.
pub fn get_env<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// `WORKDIR path` after the stage's current one: relative paths join it, `.` and `..` are
/// resolved lexically, as Docker does.
pub fn join_workdir(current: Option<&str>, path: &str) -> String {
    let base = if path.starts_with('/') {
        ""
    } else {
        current.unwrap_or("/")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as the config's `PORT/PROTO` keys.
pub fn exposed_ports(spec: &str) -> Result<Vec<String>, ConfigError> {
    let bad = || ConfigError(format!("invalid containerPort: {spec}"));
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(ConfigError(format!("invalid proto: {proto}")));
    }
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn nanos(d: Option<Duration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The state of a stage's config that is not in the image config: whether `CMD` was set in
/// this stage (an `ENTRYPOINT` resets only an inherited `CMD`, as Docker does).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageFlags {
    /// A `CMD` of this stage has run.
    pub cmd_set: bool,
}

/// Applies one config-only instruction (variables already expanded) to `config`. RUN, COPY,
/// ADD, FROM and ARG are not config instructions and are refused; WORKDIR sets the working
/// directory only (its directory is the builder's business).
pub fn apply(
    config: &mut ContainerConfig,
    flags: &mut StageFlags,
    instruction: &Instruction,
    author: &mut Option<String>,
) -> Result<(), ConfigError> {
    match instruction {
        Instruction::Env(kvs) => {
            for kv in kvs {
                set_env(&mut config.env, &kv.key, &kv.value);
            }
        }
        Instruction::Label(kvs) => {
            for kv in kvs {
                config.labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Instruction::Expose(ports) => {
            for p in ports {
                for key in exposed_ports(p)? {
                    config
                        .exposed_ports
                        .insert(key, serde_json::Value::Object(Default::default()));
                }
            }
        }
        Instruction::Volume(paths) => {
            for p in paths {
                if p.trim().is_empty() {
                    return Err(ConfigError(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                config
                    .volumes
                    .insert(p.clone(), serde_json::Value::Object(Default::default()));
            }
        }
        Instruction::Workdir(path) => {
            config.working_dir = Some(join_workdir(config.working_dir.as_deref(), path));
        }
        Instruction::User(user) => {
            config.user = (!user.is_empty()).then(|| user.clone());
        }
        Instruction::StopSignal(signal) => config.stop_signal = Some(signal.clone()),
        Instruction::Cmd(command) => {
            config.cmd = Some(argv(command, config));
            flags.cmd_set = true;
        }
        Instruction::Entrypoint(command) => {
            config.entrypoint = match command {
                Command::Exec(args) if args.is_empty() => None,
                c => Some(argv(c, config)),
            };
            if !flags.cmd_set {
                config.cmd = None;
            }
        }
        Instruction::Shell(shell) => config.shell = shell.clone(),
        Instruction::Healthcheck(check) => {
            config.healthcheck = Some(match check {
                Healthcheck::None => HealthConfig {
                    test: check.test(),
                    ..Default::default()
                },
                Healthcheck::Cmd(c) => HealthConfig {
                    test: check.test(),
                    interval: nanos(c.interval),
                    timeout: nanos(c.timeout),
                    start_period: nanos(c.start_period),
                    start_interval: nanos(c.start_interval),
                    retries: c.retries.map_or(0, i64::from),
                },
            })
        }
        Instruction::Onbuild(trigger) => config.on_build.push(trigger.expression.clone()),
        Instruction::Maintainer(name) => *author = Some(name.clone()),
        other => {
            return Err(ConfigError(format!(
                "{} is not a config instruction",
                other.keyword()
            )))
        }
    }
    Ok(())
}

/// A history entry of an image config, as BuildKit writes them (`created_by` the instruction,
/// `empty_layer` for steps without a layer).
pub fn history(created: &str, created_by: &str, empty_layer: bool) -> serde_json::Value {
    let mut h = serde_json::json!({
        "created": created,
        "created_by": created_by,
        "comment": "container build",
    });
    if empty_layer {
        h["empty_layer"] = serde_json::Value::Bool(true);
    }
    h
}

/// The `--change` instructions `image import` and `commit` accept (Docker's list).
pub const CHANGE_INSTRUCTIONS: [&str; 9] = [
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
];

/// Applies `--change` lines (`CMD ["sh"]`, `ENV A=b`, … and `WORKDIR`) to `config`, as
/// `docker import -c` and `docker commit -c` do: each is one Dockerfile instruction, with
/// variables expanded from the config's own environment.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<(), ConfigError> {
    let mut flags = StageFlags { cmd_set: true };
    let mut author = None;
    for change in changes {
        let parsed = dockerfile::parse(change)
            .map_err(|e| ConfigError(format!("invalid --change {change:?}: {}", e.message)))?;
        for step in &parsed.steps {
            let keyword = step.instruction.keyword();
            if !CHANGE_INSTRUCTIONS.contains(&keyword) && keyword != "WORKDIR" {
                return Err(ConfigError(format!(
                    "{keyword} is not a valid change command"
                )));
            }
            let env: std::collections::HashMap<String, String> = config
                .env
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let expanded = step
                .instruction
                .expand(&parsed.lexer(), &env)
                .map_err(|e| ConfigError(format!("invalid --change {change:?}: {e}")))?;
            apply(config, &mut flags, &expanded, &mut author)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &str) -> ContainerConfig {
        let df = dockerfile::parse(lines).unwrap();
        let mut c = ContainerConfig::default();
        let mut flags = StageFlags::default();
        let mut author = None;
        let env = std::collections::HashMap::<String, String>::new();
        for s in &df.steps {
            let i = s.instruction.expand(&df.lexer(), &env).unwrap();
            apply(&mut c, &mut flags, &i, &mut author).unwrap();
        }
        c
    }

    #[test]
    fn env_replaces_and_appends() {
        let c = run("ENV A=1 B=2\nENV A=3\n");
        assert_eq!(c.env, ["A=3", "B=2"]);
    }

    #[test]
    fn cmd_and_entrypoint_forms() {
        let c = run("CMD echo hi\n");
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        let c = run("SHELL [\"/bin/bash\", \"-ec\"]\nENTRYPOINT [\"a\"]\nCMD b c\n");
        assert_eq!(c.entrypoint.unwrap(), ["a"]);
        assert_eq!(c.cmd.unwrap(), ["/bin/bash", "-ec", "b c"]);
        // ENTRYPOINT after a CMD of the same stage keeps it.
        let c = run("CMD [\"x\"]\nENTRYPOINT [\"y\"]\n");
        assert_eq!(c.cmd.unwrap(), ["x"]);
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd() {
        let mut c = ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let df = dockerfile::parse("ENTRYPOINT [\"top\"]\n").unwrap();
        apply(
            &mut c,
            &mut StageFlags::default(),
            &df.steps[0].instruction,
            &mut None,
        )
        .unwrap();
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint.unwrap(), ["top"]);
    }

    #[test]
    fn workdirs_join() {
        assert_eq!(join_workdir(None, "a/b"), "/a/b");
        assert_eq!(join_workdir(Some("/a"), "b/../c"), "/a/c");
        assert_eq!(join_workdir(Some("/a"), "/x/"), "/x");
        assert_eq!(join_workdir(Some("/a"), ".."), "/");
    }

    #[test]
    fn ports_and_errors() {
        assert_eq!(exposed_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("x").is_err());
        assert!(exposed_ports("80/foo").is_err());
        let c =
            run("EXPOSE 80 443/tcp\nVOLUME /data /logs\nLABEL a=b\nUSER app\nSTOPSIGNAL SIGINT\n");
        assert_eq!(
            c.exposed_ports.keys().collect::<Vec<_>>(),
            ["443/tcp", "80/tcp"]
        );
        assert_eq!(c.volumes.keys().collect::<Vec<_>>(), ["/data", "/logs"]);
        assert_eq!(c.labels["a"], "b");
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn healthcheck_and_onbuild() {
        let c = run("HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost\nONBUILD RUN x\n");
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(h.interval, 5_000_000_000);
        assert_eq!(h.retries, 2);
        assert_eq!(c.on_build, ["RUN x"]);
        let c = run("HEALTHCHECK NONE\n");
        assert_eq!(c.healthcheck.unwrap().test, ["NONE"]);
    }

    #[test]
    fn changes_as_docker_import() {
        let mut c = ContainerConfig {
            env: vec!["HOME=/root".into()],
            ..Default::default()
        };
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/app\"]".into(),
                "ENV DATA=$HOME/data".into(),
                "WORKDIR /srv".into(),
                "EXPOSE 8080".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/app"]);
        assert_eq!(c.env, ["HOME=/root", "DATA=/root/data"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        let err = apply_changes(&mut ContainerConfig::default(), &["RUN true".into()]);
        assert_eq!(
            err.unwrap_err().to_string(),
            "RUN is not a valid change command"
        );
    }
}
