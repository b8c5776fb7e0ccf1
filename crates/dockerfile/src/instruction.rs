//! The typed instructions of a Dockerfile.
//!
//! Words are kept as written (quotes, escapes and `$VAR` intact) for the instructions the
//! builder expands; [`Instruction::expand`] turns them into the values Docker uses, given the
//! environment in effect before the instruction.

use std::time::Duration;

use crate::lex::{expand_heredoc, ExpandError, Lexer, Lookup};

/// One instruction of a Dockerfile and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// 1-based line it ends on: its last continuation line or heredoc delimiter.
    pub end_line: usize,
    /// The instruction as one line: continuations joined, comment lines dropped, heredoc
    /// bodies left out (Docker's "original" text, e.g. for image history).
    pub original: String,
    /// What it says.
    pub instruction: Instruction,
}

/// A Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From(From),
    /// `RUN [--mount=…] [--network=…] [--security=…] [--device=…] COMMAND`.
    Run(Run),
    /// `CMD COMMAND`: the default command of the image.
    Cmd(Command),
    /// `ENTRYPOINT COMMAND`.
    Entrypoint(Command),
    /// `SHELL ["executable", "param"…]`: the shell for shell-form commands (exec form only).
    Shell(Vec<String>),
    /// `COPY [flags] SRC… DEST`.
    Copy(Copy),
    /// `ADD [flags] SRC… DEST`.
    Add(Add),
    /// `ENV KEY=VALUE…` or the legacy `ENV KEY VALUE`.
    Env(Vec<KeyValue>),
    /// `ARG NAME[=DEFAULT]…`.
    Arg(Vec<ArgDecl>),
    /// `LABEL KEY=VALUE…` (or the legacy `LABEL KEY VALUE`).
    Label(Vec<KeyValue>),
    /// `EXPOSE PORT[/PROTO]…`.
    Expose(Vec<String>),
    /// `VOLUME PATH…` or `VOLUME ["PATH", …]`.
    Volume(Vec<String>),
    /// `WORKDIR PATH`.
    Workdir(String),
    /// `USER USER[:GROUP]`.
    User(String),
    /// `STOPSIGNAL SIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD COMMAND`.
    Healthcheck(Healthcheck),
    /// `ONBUILD INSTRUCTION`: a trigger for builds that use this image as their base.
    Onbuild(Onbuild),
    /// `MAINTAINER NAME` (deprecated by Docker in favour of a label).
    Maintainer(String),
}

/// The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text as written, run by the stage's SHELL (default `/bin/sh -c`).
    /// Escapes other than line continuations are left for the shell.
    Shell(String),
    /// Exec form: a JSON array of strings, run without a shell.
    Exec(Vec<String>),
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image (or an earlier stage's name), as written: it may use global ARGs.
    pub image: String,
    /// `--platform`, as written.
    pub platform: Option<String>,
    /// The stage name after `AS`, lowercased as Docker does.
    pub alias: Option<String>,
}

/// A here-document (`<<EOF … EOF`) attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`). For COPY/ADD it is also
    /// the name of the file written.
    pub name: String,
    /// The body: every line up to the delimiter line, each with its line ending, tabs not yet
    /// stripped (see [`Heredoc::text`]).
    pub content: String,
    /// `<<-`: leading tabs are stripped from each line of the body and from the delimiter line.
    pub chomp: bool,
    /// False when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): the body is
    /// then taken literally, with no variable expansion.
    pub expand: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
}

impl Heredoc {
    /// The body with leading tabs stripped from each line when `chomp` is set.
    pub fn text(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// Here-documents named on the command line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The value of each `--mount` flag, unparsed (`type=cache,target=/root/.cache`).
    pub mounts: Vec<String>,
    /// `--network` (`default`, `none`, `host`).
    pub network: Option<String>,
    /// `--security` (`sandbox`, `insecure`).
    pub security: Option<String>,
    /// The value of each `--device` flag, unparsed.
    pub devices: Vec<String>,
}

impl Run {
    /// The command a shell-form RUN hands to the shell, with its here-documents put back
    /// after it as a shell expects them (command line, then each body and delimiter).
    ///
    /// Docker special-cases a command that is a single heredoc (`RUN <<EOF`): it runs the
    /// (tab-stripped) body as the script, or as a program when it starts with `#!`; that
    /// choice is the builder's, with [`Heredoc::text`].
    pub fn shell_script(&self) -> Option<String> {
        let Command::Shell(line) = &self.command else {
            return None;
        };
        let mut script = line.clone();
        for heredoc in &self.heredocs {
            script.push('\n');
            script.push_str(&heredoc.content);
            script.push_str(&heredoc.name);
        }
        Some(script)
    }

