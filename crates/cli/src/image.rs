//! `container image …` commands: thin wrappers over the `oci` crate that parse arguments and
//! print results (tables for people, `--format json` for programs).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use oci::{Platform, Reference, Scheme, Store};
use serde_json::{json, Value};

use crate::global::{Format, GlobalOptions};
use crate::progress::Bars;

/// Subcommands of `container image`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// List images.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show an image's manifest, config and platform as JSON.
    Inspect(InspectArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove image names (content stays until `prune`).
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Delete content no image name reaches; with -a, first remove every image name no
    /// container uses.
    Prune(PruneArgs),
    /// Write images to an OCI-layout tar archive.
    Save(SaveArgs),
    /// Read images from an OCI-layout or docker-archive tar.
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem tarball.
    Import(ImportArgs),
    /// Show the steps an image was built with, newest first.
    History(crate::image_history::HistoryArgs),
}

/// How to reach a registry.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum SchemeArg {
    /// HTTP for localhost and loopback addresses, HTTPS otherwise.
    #[default]
    Auto,
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Scheme {
        match s {
            SchemeArg::Auto => Scheme::Auto,
            SchemeArg::Http => Scheme::Http,
            SchemeArg::Https => Scheme::Https,
        }
    }
}

/// Arguments of `image pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference (`alpine`, `localhost:5000/app:v1`, `name@sha256:…`).
    pub reference: String,
    /// Platform to pick from a multi-arch image (`os/arch[/variant]`); default: the host's.
    #[arg(long)]
    pub platform: Option<String>,
    /// The OS to pick (Apple's flag; with --arch, as --platform OS/ARCH).
    #[arg(long, value_name = "OS", conflicts_with = "platform")]
    pub os: Option<String>,
    /// The architecture to pick (Apple's flag; `x86_64`/`aarch64` as amd64/arm64).
    #[arg(long, value_name = "ARCH", conflicts_with = "platform")]
    pub arch: Option<String>,
    /// Registry protocol.
    #[arg(long, value_enum, default_value_t)]
    pub scheme: SchemeArg,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress output: auto (bars on a terminal), plain (a line per layer), none.
    #[arg(long, value_enum, default_value_t, value_name = "TYPE")]
    pub progress: crate::progress::ProgressMode,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_downloads: u16,
}

/// Arguments of `image push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image to push; it goes to the registry and repository its name says.
    pub reference: String,
    /// Registry protocol.
    #[arg(long, value_enum, default_value_t)]
    pub scheme: SchemeArg,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Blobs larger than this many bytes are uploaded in chunks of this size.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
}

/// Arguments of `image list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Print only the references.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images to inspect (printed as a JSON array, one object per reference, like docker).
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Platform to show for a multi-arch image.
    #[arg(long)]
    pub platform: Option<String>,
    /// Go template rendered over each image's document (`{{.digest}}`, `{{.config.Env}}`),
    /// one line each; `json` (the default) prints the JSON array.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Arguments of `image tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image.
    pub source: String,
    /// New name.
    pub target: String,
}

/// Arguments of `image delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Names to remove.
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// Arguments of `image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container (in any state) uses, not only unreachable content.
    #[arg(short, long)]
    pub all: bool,
}

/// Arguments of `image save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Archive to write (default, or `-`: standard output, which must not be a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Save only this platform's manifest (OS/ARCH[/VARIANT]) of a multi-platform image.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Images to save.
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// Arguments of `image load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive to read (default, or `-`: standard input).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Load the images even if the archive holds invalid members (absolute paths, `..`):
    /// those are skipped with a warning instead of refusing the archive.
    #[arg(short, long)]
    pub force: bool,
}

/// Arguments of `image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable, as docker's.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// The comment of the image's history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Root filesystem tarball (plain or gzip).
    pub file: PathBuf,
    /// Name for the new image.
    pub reference: String,
}

