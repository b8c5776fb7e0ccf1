//! `container system …` commands: the guest kernel (status, df and cleanup in `system_info`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use runtime::properties::{Property, Source};
use runtime::system::{Kernel, KernelSource};

use crate::global::{Format, GlobalOptions};

/// Subcommands of `container system`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Manage the kernel the containers' VMs boot.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Is this host ready: kernel, accelerator, QEMU, vminitd, state dir, containers.
    Status(FormatArgs),
    /// Disk used by images, the rootfs cache, containers and kernels.
    Df(FormatArgs),
    /// Repair records of containers whose monitor died and remove stale sockets.
    Cleanup(FormatArgs),
    /// Pre-booted VM templates that containers start from.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Show the version of this binary and of the guest kernel (as `container version`).
    Version(crate::version::VersionArgs),
    /// Serve the Docker Engine API (v1.41) on a unix socket, for docker clients.
    Service(crate::service::ServiceArgs),
    /// Show what happens to containers, images, networks and volumes (as `container events`).
    Events(crate::events::EventsArgs),
    /// What the containers' monitors logged, merged in time order (`-f` to follow).
    Logs(crate::system_logs::LogsArgs),
    /// The settings in force (read-only: set them through their environment variables).
    #[command(subcommand)]
    Property(PropertyCommand),
}

/// Subcommands of `container system property`.
#[derive(Debug, Subcommand)]
pub enum PropertyCommand {
    /// List the settings in force: KEY VALUE SOURCE (default, env, flag or state).
    #[command(alias = "ls")]
    List(FormatArgs),
}

/// Subcommands of `container system template`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List the VM templates.
    #[command(alias = "ls")]
    List(FormatArgs),
    /// Remove every VM template and stop the pre-booted VMs waiting in the pool (the next
    /// start makes a new template).
    Prune,
}

/// Arguments of `system status|df|cleanup`.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Subcommands of `container system kernel`.
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Set the guest kernel, from a Debian kernel package, a kernel binary, or a kernel file
    /// inside a tar archive.
    Set(SetArgs),
    /// Show the guest kernel VMs boot.
    Show(ShowArgs),
}

/// Arguments of `container system kernel set`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["binary", "deb"])))]
pub struct SetArgs {
    /// A kernel image: a bzImage (vmlinuz) or an ELF vmlinux; with --tar, the kernel's path
    /// inside the archive.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// A tar archive (plain, gzip, xz or zstd) holding the kernel named by --binary.
    #[arg(long, value_name = "FILE", requires = "binary")]
    tar: Option<PathBuf>,
    /// The kernel's modules directory (lib/modules/<release>); only with --binary.
    #[arg(long, value_name = "DIR", requires = "binary")]
    modules: Option<PathBuf>,
    /// A Debian linux-image-*.deb: its vmlinuz and the modules it ships are installed.
    #[arg(long, value_name = "FILE.deb", conflicts_with_all = ["binary", "tar"])]
    deb: Option<PathBuf>,
    /// Install the kernel anew even when the store holds one of the same content (its
    /// unpacked vmlinux and modules are replaced) instead of reusing that copy.
    #[arg(long)]
    force: bool,
}

