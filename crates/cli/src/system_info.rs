//! `container system status|df|cleanup`: is this host ready to run containers, what the state
//! directory holds on disk, and repairing what a crash left behind.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::global::{Format, GlobalOptions};

/// `container system status`: kernel, accelerator, QEMU, vminitd, state dir, containers.
pub fn status(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let root = global.root_dir();
    let kernels = vmm::KernelStore::new(&root);
    let kernel = kernels.configured()?;
    let qemu = find_in_path("qemu-system-x86_64");
    let qemu_version = qemu.as_deref().and_then(qemu_version);
    let accel = match (&kernel, &qemu) {
        (Some(k), Some(q)) => match vmm::accel::choose(None, k, q) {
            Ok(d) => json!({"name": d.accel.qemu_name(), "reason": d.reason}),
            Err(e) => json!({"name": null, "reason": e.to_string()}),
        },
        // Without a kernel the PVM probe cannot run: say what /dev/kvm alone tells.
        _ => match vmm::accel::kvm_usable() {
            Ok(()) if !vmm::accel::is_pvm_host() => {
                json!({"name": "kvm", "reason": "hardware virtualization available"})
            }
            Ok(()) => {
                json!({"name": null, "reason": "PVM host: decided by a probe boot of the kernel"})
            }
            Err(why) => json!({"name": "tcg", "reason": format!("/dev/kvm is not usable ({why})")}),
        },
    };
    let vminitd = runtime::vminitd::find();
    let store = runtime::state::Store::open(&root)?;
    let (mut created, mut running, mut exited) = (0u64, 0u64, 0u64);
    for record in store.list()? {
        match store.reconcile(record)?.status {
            runtime::state::Status::Created => created += 1,
            runtime::state::Status::Running => running += 1,
            runtime::state::Status::Exited => exited += 1,
        }
    }
    let ready = kernel.is_some() && qemu.is_some() && vminitd.is_some();
    let v = json!({
        "ready": ready,
        "stateDir": root,
        "kernel": {
            "configured": kernel.is_some(),
            "release": kernel.as_ref().and_then(|k| k.release.clone()),
            "id": kernel.as_ref().map(|k| k.id.clone()),
        },
        "accelerator": accel,
        "qemu": {"path": qemu, "version": qemu_version},
        "vminitd": {"path": vminitd},
        "containers": {
            "total": created + running + exited,
            "created": created,
            "running": running,
            "exited": exited,
        },
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Format::Table => {
            let s = |v: &Value| match v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("ready:        {}", v["ready"]);
            println!("state dir:    {}", root.display());
            println!(
                "kernel:       {}",
                if kernel.is_some() {
                    s(&v["kernel"]["release"])
                } else {
                    "not configured (container system kernel set --deb …)".into()
                }
            );
            println!(
                "accelerator:  {} ({})",
                s(&v["accelerator"]["name"]),
                s(&v["accelerator"]["reason"])
            );
            println!(
                "qemu:         {} {}",
                s(&v["qemu"]["path"]),
                s(&v["qemu"]["version"])
            );
            println!("vminitd:      {}", s(&v["vminitd"]["path"]));
            println!(
                "containers:   {} ({} running, {} created, {} exited)",
                created + running + exited,
                running,
                created,
                exited
            );
        }
    }
    Ok(())
}

/// `container system df`: disk used (allocated blocks, so sparse images count what they hold).
pub fn df(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let root = global.root_dir();
    let images = oci::Store::open(&root)?.list()?.len();
    let kernels = vmm::KernelStore::new(&root);
    let kernel_count = kernels.list().len();
    let containers = runtime::state::Store::open(&root)?.list()?.len();
    let count_files = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ext4"))
                    .count()
            })
            .unwrap_or(0)
    };
    let rows = [
        (
            "images",
            images,
            disk_usage(&root.join("content")) + disk_usage(&root.join("content-ingest")),
        ),
        (
            "rootfs cache",
            count_files(&root.join("rootfs")),
            disk_usage(&root.join("rootfs")),
        ),
        (
            "containers",
            containers,
            disk_usage(&root.join("containers")),
        ),
        ("kernels", kernel_count, disk_usage(kernels.dir())),
    ];
    match format {
        Format::Json => {
            let v: Vec<Value> = rows
                .iter()
                .map(|(t, n, b)| json!({"type": t, "count": n, "bytes": b}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("{:<14} {:>6} {:>12}", "TYPE", "COUNT", "SIZE");
            for (t, n, b) in rows {
                println!("{t:<14} {n:>6} {:>12}", human(b));
            }
        }
    }
    Ok(())
}

/// `container system cleanup`: repairs records of dead monitors and removes stale sockets.
pub fn cleanup(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let store = runtime::state::Store::open(&global.root_dir())?;
    let report = runtime::cleanup::cleanup(&store)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            for id in &report.repaired {
                println!("repaired {} (monitor had died)", &id[..12.min(id.len())]);
            }
            for id in &report.sockets_removed {
                println!("removed stale sockets of {}", &id[..12.min(id.len())]);
            }
            for dir in &report.orphan_socket_dirs {
                println!("removed orphan socket directory {dir}");
            }
            for id in &report.taps_removed {
                println!("removed stale taps of {}", &id[..12.min(id.len())]);
            }
            for id in &report.addresses_released {
                println!(
                    "released network addresses of deleted {}",
                    &id[..12.min(id.len())]
                );
            }
            if report == runtime::cleanup::CleanupReport::default() {
                println!("nothing to clean up");
            }
        }
    }
    Ok(())
}

/// Bytes allocated on disk under `path` (files counted once per inode).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(d) = std::fs::read_dir(&p) {
                stack.extend(d.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// First line of `qemu --version`, e.g. `QEMU emulator version 7.2.x (Debian …)`.
fn qemu_version(qemu: &Path) -> Option<String> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}