fn parse_ref(s: &str) -> Result<Reference> {
    Ok(Reference::parse(s)?)
}

fn parse_platform(s: Option<&str>) -> Result<Option<Platform>> {
    s.map(Platform::parse).transpose().map_err(Into::into)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Opens the content store under the global state directory.
pub fn open_store(global: &GlobalOptions) -> Result<Store> {
    Ok(Store::open(&global.root_dir())?)
}

/// Runs one `container image` subcommand.
pub fn run(global: &GlobalOptions, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::History(a) => crate::image_history::history(global, a),
        ImageCommand::Pull(a) => pull(global, a),
        ImageCommand::Push(a) => push(global, a),
        ImageCommand::List(a) => list(global, a),
        ImageCommand::Inspect(a) => inspect(global, a),
        ImageCommand::Tag(a) => {
            let store = open_store(global)?;
            let (src, dst) = (parse_ref(&a.source)?, parse_ref(&a.target)?);
            let target = store.resolve(&src)?;
            store.set_ref(&dst, &target)?;
            if let Ok(image) = store.image(&dst) {
                let id = image.manifest.config.digest.to_string();
                runtime::events::image_event(&global.root_dir(), "tag", &id, &dst.to_string());
            }
            Ok(())
        }
        ImageCommand::Delete(a) => {
            let store = open_store(global)?;
            // Parse everything first so a typo deletes nothing.
            let refs = a
                .references
                .iter()
                .map(|r| parse_ref(r))
                .collect::<Result<Vec<_>>>()?;
            for r in refs {
                let id = store
                    .image(&r)
                    .ok()
                    .map(|i| i.manifest.config.digest.to_string());
                store.remove_ref(&r)?;
                if let Some(id) = id {
                    runtime::events::image_event(&global.root_dir(), "untag", &id, &r.to_string());
                }
                println!("Deleted {r}");
            }
            Ok(())
        }
        ImageCommand::Prune(a) => {
            let store = open_store(global)?;
            if a.all {
                let root = global.root_dir();
                for r in global.runtime()?.image_untag_unused(&store)? {
                    runtime::events::image_event(&root, "untag", &r.to_string(), &r.to_string());
                    println!("Untagged: {r}");
                }
            }
            // The build cache's layers are roots too: `builder prune` lets them go.
            let cache = builder::cache::BuildCache::new(&global.root_dir());
            let report = store.prune_keeping(|| cache.layer_digests())?;
            println!(
                "Deleted {} blobs, {} temp files; reclaimed {}",
                report.blobs_removed,
                report.temp_files_removed,
                crate::output::human_size(report.bytes_freed)
            );
            Ok(())
        }
        ImageCommand::Save(a) => {
            let store = open_store(global)?;
            let refs = a
                .references
                .iter()
                .map(|r| parse_ref(r))
                .collect::<Result<Vec<_>>>()?;
            let platform = parse_platform(a.platform.as_deref())?;
            let save = |output: &std::path::Path| match &platform {
                Some(p) => oci::save_platform(&store, &refs, p, output),
                None => oci::save(&store, &refs, output),
            };
            match a
                .output
                .as_deref()
                .filter(|o| *o != std::path::Path::new("-"))
            {
                Some(output) => save(output)?,
                None => {
                    use std::io::IsTerminal;
                    if std::io::stdout().is_terminal() {
                        anyhow::bail!(
                            "refusing to write an image archive to a terminal: give -o FILE or \
                             redirect standard output"
                        );
                    }
                    // The archive is written whole (and atomically) first, so a failed save
                    // sends nothing down the pipe.
                    let temp = tempfile::Builder::new()
                        .prefix(".save-")
                        .tempfile_in(global.root_dir())
                        .context("make a temporary file for the archive")?;
                    save(temp.path())?;
                    let mut file = std::fs::File::open(temp.path())?;
                    std::io::copy(&mut file, &mut std::io::stdout().lock())
                        .context("write the archive to standard output")?;
                }
            }
            Ok(())
        }
        ImageCommand::Load(a) => {
            let store = open_store(global)?;
            let stdin_copy;
            let input = match a
                .input
                .as_deref()
                .filter(|i| *i != std::path::Path::new("-"))
            {
                Some(input) => input,
                None => {
                    use std::io::IsTerminal;
                    if std::io::stdin().is_terminal() {
                        anyhow::bail!(
                            "no archive to load: give -i FILE or send it on standard input"
                        );
                    }
                    // The loader reads the archive more than once (index, then blobs).
                    let mut temp = tempfile::Builder::new()
                        .prefix(".load-")
                        .tempfile_in(global.root_dir())
                        .context("make a temporary file for the archive")?;
                    std::io::copy(&mut std::io::stdin().lock(), &mut temp)
                        .context("read the archive from standard input")?;
                    stdin_copy = temp;
                    stdin_copy.path()
                }
            };
            let loaded = oci::load_with(&store, input, a.force)?;
            if !loaded.rejected.is_empty() {
                eprintln!(
                    "Warning: skipped invalid archive members: {}",
                    loaded.rejected.join(", ")
                );
            }
            for r in loaded.references {
                let name = r.to_string();
                runtime::events::image_event(&global.root_dir(), "load", &name, &name);
                println!("Loaded image: {r}");
            }
            Ok(())
        }
        ImageCommand::Import(a) => {
            let store = open_store(global)?;
            let r = parse_ref(&a.reference)?;
            let mut config = oci::ContainerConfig::default();
            builder::config::apply_changes(&mut config, &a.changes)?;
            let image =
                oci::archive::import_with(&store, &a.file, &r, &config, a.message.as_deref())?;
            println!("{}", image.target.digest);
            Ok(())
        }
    }
}

