//! `container build` and `container builder prune`: argument parsing and progress output
//! only; the build is the runtime's (`runtime::build`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use builder::{BuildOptions, Context, DockerfileAt};
use clap::{Args, Subcommand, ValueEnum};

use crate::global::GlobalOptions;

/// `container build` (and `container build prune`, the same as `container builder prune`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BuildArgs {
    /// `prune`: the build cache.
    #[command(subcommand)]
    pub action: Option<BuilderCommand>,
    /// Name (and tag) of the image; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build-time variable (`KEY=value`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always look for newer versions of the base images.
    #[arg(long)]
    pub pull: bool,
    /// Platform of the image (only the host's: linux/amd64 here).
    #[arg(long)]
    pub platform: Option<String>,
    /// A label of the image (`KEY=value`); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The network of RUN steps: `default` (a private NAT to the outside) or `none`.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Progress output: `auto` and `plain` print each step and RUN's output on stderr.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Also write the result to `type=oci,dest=FILE.tar` (an OCI archive),
    /// `type=tar,dest=FILE.tar|-` (the root filesystem as a tar) or `type=local,dest=DIR`
    /// (`DIR` alone: the same; `-`: the tar on stdout); repeatable.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`
    /// (`id=NAME` alone: the environment variable NAME); repeatable.
    #[arg(long = "secret", value_name = "id=NAME,src=FILE")]
    pub secrets: Vec<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// vCPUs of the builder VMs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory of the builder VMs, e.g. 2g.
    #[arg(short = 'm', long, default_value = "2g")]
    pub memory: String,
    /// The build context: a directory, or `-` for a tar archive (or a Dockerfile) on stdin.
    /// (A directory named `prune` is `./prune`.)
    #[arg(required = true)]
    pub context: Option<String>,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProgressArg {
    /// Plain lines (this builder has no other display yet).
    Auto,
    /// Plain lines.
    Plain,
    /// Nothing but errors.
    Quiet,
}

/// `container builder …`.
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache (its layers go with the next `image prune` unless an image
    /// uses them).
    Prune(PruneArgs),
}

/// `container builder prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (there is no prompt: accepted for docker's scripts).
    #[arg(short, long)]
    pub force: bool,
}

/// Prints steps and RUN output on stderr, as they happen.
struct Plain {
    quiet: bool,
}

impl builder::vm::OutputSink for Plain {
    fn output(&self, bytes: &[u8]) {
        if !self.quiet {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(bytes);
            let _ = e.flush();
        }
    }
}

impl builder::Progress for Plain {
    fn step(&self, step: &builder::StepReport<'_>) {
        if !self.quiet {
            eprintln!("{}", step.buildah_line());
        }
    }
    fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

/// `--build-arg K=V`, or `K` alone from the environment (skipped when unset, as docker).
fn build_args(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    out
}

fn read_context(a: &BuildArgs) -> Result<Context> {
    let dockerfile = match a.file.as_deref() {
        None => DockerfileAt::Default,
        Some(p) if p.as_os_str() == "-" => {
            if a.context.as_deref() == Some("-") {
                bail!("the Dockerfile and the context cannot both come from stdin");
            }
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
                .context("read the Dockerfile from stdin")?;
            DockerfileAt::Text(text)
        }
        Some(p) => DockerfileAt::Path(p.to_path_buf()),
    };
    let context = a.context.as_deref().unwrap_or(".");
    if context == "-" {
        return Ok(Context::from_stdin(std::io::stdin().lock(), dockerfile)?);
    }
    let dir = PathBuf::from(context);
    Ok(Context::from_dir(&dir, dockerfile)?)
}

/// `--secret id=NAME,src=FILE|env=VAR` (docker buildx's syntax) → the id and the value.
fn secret(spec: &str) -> Result<(String, Vec<u8>)> {
    let (mut id, mut src, mut env) = (None, None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => bail!("invalid --secret {spec:?}: unknown field {field:?}"),
        }
    }
    let id = id.ok_or_else(|| anyhow::anyhow!("invalid --secret {spec:?}: id= is required"))?;
    let value = match (src, env) {
        (Some(p), _) => {
            std::fs::read(&p).with_context(|| format!("read secret {id} from {}", p.display()))?
        }
        (None, Some(var)) => std::env::var(&var)
            .with_context(|| format!("secret {id}: environment variable {var} is not set"))?
            .into_bytes(),
        (None, None) => std::env::var(&id)
            .with_context(|| format!("secret {id}: give src=FILE or env=VAR"))?
            .into_bytes(),
    };
    Ok((id, value))
}