/// Arguments of `container system kernel show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs one `container system` subcommand.
pub fn run(global: &GlobalOptions, cmd: SystemCommand) -> anyhow::Result<()> {
    let store = global.runtime()?.kernels();
    match cmd {
        SystemCommand::Version(a) => crate::version::version(global, a),
        SystemCommand::Service(a) => crate::service::run(global, a),
        SystemCommand::Events(a) => crate::events::events(global, a),
        SystemCommand::Logs(a) => crate::system_logs::run(global, a),
        SystemCommand::Status(a) => crate::system_info::status(global, a.format),
        SystemCommand::Df(a) => crate::system_info::df(global, a.format),
        SystemCommand::Cleanup(a) => crate::system_info::cleanup(global, a.format),
        SystemCommand::Template(TemplateCommand::List(a)) => {
            let templates = global.runtime()?.templates();
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&templates)?),
                Format::Table => {
                    println!(
                        "{:<34} {:>5} {:>8} {:<5} {:>5} {:>4} {:>9} {:>7} CREATED",
                        "KEY", "CPUS", "MEMORY", "ACCEL", "DISKS", "NETS", "BUILD", "WAITING"
                    );
                    for t in templates {
                        println!(
                            "{:<34} {:>5} {:>6}Mi {:<5} {:>5} {:>4} {:>7}ms {:>7} {}",
                            t.key,
                            t.cpus,
                            t.memory_mib,
                            t.accel,
                            t.disks,
                            t.nets,
                            t.build_ms,
                            t.waiting,
                            t.created.format("%Y-%m-%d %H:%M:%S")
                        );
                    }
                }
            }
            Ok(())
        }
        SystemCommand::Property(PropertyCommand::List(a)) => {
            let rt = global.runtime()?;
            let root = rt.root().display().to_string();
            let root_source = match (&global.root, std::env::var_os("CONTAINER_ROOT")) {
                (None, _) => Source::Default,
                (Some(r), Some(env)) if r.as_os_str() == env => Source::Env,
                (Some(_), _) => Source::Flag,
            };
            let mut props = vec![Property::new("root", root, root_source)];
            props.extend(rt.properties());
            props.push(Property::new(
                "engine.socket",
                engine::default_socket(rt.root()).display().to_string(),
                Source::Default,
            ));
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&props)?),
                Format::Table => {
                    println!("{:<24} {:<8} VALUE", "KEY", "SOURCE");
                    for p in props {
                        println!("{:<24} {:<8} {}", p.key, p.source.as_str(), p.value);
                    }
                }
            }
            Ok(())
        }
        SystemCommand::Template(TemplateCommand::Prune) => {
            let n = global.runtime()?.templates_prune()?;
            println!("removed {n} template(s)");
            Ok(())
        }
        SystemCommand::Kernel(KernelCommand::Set(args)) => {
            let store = store.with_force(args.force);
            let kernel = match (&args.deb, &args.binary, &args.tar) {
                (Some(deb), _, _) => store
                    .set_from_deb(deb)
                    .with_context(|| format!("cannot set kernel from {}", deb.display()))?,
                (None, Some(member), Some(tar)) => store
                    .set_from_tar(tar, &member.to_string_lossy(), args.modules.as_deref())
                    .with_context(|| {
                        format!(
                            "cannot set kernel {} from {}",
                            member.display(),
                            tar.display()
                        )
                    })?,
                (None, Some(bin), None) => store
                    .set_binary(bin, args.modules.as_deref())
                    .with_context(|| format!("cannot set kernel {}", bin.display()))?,
                (None, None, _) => unreachable!("clap requires --binary or --deb"),
            };
            println!(
                "guest kernel set: {} ({})",
                kernel.release.as_deref().unwrap_or("unknown release"),
                short_id(&kernel)
            );
            Ok(())
        }
        SystemCommand::Kernel(KernelCommand::Show(args)) => {
            let kernel = store.current()?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&kernel)?),
                Format::Table => print_table(&kernel),
            }
            Ok(())
        }
    }
}

fn short_id(k: &Kernel) -> &str {
    &k.id[..k.id.len().min(12)]
}

fn print_table(k: &Kernel) {
    let (how, from) = match &k.source {
        KernelSource::Deb { path } => ("package".to_string(), path),
        KernelSource::Binary { path } => ("binary".to_string(), path),
        KernelSource::Tar { path, member } => (format!("{member} in tar archive"), path),
        KernelSource::Override { path } => ("per-container".to_string(), path),
        KernelSource::Host { path } => ("host kernel (none set)".to_string(), path),
    };
    let modules = k
        .modules_dir
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_else(|| "none (drivers built in)".into());
    println!("ID:       {}", short_id(k));
    println!("RELEASE:  {}", k.release.as_deref().unwrap_or("unknown"));
    println!("SOURCE:   {how} {}", from.display());
    println!("VMLINUX:  {}", k.vmlinux.display());
    println!("MODULES:  {modules}");
}