fn pull(global: &GlobalOptions, a: PullArgs) -> Result<()> {
    let store = open_store(global)?;
    let reference = parse_ref(&a.reference)?;
    let platform = match (a.os.as_deref(), a.arch.as_deref()) {
        (None, None) => parse_platform(a.platform.as_deref())?,
        (os, arch) => Some(crate::container::os_arch_platform(os, arch)?),
    };
    let opts = oci::PullOptions {
        platform,
        scheme: a.scheme.into(),
        concurrency: a.max_concurrent_downloads.into(),
        credentials: None,
        progress: a.progress.sink(a.quiet, "pulling"),
    };
    // Ctrl-C drops the pull: its downloads are cancelled and their temp files removed before
    // the runtime (and the process) goes away; nothing was named, so the store is unchanged.
    let image = runtime()?
        .block_on(async {
            tokio::select! {
                pulled = oci::pull(&store, &reference, &opts) => Some(pulled),
                _ = tokio::signal::ctrl_c() => None,
            }
        })
        .ok_or_else(|| anyhow::anyhow!("pull of {reference} interrupted"))?
        .with_context(|| format!("cannot pull {reference}"))?;
    runtime::events::image_event(
        &global.root_dir(),
        "pull",
        &reference.to_string(),
        &reference.to_string(),
    );
    if !a.quiet {
        eprintln!(
            "Pulled {} ({}, {})",
            reference, image.target.digest, image.platform
        );
    }
    println!("{reference}");
    Ok(())
}

fn push(global: &GlobalOptions, a: PushArgs) -> Result<()> {
    let store = open_store(global)?;
    let reference = parse_ref(&a.reference)?;
    let opts = oci::PushOptions {
        scheme: a.scheme.into(),
        chunk_size: a.chunk_size,
        progress: Bars::for_terminal(a.quiet, "pushing"),
        ..Default::default()
    };
    let digest = runtime()?
        .block_on(oci::push(&store, &reference, &opts))
        .with_context(|| format!("cannot push {reference}"))?;
    let name = reference.to_string();
    runtime::events::image_event(&global.root_dir(), "push", &name, &name);
    if !a.quiet {
        eprintln!("Pushed {reference}");
    }
    println!("{digest}");
    Ok(())
}

