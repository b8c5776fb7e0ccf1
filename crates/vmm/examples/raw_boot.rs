//! The raw-boot baseline: boots the configured kernel with a minimal busybox initramfs that
//! loads the block modules, mounts an ext4 disk and powers off, N times, and prints the median
//! boot-to-marker time, QEMU exit time and QEMU peak RSS. Benchmarks compare `container run`
//! against this.
//!
//! ```text
//! cargo run --release -p vmm --example raw_boot -- --root DIR [--deb K.deb] [--rootfs IMG]
//!     [--runs N] [--accel kvm|tcg] [--memory MIB] [--cpus N] [--qemu-arg ARG]...
//! ```
//!
//! `--root` is a state directory with a kernel set (or `--deb` sets one there). Without
//! `--rootfs` a 16 MiB ext4 image is made with `mkfs.ext4 -d`. The disk is attached read-only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmm::{
    modules, Accel, DiskFormat, DiskSpec, Features, Initfs, KernelStore, QemuVm, VirtualMachine,
    VmConfig,
};

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
while read -r m; do /bin/busybox insmod "$m"; done < /etc/vminitd/modules
/bin/busybox mount -t ext4 -o ro /dev/vda /mnt && echo RAW-BOOT-MARKER
/bin/busybox poweroff -f
"#;

struct Args {
    root: PathBuf,
    deb: Option<PathBuf>,
    rootfs: Option<PathBuf>,
    runs: usize,
    accel: Accel,
    memory: u64,
    cpus: u32,
    qemu_args: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        root: PathBuf::new(),
        deb: None,
        rootfs: None,
        runs: 7,
        accel: Accel::Tcg,
        memory: 512,
        cpus: 1,
        qemu_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => a.root = val()?.into(),
            "--deb" => a.deb = Some(val()?.into()),
            "--rootfs" => a.rootfs = Some(val()?.into()),
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--accel" => a.accel = val()?.parse().map_err(|e| format!("{e}"))?,
            "--memory" => a.memory = val()?.parse().map_err(|e| format!("--memory: {e}"))?,
            "--cpus" => a.cpus = val()?.parse().map_err(|e| format!("--cpus: {e}"))?,
            "--qemu-arg" => a.qemu_args.push(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.root.as_os_str().is_empty() {
        return Err("--root DIR is required".into());
    }
    Ok(a)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system) of a process so far, from /proc/PID/stat, in seconds. Less
/// sensitive to other load on the host than wall time.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| format!("raw_boot: {e}"))?;
    let store = KernelStore::new(&args.root);
    let kernel = match &args.deb {
        Some(deb) => store.set_from_deb(deb)?,
        None => store.current()?,
    };
    let work = tempfile::tempdir()?;
    let init = work.path().join("init");
    std::fs::write(&init, INIT)?;
    let mods = modules::resolve(
        kernel.modules_dir.as_deref(),
        &modules::required(Features {
            block: true,
            ..Default::default()
        }),
    )?;
    let initfs = Initfs::new(&init)
        .modules(&mods)
        .dir("/bin")
        .file("/bin/busybox", 0o755, Path::new("/bin/busybox"))
        .build_cached(work.path())?;
    let rootfs = match &args.rootfs {
        Some(r) => r.clone(),
        None => {
            let img = work.path().join("rootfs.ext4");
            let content = work.path().join("content");
            std::fs::create_dir(&content)?;
            std::fs::write(content.join("hello"), "hello")?;
            let st = Command::new("mkfs.ext4")
                .args(["-q", "-F", "-d"])
                .arg(&content)
                .arg(&img)
                .arg("16M")
                .status()?;
            if !st.success() {
                return Err("mkfs.ext4 failed".into());
            }
            img
        }
    };
    println!(
        "kernel {} ({}), accel {}, {} cpu, {} MiB, {} runs",
        kernel.release.as_deref().unwrap_or("?"),
        kernel.vmlinux.display(),
        args.accel.qemu_name(),
        args.cpus,
        args.memory,
        args.runs
    );
    let (mut marks, mut exits, mut rsss, mut cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let log = work.path().join(format!("boot{run}.log"));
        let mut cfg = VmConfig::new(kernel.vmlinux.clone(), initfs.clone(), log.clone());
        cfg.accel = args.accel;
        cfg.cpus = args.cpus;
        cfg.memory_mib = args.memory;
        cfg.extra_args = args.qemu_args.clone();
        cfg.disks.push(DiskSpec {
            path: rootfs.clone(),
            format: DiskFormat::Raw,
            readonly: true,
        });
        let mut vm = QemuVm::new(cfg);
        let t0 = Instant::now();
        vm.start()?;
        let pid = vm.pid().ok_or("no pid")?;
        let (mut mark, mut rss, mut cpu) = (None, 0, 0.0f64);
        let status = loop {
            rss = rss.max(peak_rss_kib(pid).unwrap_or(0));
            cpu = cpu.max(cpu_secs(pid).unwrap_or(0.0));
            if mark.is_none()
                && std::fs::read(&log).is_ok_and(|b| b.windows(15).any(|w| w == b"RAW-BOOT-MARKER"))
            {
                mark = Some(t0.elapsed());
            }
            if let Some(s) = vm.try_wait()? {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                vm.kill()?;
                return Err(format!("run {run} did not finish; see {}", log.display()).into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let exit = t0.elapsed();
        let mark = mark.ok_or_else(|| {
            format!(
                "run {run}: no marker ({status:?}); log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        println!(
            "run {run}: marker {:.3} s, exit {:.3} s, QEMU cpu {:.2} s, peak RSS {} MiB",
            mark.as_secs_f64(),
            exit.as_secs_f64(),
            cpu,
            rss / 1024
        );
        cpus.push(cpu);
        marks.push(mark.as_secs_f64());
        exits.push(exit.as_secs_f64());
        rsss.push(rss as f64 / 1024.0);
    }
    println!(
        "median: marker {:.3} s, exit {:.3} s, QEMU cpu {:.2} s (to its last sample), peak RSS {:.0} MiB",
        median(marks),
        median(exits),
        median(cpus),
        median(rsss)
    );
    Ok(())
}
