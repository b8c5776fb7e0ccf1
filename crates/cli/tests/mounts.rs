//! Volumes, bind mounts, tmpfs, read-only rootfs and capabilities, end to end with real VMs
//! (see `common::vm` for the environment). Needs what tests/run.rs needs, plus virtiofsd.

mod common;

use common::images;
use common::vm::{Env, IMAGE};
use serde_json::json;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn volumes_keep_data_across_containers_and_refuse_deletion_while_used() {
    let env = Env::new(true);
    assert_eq!(
        env.run(&["volume", "create", "data", "--size", "64m"])
            .success()
            .stdout,
        "data\n"
    );
    let ls = env
        .run(&["volume", "ls", "--format", "json"])
        .success()
        .json();
    assert_eq!(ls[0]["name"], "data");
    assert_eq!(ls[0]["sizeBytes"], 64 << 20);
    env.run(&["volume", "create", "data"])
        .fails_with("already exists");
    env.run(&["volume", "create", "a/b"])
        .fails_with("invalid volume name");
    env.run(&["volume", "inspect", "nosuch"])
        .fails_with("no such volume");

    // Written by one container...
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-v",
            "data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo persisted > /data/f && grep ' /data ' /proc/mounts",
        ])
        .success();
    assert!(r.stdout.starts_with("/dev/vdb /data ext4 rw"), "{r:?}");

    // ...read by the next, mounted read-only there; a stopped container still holds it.
    env.run(&[
        "create",
        "--name",
        "reader",
        "-u",
        "0",
        "-v",
        "data:/data:ro",
        IMAGE,
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ])
    .success();
    env.run(&["volume", "rm", "data"])
        .fails_with("in use by container(s) reader");
    let r = env.run(&["start", "-a", "reader"]);
    assert_eq!(r.stdout, "persisted\n", "{r:?}");
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    let info = env.run(&["volume", "inspect", "data"]).success().json();
    assert_eq!(info[0]["containers"], json!(["reader"]));
    env.run(&["delete", "reader"]).success();
    assert_eq!(
        env.run(&["volume", "rm", "data"]).success().stdout,
        "data\n"
    );
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "");
    assert!(!env.cli.root().join("volumes/data").exists());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn read_only_rootfs_tmpfs_and_a_volume_in_use_by_a_running_container() {
    let env = Env::new(true);
    // --read-only rootfs; --tmpfs and a volume made on the fly by --mount stay writable.
    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m",
            "--mount",
            "type=volume,source=auto,target=/auto",
            IMAGE,
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo rootfs-ro; echo t > /scratch/t && cat /scratch/t; \
             echo v > /auto/v && cat /auto/v; grep -E ' (/scratch|/) ' /proc/mounts",
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[..3], ["rootfs-ro", "t", "v"], "{r:?}");
    assert!(lines[3].starts_with("/dev/vda / ext4 ro"), "{r:?}");
    assert!(
        lines[4].starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev")
            && lines[4].contains("size=1024k"),
        "{r:?}"
    );
    let ls = env.run(&["volume", "ls", "-q"]).success();
    assert_eq!(ls.stdout, "auto\n");

    // One VM at a time: a second container cannot mount a volume a running one holds.
    env.run(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "auto:/auto",
        IMAGE,
        "sleep",
        "120",
    ])
    .success();
    let r = env.run(&["run", "--rm", "-v", "auto:/auto", IMAGE, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("volume auto is in use"), "{r:?}");
    env.run(&["volume", "prune"]).success();
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "auto\n");
    env.run(&["delete", "-f", "holder"]).success();
    assert_eq!(env.run(&["volume", "prune"]).success().stdout, "auto\n");
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn anonymous_volumes_for_image_volumes_and_bare_paths_outlive_their_container_unless_rm_v() {
    let env = Env::new(true);
    // An image declaring `VOLUME /vol`.
    let dir = tempfile::tempdir().unwrap();
    let layers = images::busybox_layers();
    let mut config = images::busybox_config("amd64", &layers)["config"].clone();
    config["Volumes"] = json!({"/vol/": {}});
    let tar = images::archive(dir.path(), "localhost/volume-test:1", &layers, config);
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();

    let r = env
        .run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "-v",
            "/anon",
            "localhost/volume-test:1",
            "sh",
            "-c",
            "echo x > /vol/x && echo y > /anon/y && grep -E ' /(vol|anon) ' /proc/mounts",
        ])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("/dev/vdb /anon ext4 rw"), "{r:?}");
    assert!(lines[1].starts_with("/dev/vdc /vol ext4 rw"), "{r:?}");
    // --rm took its anonymous volumes along.
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "");

    // A named volume given for the image's VOLUME path replaces the anonymous one; a created
    // container's anonymous volume outlives a plain delete (as docker's), dangling for
    // `volume prune`.
    let id = env
        .run(&[
            "create",
            "-v",
            "named:/vol",
            "-v",
            "/other",
            "localhost/volume-test:1",
            "true",
        ])
        .success()
        .stdout;
    let vols = env.run(&["volume", "ls", "-q"]).success().stdout;
    let vols: Vec<&str> = vols.lines().collect();
    assert_eq!(vols.len(), 2, "{vols:?}");
    assert!(vols.contains(&"named"), "{vols:?}");
    env.run(&["delete", id.trim()]).success();
    let left = env.run(&["volume", "ls", "-q"]).success().stdout;
    assert_eq!(left.lines().count(), 2, "{left}");
    let dangling = env
        .run(&["volume", "ls", "-q", "-f", "dangling=true"])
        .success()
        .stdout;
    assert_eq!(dangling.lines().count(), 2, "{dangling}");
    env.run(&["volume", "prune"]).success();
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "");

    // `delete -v` (docker's rm -v) of a running container, forced, takes its anonymous volume.
    env.run(&[
        "run", "-d", "--name", "busy", "-v", "/scratch", IMAGE, "sleep", "120",
    ])
    .success();
    assert_eq!(
        env.run(&["volume", "ls", "-q"])
            .success()
            .stdout
            .lines()
            .count(),
        1
    );
    env.run(&["delete", "-f", "-v", "busy"]).success();
    assert_eq!(env.run(&["volume", "ls", "-q"]).success().stdout, "");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn bind_mounts_share_a_host_directory_through_virtiofs() {
    let env = Env::new(true);
    let host = tempfile::tempdir().unwrap();
    let share = host.path().join("share");
    let outside = host.path().join("outside");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(share.join("in.txt"), "from host\n").unwrap();
    std::fs::write(outside.join("secret"), "secret\n").unwrap();
    // A link out of the share resolves inside the guest, where the outside does not exist.
    std::os::unix::fs::symlink(&outside, share.join("escape")).unwrap();
    let rw = format!("{}:/mnt", share.display());
    let ro = format!("{}:/ro:ro", share.display());
    let r = env.run(&[
        "run",
        "--rm",
        "-u",
        "0",
        "-v",
        &rw,
        "-v",
        &ro,
        IMAGE,
        "sh",
        "-c",
        "cat /mnt/in.txt; echo from guest > /mnt/out.txt; cat /mnt/escape/secret 2>&1 || echo no-escape; \
         touch /ro/x 2>&1 || echo ro-refused; cat /ro/out.txt",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "from host", "{r:?}");
    assert!(lines.contains(&"no-escape"), "{r:?}");
    assert!(!r.stdout.contains("secret\n"), "{r:?}");
    assert!(r.stdout.contains("Read-only file system"), "{r:?}");
    assert!(lines.contains(&"ro-refused"), "{r:?}");
    assert_eq!(lines.last(), Some(&"from guest"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(share.join("out.txt")).unwrap(),
        "from guest\n"
    );
    assert!(!share.join("x").exists());

    // A single file: its directory is shared, only the file appears in the container.
    let file = format!("{}:/etc/greeting:ro", share.join("in.txt").display());
    let r = env
        .run(&[
            "run",
            "--rm",
            "-v",
            &file,
            IMAGE,
            "sh",
            "-c",
            "cat /etc/greeting; ls /etc/out.txt 2>/dev/null || echo only-the-file",
        ])
        .success();
    assert_eq!(r.stdout, "from host\nonly-the-file\n", "{r:?}");

    // While a container runs, its `:ro` share is served read-only by the host's virtiofsd,
    // sandboxed to the shared directory; every virtiofsd ends with its VM.
    let share_s = share.to_string_lossy().into_owned();
    let daemons = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("virtiofsd") && c.contains(&share_s))
            .collect()
    };
    env.run(&[
        "run", "-d", "--name", "ro", "-v", &ro, IMAGE, "sleep", "120",
    ])
    .success();
    let running = daemons();
    assert!(!running.is_empty(), "no virtiofsd for {share_s}");
    for cmd in &running {
        assert!(
            cmd.contains("--readonly") && cmd.contains("--sandbox namespace"),
            "{cmd}"
        );
        assert!(cmd.contains(&format!("--shared-dir {share_s}")), "{cmd}");
    }
    env.run(&["delete", "-f", "ro"]).success();
    assert_eq!(daemons(), Vec::<String>::new());
    env.run(&["run", "--rm", "-v", "/no/such/dir:/x", IMAGE, "true"])
        .fails_with("bind source /no/such/dir");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn capabilities_follow_the_flags_and_a_read_only_share_is_enforced_by_the_host() {
    let env = Env::new(true);
    // CapEff as the kernel reports it, for the set the flags ask for.
    let cap_eff = |flags: &[&str]| -> u64 {
        let mut args = vec!["run", "--rm", "--network", "none", "-u", "0"];
        args.extend(flags);
        args.extend([IMAGE, "sh", "-c", "grep CapEff /proc/self/status"]);
        let r = env.run(&args).success();
        let hex = r.stdout.split_whitespace().nth(1).unwrap_or_default();
        u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{r:?}"))
    };
    const CHOWN: u64 = 1 << 0;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_ADMIN: u64 = 1 << 21;
    let default = cap_eff(&[]);
    assert_eq!(default.count_ones(), 14, "{default:x}");
    assert_eq!(default & (SYS_ADMIN | NET_ADMIN), 0);
    let changed = cap_eff(&["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"]);
    assert_eq!(changed, (default | NET_ADMIN) & !CHOWN);
    assert_eq!(cap_eff(&["--cap-drop", "ALL"]), 0);
    let all = cap_eff(&["--privileged"]);
    assert!(all & SYS_ADMIN != 0 && all.count_ones() >= 40, "{all:x}");
    env.run(&["run", "--rm", "--cap-add", "FLY", IMAGE, "true"])
        .fails_with("invalid capability \"FLY\"");

    // Without --privileged /proc/kcore is masked and /proc/sys read-only; with it, neither.
    let probe =
        "ls -l /proc/kcore | cut -c1; touch /proc/sys/kernel/hostname 2>&1 | grep -c Read-only";
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "0",
            IMAGE,
            "sh",
            "-c",
            probe,
        ])
        .success();
    assert_eq!(r.stdout, "c\n1\n", "{r:?}");
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "--privileged",
        IMAGE,
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(r.stdout, "-\n0\n", "{r:?}");

    // A container that may remount its `:ro` share read-write still cannot write through it:
    // the host's virtiofsd refuses.
    let host = tempfile::tempdir().unwrap();
    let ro = format!("{}:/ro:ro", host.path().display());
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        &ro,
        IMAGE,
        "sh",
        "-c",
        "mount -o remount,rw /ro && grep -c ' /ro virtiofs rw' /proc/mounts; \
         echo data > /ro/x || echo host-refused",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("1\n"),
        "the remount did not happen: {r:?}"
    );
    assert!(r.stdout.contains("host-refused"), "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(!host.path().join("x").exists());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_new_volume_first_receives_the_image_content_at_its_path() {
    let env = Env::new(true);
    // `sh -c script` as root without a network, with `-v mount` when given.
    let sh = |mount: Option<&str>, script: &str| {
        let mut args = vec!["run", "--rm", "--network", "none", "-u", "0"];
        if let Some(m) = mount {
            args.extend(["-v", m]);
        }
        args.extend([IMAGE, "sh", "-c", script]);
        env.run(&args).success()
    };
    let show = "ls -ln /etc/passwd | cut -c1-10; ls /etc | grep -v lost+found | wc -l";
    let plain = sh(None, show);
    let (mode, count) = {
        let l: Vec<&str> = plain.stdout.lines().collect();
        (l[0].to_string(), l[1].parse::<u32>().unwrap())
    };
    assert!(count > 0, "{plain:?}");

    // An empty named volume over /etc: the image's /etc is copied in, modes kept; what the
    // container writes stays in the volume for the next one, and nothing is copied again.
    let r = sh(
        Some("fresh:/etc"),
        &format!("{show}; echo kept > /etc/mark; rm /etc/passwd"),
    );
    let l: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(l[0], mode, "{r:?}");
    assert_eq!(l[1].parse::<u32>().unwrap(), count, "{r:?}");
    let r = sh(
        Some("fresh:/etc"),
        "cat /etc/mark; ls /etc/passwd 2>/dev/null || echo no-passwd; \
         [ \"$(cat /etc/hostname)\" = \"$(hostname)\" ] && echo own-hostname",
    );
    assert_eq!(r.stdout, "kept\nno-passwd\nown-hostname\n", "{r:?}");

    // nocopy: nothing is copied (the volume holds only the mount points of hosts & co).
    let r = sh(
        Some("bare:/etc:nocopy"),
        "ls /etc/passwd 2>/dev/null || echo not-copied",
    );
    assert_eq!(r.stdout, "not-copied\n", "{r:?}");
}

