//! `container system status|df|cleanup`: is this host ready to run containers, what the state
//! directory holds on disk, and repairing what a crash left behind.

use crate::global::{Format, GlobalOptions};

/// `container system status`: kernel, accelerator, QEMU, vminitd, state dir, containers.
pub fn status(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let st = global.runtime()?.status()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&st)?),
        Format::Table => {
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
            println!("ready:        {}", st.ready);
            println!("state dir:    {}", st.state_dir.display());
            println!(
                "kernel:       {}",
                if st.kernel.configured {
                    or_dash(st.kernel.release.clone())
                } else {
                    "not configured (container system kernel set --deb …)".into()
                }
            );
            println!(
                "accelerator:  {} ({})",
                or_dash(st.accelerator.name.clone()),
                st.accelerator.reason
            );
            println!(
                "qemu:         {} {}",
                or_dash(path(&st.qemu.path)),
                or_dash(st.qemu.version.clone())
            );
            println!("vminitd:      {}", or_dash(path(&st.vminitd.path)));
            let c = st.containers;
            println!(
                "containers:   {} ({} running, {} created, {} exited)",
                c.total, c.running, c.created, c.exited
            );
        }
    }
    Ok(())
}

/// `container system df`: disk used (allocated blocks, so sparse images count what they hold).
pub fn df(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let rows = global.runtime()?.df()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            println!("{:<14} {:>6} {:>12}", "TYPE", "COUNT", "SIZE");
            for r in rows {
                println!(
                    "{:<14} {:>6} {:>12}",
                    r.kind,
                    r.count,
                    crate::output::human_size(r.bytes)
                );
            }
        }
    }
    Ok(())
}

/// `container system cleanup`: repairs records of dead monitors and removes stale sockets.
pub fn cleanup(global: &GlobalOptions, format: Format) -> anyhow::Result<()> {
    let rt = global.runtime()?;
    let report = runtime::cleanup::cleanup(rt.store())?;
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
            for id in &report.unborn_removed {
                println!(
                    "removed the directory of {}, whose create was interrupted",
                    &id[..12]
                );
            }
            if report.volume_leftovers_removed > 0 {
                println!(
                    "removed {} leftover(s) of interrupted volume creates or deletes",
                    report.volume_leftovers_removed
                );
            }
            if report == runtime::cleanup::CleanupReport::default() {
                println!("nothing to clean up");
            }
        }
    }
    Ok(())
}