    /// The stage or image named by `from=` in each `--mount`, in order.
    pub(crate) fn mount_sources(&self) -> impl Iterator<Item = &str> {
        self.mounts.iter().filter_map(|mount| {
            mount.split(',').find_map(|field| {
                let (key, value) = field.split_once('=')?;
                (key.eq_ignore_ascii_case("from") && !value.is_empty()).then_some(value)
            })
        })
    }
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path in the build context (or stage, or image), a URL or git reference for ADD.
    Path(String),
    /// An inline file from a here-document (`COPY <<EOF /dest`).
    Heredoc(Heredoc),
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The sources, in order.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--from`: a stage name or index, an image, or a named context. Never expanded.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// Each `--exclude` pattern.
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// The sources, in order.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`, when given.
    pub keep_git_dir: Option<bool>,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
    /// Each `--exclude` pattern.
    pub excludes: Vec<String>,
}

/// A `KEY=VALUE` of ENV or LABEL, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A `NAME[=DEFAULT]` of ARG, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default; `None` when no `=` was written (`NAME=` is `Some("")`).
    pub default: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Cmd(HealthcheckCmd),
}

/// The check of `HEALTHCHECK CMD`. Options are `None` when not given or zero: Docker's zero
/// means "use the default" (interval 30s, timeout 30s, start period 0s, start interval 5s,
/// retries 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCmd {
    /// The command.
    pub command: Command,
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
}

impl Healthcheck {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD", args…]` or
    /// `["CMD-SHELL", command]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::None => vec!["NONE".into()],
            Healthcheck::Cmd(check) => match &check.command {
                Command::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                Command::Shell(line) => vec!["CMD-SHELL".into(), line.clone()],
            },
        }
    }
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as it goes into the image config: the text after `ONBUILD`, followed by
    /// any heredoc bodies and delimiters. Builds that use the image parse it again.
    pub expression: String,
    /// The trigger, parsed.
    pub instruction: Box<Instruction>,
}