/// Names `debugfs` lists in the directory `dir` of the ext4 image `image`, `.` and `..` left
/// out: e2fsprogs' reading of what the guest kernel left on disk.
fn debugfs_ls(image: &std::path::Path, dir: &str) -> Vec<String> {
    let out = std::process::Command::new("debugfs")
        .args(["-R", &format!("ls -p {dir}")])
        .arg(image)
        .output()
        .expect("run debugfs");
    assert!(out.status.success(), "debugfs {}", image.display());
    // `ls -p` prints one `/ino/mode/uid/gid/name/size/` line per entry.
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_string))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .collect();
    names.sort();
    names
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn the_root_holds_the_image_files_only_and_a_new_volume_is_empty() {
    let env = Env::new(true);
    // `/` is the image's top-level entries plus the mount points the guest adds (/proc, /sys,
    // /dev), as under docker: no lost+found, which the image does not have.
    let r = env
        .run(&["run", "--rm", "--network", "none", IMAGE, "ls", "-a", "/"])
        .success();
    let names: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        names,
        [".", "..", "bin", "data", "dev", "etc", "old", "proc", "root", "sys", "tmp"],
        "{r:?}"
    );
    // The cached rootfs is the current format (its own file name, so rootfs files cached by
    // earlier versions, with a lost+found or without the mount points, are not reused): the
    // image's entries and, where the image has nothing, the mount points every container
    // needs (docker's init layer), so that no start writes them into its own overlay.
    let cached: Vec<std::path::PathBuf> = std::fs::read_dir(env.cli.root().join("rootfs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ext4"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].to_string_lossy().ends_with(".v3.ext4"),
        "{cached:?}"
    );
    assert_eq!(
        debugfs_ls(&cached[0], "/"),
        ["bin", "data", "dev", "etc", "old", "proc", "root", "sys", "tmp"]
    );
    let etc = debugfs_ls(&cached[0], "/etc");
    for f in ["hosts", "hostname", "resolv.conf"] {
        assert!(etc.iter().any(|e| e == f), "{f} not in {etc:?}");
    }

    // A new named volume is empty, so postgres's initdb accepts it as its data directory; the
    // mount point is not in the image, so nothing is copied up either.
    env.run(&["volume", "create", "pg"]).success();
    let pg = "pg:/var/lib/postgresql/data";
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            pg,
            IMAGE,
            "ls",
            "-A",
            "/var/lib/postgresql/data",
        ])
        .success();
    assert_eq!(r.stdout, "", "{r:?}");
    // initdb's own test, then what it does next: the guest kernel (6.1) writes the volume.
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "0",
            "-v",
            pg,
            IMAGE,
            "sh",
            "-c",
            "cd /var/lib/postgresql/data && [ -z \"$(ls -A)\" ] && echo empty && \
             busybox mkdir -p base/1 && echo 15 > PG_VERSION && busybox sync",
        ])
        .success();
    assert_eq!(r.stdout, "empty\n", "{r:?}");
    let r = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            pg,
            IMAGE,
            "ls",
            "-A",
            "/var/lib/postgresql/data",
        ])
        .success();
    assert_eq!(r.stdout, "PG_VERSION\nbase\n", "{r:?}");

    // On the host, after the guest wrote it: e2fsprogs reads the same tree, and a read-only
    // check finds nothing wrong (it does not look for lost+found).
    let disk = env.cli.root().join("volumes/pg/disk.ext4");
    assert_eq!(debugfs_ls(&disk, "/"), ["PG_VERSION", "base"]);
    common::run(std::process::Command::new("e2fsck").arg("-fn").arg(&disk));
}