fn list(global: &GlobalOptions, a: ListArgs) -> Result<()> {
    let store = open_store(global)?;
    let entries = store.list()?;
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            // A multi-arch image pulled for another platform still lists, without details.
            let image = store.image(&e.reference).ok();
            json!({
                "reference": e.reference.to_string(),
                "digest": e.descriptor.digest.to_string(),
                "mediaType": e.descriptor.media_type,
                "size": image.as_ref().map_or(e.descriptor.size, |i| i.size()),
                "platform": image.as_ref().map(|i| i.platform.to_string()),
                "created": image.as_ref().and_then(|i| i.config.created.clone()),
            })
        })
        .collect();
    if a.quiet {
        for e in &entries {
            println!("{}", e.reference);
        }
        return Ok(());
    }
    match a.format {
        Format::Json => print_json(&Value::Array(rows))?,
        Format::Table => {
            let width = entries
                .iter()
                .map(|e| e.reference.to_string().len())
                .max()
                .unwrap_or(0)
                .max("REFERENCE".len());
            println!(
                "{:width$}  {:12}  {:13}  {:>9}  CREATED",
                "REFERENCE", "DIGEST", "PLATFORM", "SIZE"
            );
            for (e, row) in entries.iter().zip(&rows) {
                println!(
                    "{:width$}  {:12}  {:13}  {:>9}  {}",
                    e.reference.to_string(),
                    e.descriptor.digest.short(),
                    row["platform"].as_str().unwrap_or("-"),
                    crate::output::human_size(row["size"].as_u64().unwrap_or(0)),
                    row["created"].as_str().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}

fn inspect(global: &GlobalOptions, a: InspectArgs) -> Result<()> {
    let store = open_store(global)?;
    let platform = parse_platform(a.platform.as_deref())?.unwrap_or_else(Platform::host);
    let mut out = Vec::new();
    for r in &a.references {
        let reference = parse_ref(r)?;
        let image = store.image_for(&reference, &platform)?;
        out.push(inspect_json(&store, &image)?);
    }
    // `table` was accepted when inspect printed JSON whatever the format: it still does.
    let format = a.format.as_deref().filter(|f| *f != "table");
    crate::format::print_inspect(&out, format)
}

/// Prints pretty JSON; a closed pipe (`| head`) is not an error.
fn print_json(value: &Value) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn inspect_json(store: &Store, image: &oci::Image) -> Result<Value> {
    let read_json = |d: &oci::Digest| -> Result<Value> {
        let bytes = store.read_blob(d)?;
        serde_json::from_slice(&bytes).with_context(|| format!("stored document {d} is not JSON"))
    };
    let manifest = read_json(image.manifest_digest())?;
    let index = if &image.target.digest != image.manifest_digest() {
        Some(read_json(&image.target.digest)?)
    } else {
        None
    };
    let c = &image.config.config;
    Ok(json!({
        "reference": image.reference.to_string(),
        "digest": image.target.digest.to_string(),
        "mediaType": image.target.media_type,
        "manifestDigest": image.manifest_digest().to_string(),
        "platform": {
            "os": image.platform.os,
            "architecture": image.platform.architecture,
            "variant": image.platform.variant,
        },
        "size": image.size(),
        "created": image.config.created,
        "config": {
            "Env": c.env,
            "Cmd": c.cmd,
            "Entrypoint": c.entrypoint,
            "WorkingDir": c.working_dir.clone().unwrap_or_default(),
            "User": c.user.clone().unwrap_or_default(),
            "ExposedPorts": c.exposed_ports,
            "Volumes": c.volumes,
            "Labels": c.labels,
            "StopSignal": c.stop_signal,
        },
        "rootfs": image.config.rootfs,
        "layers": image.layers(),
        "manifest": manifest,
        "index": index,
    }))
}