impl Instruction {
    /// The keyword, uppercase (`"RUN"`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Whether the builder substitutes variables in this instruction. Docker's reference
    /// ("Environment replacement") lists ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
    /// VOLUME and WORKDIR; ARG expands its default value and RUN the values of its `--mount`
    /// options. RUN, CMD and ENTRYPOINT commands are left to the shell at run time; SHELL,
    /// HEALTHCHECK and MAINTAINER are taken literally; ONBUILD is expanded only when its
    /// trigger runs in a later build.
    pub fn expands_variables(&self) -> bool {
        match self {
            Instruction::From(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Env(_)
            | Instruction::Arg(_)
            | Instruction::Label(_)
            | Instruction::Expose(_)
            | Instruction::Volume(_)
            | Instruction::Workdir(_)
            | Instruction::User(_)
            | Instruction::StopSignal(_) => true,
            Instruction::Run(run) => !run.mounts.is_empty(),
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Shell(_)
            | Instruction::Healthcheck(_)
            | Instruction::Onbuild(_)
            | Instruction::Maintainer(_) => false,
        }
    }

    /// The instruction with variables substituted and quotes removed as Docker's builder does
    /// before running it, looking variables up in `env` (the ENV and ARG values in effect
    /// *before* this instruction: `ENV a=1 b=$a` gives `b` the old `a`).
    ///
    /// - FROM: image and platform (Docker uses the global ARGs only; see
    ///   [`Stages::resolve`](crate::Stages::resolve)).
    /// - ENV, LABEL: each key and value. ARG: each default (names stay as written).
    /// - COPY, ADD: sources, destination, `--chown`, `--chmod`, `--checksum`; heredoc sources
    ///   whose delimiter was not quoted get their body expanded (tabs are stripped first for
    ///   `<<-`, and `chomp` is cleared). `COPY --from` must not use variables.
    /// - EXPOSE: each word, split again after expansion. VOLUME, WORKDIR, USER, STOPSIGNAL.
    /// - RUN: the value of each `key=value` of each `--mount`.
    ///
    /// Other instructions come back unchanged.
    pub fn expand<L: Lookup + ?Sized>(
        &self,
        lexer: &Lexer,
        env: &L,
    ) -> Result<Instruction, ExpandError> {
        let word = |w: &str| lexer.expand(w, env);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let pairs = |kvs: &[KeyValue]| {
            kvs.iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: word(&kv.key)?,
                        value: word(&kv.value)?,
                    })
                })
                .collect::<Result<Vec<_>, ExpandError>>()
        };
        let sources = |sources: &[Source]| {
            sources
                .iter()
                .map(|source| match source {
                    Source::Path(path) => Ok(Source::Path(word(path)?)),
                    Source::Heredoc(doc) if doc.expand => Ok(Source::Heredoc(Heredoc {
                        content: expand_heredoc(&doc.text(), env)?,
                        chomp: false,
                        ..doc.clone()
                    })),
                    Source::Heredoc(doc) => Ok(Source::Heredoc(doc.clone())),
                })
                .collect::<Result<Vec<_>, ExpandError>>()
        };
        Ok(match self {
            Instruction::From(from) => Instruction::From(From {
                image: word(&from.image)?,
                platform: opt(&from.platform)?,
                alias: from.alias.clone(),
            }),
            Instruction::Env(kvs) => Instruction::Env(pairs(kvs)?),
            Instruction::Label(kvs) => Instruction::Label(pairs(kvs)?),
            Instruction::Arg(decls) => Instruction::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: d.name.clone(),
                            default: opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_, ExpandError>>()?,
            ),
            Instruction::Copy(copy) => {
                if let Some(from) = &copy.from {
                    check_no_variables(lexer, from)?;
                }
                Instruction::Copy(Copy {
                    sources: sources(&copy.sources)?,
                    dest: word(&copy.dest)?,
                    chown: opt(&copy.chown)?,
                    chmod: opt(&copy.chmod)?,
                    ..copy.clone()
                })
            }
            Instruction::Add(add) => Instruction::Add(Add {
                sources: sources(&add.sources)?,
                dest: word(&add.dest)?,
                chown: opt(&add.chown)?,
                chmod: opt(&add.chmod)?,
                checksum: opt(&add.checksum)?,
                ..add.clone()
            }),
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for port in ports {
                    out.extend(lexer.expand_words(port, env)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(paths) => {
                Instruction::Volume(paths.iter().map(|p| word(p)).collect::<Result<_, _>>()?)
            }
            Instruction::Workdir(path) => Instruction::Workdir(word(path)?),
            Instruction::User(user) => Instruction::User(word(user)?),
            Instruction::StopSignal(signal) => Instruction::StopSignal(word(signal)?),
            Instruction::Run(run) => Instruction::Run(Run {
                mounts: run
                    .mounts
                    .iter()
                    .map(|m| expand_mount(m, &word))
                    .collect::<Result<_, _>>()?,
                ..run.clone()
            }),
            other => other.clone(),
        })
    }
}

/// Docker refuses variables in `COPY --from`: the stage graph is fixed before any ENV runs.
fn check_no_variables(lexer: &Lexer, from: &str) -> Result<(), ExpandError> {
    let none = |_: &str| None::<String>;
    if lexer.expand(from, &none)? != from {
        return Err(ExpandError {
            word: from.to_string(),
            message: "variable expansion is not supported for --from, define a new stage with \
                      FROM using ARG from global scope as a workaround"
                .into(),
        });
    }
    Ok(())
}

fn expand_mount(
    mount: &str,
    word: &impl Fn(&str) -> Result<String, ExpandError>,
) -> Result<String, ExpandError> {
    let fields = mount
        .split(',')
        .map(|field| match field.split_once('=') {
            Some((key, value)) => Ok(format!("{key}={}", word(value)?)),
            None => Ok(field.to_string()),
        })
        .collect::<Result<Vec<_>, ExpandError>>()?;
    Ok(fields.join(","))
}