/// Runs `container build`. A failed build exits 1, as docker's does, whatever failed.
pub fn run(global: &GlobalOptions, a: BuildArgs) -> Result<()> {
    if let Some(cmd) = a.action {
        return builder(global, cmd);
    }
    match build_image(global, a) {
        Err(e) if e.downcast_ref::<crate::exit::ExitCode>().is_none() => {
            eprintln!("Error: {}", crate::exit::chain(&e));
            Err(crate::exit::ExitCode(1).into())
        }
        other => other,
    }
}

fn build_image(global: &GlobalOptions, a: BuildArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        let platform = oci::Platform::parse(p)?;
        runtime::image::check_platform(&platform)?;
    }
    let network = match a.network.as_str() {
        "default" | "bridge" | "host" => true,
        "none" => false,
        other => bail!("invalid --network {other:?}: default or none"),
    };
    for t in &a.tags {
        oci::Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?;
    }
    let memory_mib = crate::container::parse_memory(&a.memory)
        .map_err(|e| anyhow::anyhow!("invalid --memory {:?}: {e}", a.memory))?
        / (1024 * 1024);
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = runtime::labels::parse_label(l)?;
        labels.insert(k, v);
    }
    let outputs = a
        .outputs
        .iter()
        .map(|o| builder::output::parse(o).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let to_stdout = outputs
        .iter()
        .any(|o| matches!(o, builder::output::Output::Tar(p) if p.as_os_str() == "-"));
    let secrets = a
        .secrets
        .iter()
        .map(|s| secret(s))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let ctx = read_context(&a)?;
    let quiet = a.quiet || a.progress == ProgressArg::Quiet;
    let opts = BuildOptions {
        tags: a.tags.clone(),
        build_args: build_args(&a.build_args),
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels,
        network,
        vm: runtime::state::VmOptions {
            cpus: a.cpus.max(1),
            memory_mib: memory_mib.max(256),
            ..Default::default()
        },
        secrets,
        pull_options: oci::PullOptions {
            progress: crate::progress::Bars::for_terminal(quiet, "pulling"),
            ..Default::default()
        },
        ..Default::default()
    };
    let rt = global.runtime()?;
    let progress = Plain { quiet };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            tokio::select! {
                r = builder::build_on(&rt, &ctx, opts, &progress) => Some(r),
                _ = tokio::signal::ctrl_c() => None,
            }
        })
        .ok_or_else(|| anyhow::anyhow!("build interrupted"))?;
    match result {
        Ok(r) => {
            for o in &outputs {
                if let Err(e) = builder::output::export(rt.root(), &r, o) {
                    eprintln!("Error: {e}");
                    return Err(crate::exit::ExitCode(e.exit_code()).into());
                }
            }
            if !quiet {
                for t in &r.tags {
                    eprintln!("Successfully tagged {t}");
                }
            }
            // A tar on stdout owns it: the ID goes to stderr then.
            if to_stdout {
                eprintln!("{}", r.id);
            } else {
                println!("{}", r.id);
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("Error: {e}");
            Err(crate::exit::ExitCode(e.exit_code()).into())
        }
    }
}

/// Runs `container builder …`.
pub fn builder(global: &GlobalOptions, cmd: BuilderCommand) -> Result<()> {
    match cmd {
        BuilderCommand::Prune(_) => {
            let cache = builder::cache::BuildCache::new(&global.root_dir());
            let n = cache.prune()?;
            let mounts = cache.prune_mounts()?;
            println!("Deleted build cache records: {n}, cache mounts: {mounts}");
            Ok(())
        }
    }
}

/// `container commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author of the image.
    #[arg(short, long)]
    pub author: Option<String>,
    /// A Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Comment of the image's history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Docker's "pause while committing": accepted; the container keeps running while its
    /// files are read (freezing only its processes inside the VM is still to come).
    #[arg(short, long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub pause: bool,
    /// The container.
    pub container: String,
    /// Name of the new image.
    pub reference: Option<String>,
}

/// Runs `container commit`: prints the new image's ID.
pub fn commit(global: &GlobalOptions, a: CommitArgs) -> Result<()> {
    if let Some(r) = &a.reference {
        oci::Reference::parse(r).with_context(|| format!("invalid reference {r:?}"))?;
    }
    // Checked before the container is touched.
    let mut probe = oci::ContainerConfig::default();
    builder::config::apply_changes(&mut probe, &a.changes)?;
    let rt = global.runtime()?;
    let opts = builder::commit::CommitOptions {
        reference: a.reference.clone(),
        changes: a.changes.clone(),
        author: a.author.clone(),
        message: a.message.clone(),
        pause: a.pause,
    };
    let id = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(builder::commit::commit(&rt, &a.container, &opts))
        .with_context(|| format!("cannot commit {}", a.container))?;
    println!("{id}");
    Ok(())
}
