//! Apple `container` vocabulary our CLI took over (issue 14), through the real binary:
//! `volume create -s/--opt journal=…`, `system kernel set --tar/--force`, `image save
//! --platform`, `image load --force`, `image prune -a`, `registry list` and `system property
//! list`. The VM test is gated as tests/run.rs's are; the others need neither root nor a VM.

mod common;

use std::path::Path;
use std::process::Command;

use common::vm::{Env, IMAGE};
use common::Cli;

/// `dumpe2fs -h` of an image, the outside oracle for what our formatter wrote.
fn dumpe2fs(image: &Path) -> String {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .expect("dumpe2fs");
    assert!(out.status.success(), "dumpe2fs {}", image.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `e2fsck -fn` finds nothing wrong but the `lost+found` a new volume lacks on purpose.
fn e2fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck");
    let text = String::from_utf8_lossy(&out.stdout);
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Pass ") && !l.contains(" files (") && !l.starts_with("e2fsck "))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let ok = match out.status.code() {
        Some(0) => complaints.is_empty(),
        Some(4) => complaints == ["/lost+found not found.  Create? no"],
        _ => false,
    };
    assert!(ok, "e2fsck -fn {}:\n{text}", image.display());
}

fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
}

#[test]
fn volume_create_takes_a_short_size_and_journal_options() {
    let cli = Cli::new();
    cli.run(&[
        "volume",
        "create",
        "wb",
        "-s",
        "128m",
        "--opt",
        "journal=writeback:16m",
    ])
    .success();
    let v = &cli.run(&["volume", "inspect", "wb"]).success().json()[0];
    assert_eq!(v["sizeBytes"], 128 << 20);
    assert_eq!(v["options"]["journal"], "writeback:16m");
    let disk = Path::new(v["mountpoint"].as_str().unwrap());
    e2fsck_clean(disk);
    let text = dumpe2fs(disk);
    assert!(line_of(&text, "Filesystem features:").contains("has_journal"));
    assert!(line_of(&text, "Default mount options:").contains("journal_data_writeback"));
    assert!(line_of(&text, "Total journal size:").ends_with(" 16M"));

    // `journal` alone keeps the size mke2fs would pick; `size=` is --size's twin.
    cli.run(&[
        "volume",
        "create",
        "jd",
        "-o",
        "journal=journal",
        "--opt",
        "size=64m",
    ])
    .success();
    let v = &cli.run(&["volume", "inspect", "jd"]).success().json()[0];
    assert_eq!(v["sizeBytes"], 64 << 20);
    let text = dumpe2fs(Path::new(v["mountpoint"].as_str().unwrap()));
    assert!(line_of(&text, "Default mount options:").contains("journal_data "));
    assert!(line_of(&text, "Total journal size:").ends_with(" 4096k"));

    // Refused, never ignored; nothing is left behind.
    cli.run(&["volume", "create", "x", "--opt", "type=tmpfs"])
        .fails_with("volume option type=tmpfs: unknown option");
    cli.run(&["volume", "create", "x", "--opt", "journal=none"])
        .fails_with("unknown journal mode \"none\"");
    cli.run(&["volume", "create", "x", "--opt", "journal=ordered:1m"])
        .fails_with("journal size of 1048576 bytes: must be 4 MiB to");
    cli.run(&["volume", "create", "x", "--opt", "journal"])
        .fails_with("is not KEY=VALUE");
    let names = cli.run(&["volume", "ls", "-q"]).success().stdout;
    assert_eq!(names, "jd\nwb\n");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn a_writeback_volume_is_mounted_data_writeback_in_the_guest() {
    let env = Env::tagged("vocab", true);
    env.run(&[
        "volume",
        "create",
        "wb",
        "-s",
        "64m",
        "--opt",
        "journal=writeback",
    ])
    .success();
    let out = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "wb:/data",
            IMAGE,
            "sh",
            "-c",
            // /proc/fs/ext4/DEV/options lists every option in force; /proc/mounts leaves
            // out a data= mode that is the superblock's default, as it is here.
            "echo kept > /data/f && sync && cat /data/f && grep ' /data ' /proc/mounts \
             && cat /proc/fs/ext4/$(awk '$2 == \"/data\" {sub(\"/dev/\", \"\", $1); print $1}' /proc/mounts)/options",
        ])
        .success()
        .stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("kept"), "{out}");
    let mount = lines.next().unwrap_or_default();
    assert!(mount.contains(" ext4 rw"), "{out}");
    assert!(lines.any(|l| l == "data=writeback"), "{out}");
    let v = &env.run(&["volume", "inspect", "wb"]).success().json()[0];
    e2fsck_clean(Path::new(v["mountpoint"].as_str().unwrap()));
}

#[test]
fn kernel_set_takes_a_tar_member_and_force_installs_anew() {
    use std::os::unix::fs::MetadataExt;
    // A bzImage to pack: the one the test kernel package ships, unpacked by `--deb`.
    let deb_root = Cli::new();
    let deb = common::kernel_deb();
    deb_root
        .run(&["system", "kernel", "set", "--deb", deb.to_str().unwrap()])
        .success();
    let shown = deb_root
        .run(&["system", "kernel", "show", "--format", "json"])
        .success()
        .json();
    let release = shown["release"].as_str().unwrap().to_string();
    let image = Path::new(shown["image"].as_str().unwrap()).to_path_buf();

    // Laid out as kernel tarballs are: the file, and a symlink naming it.
    let tmp = tempfile::tempdir().unwrap();
    let kdir = tmp.path().join("opt/kata/share");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::copy(&image, kdir.join(format!("vmlinuz-{release}"))).unwrap();
    std::os::unix::fs::symlink(format!("vmlinuz-{release}"), kdir.join("vmlinux.container"))
        .unwrap();
    let tar = tmp.path().join("kernel.tar.xz");
    let st = Command::new("tar")
        .arg("-cJf")
        .arg(&tar)
        .arg("-C")
        .arg(tmp.path())
        .arg("opt")
        .status()
        .unwrap();
    assert!(st.success());

    let cli = Cli::new();
    let tar_arg = tar.to_str().unwrap();
    let member = "opt/kata/share/vmlinux.container";
    let out = cli
        .run(&[
            "system", "kernel", "set", "--tar", tar_arg, "--binary", member,
        ])
        .success()
        .stdout;
    assert!(out.contains(&release), "{out}");
    let k = cli
        .run(&["system", "kernel", "show", "--format", "json"])
        .success()
        .json();
    assert_eq!(k["source"]["type"], "tar");
    assert_eq!(k["source"]["member"], member);
    assert_eq!(k["release"], release.as_str());
    let table = cli.run(&["system", "kernel", "show"]).success().stdout;
    assert!(
        table.contains(&format!("SOURCE:   {member} in tar archive {tar_arg}")),
        "{table}"
    );

    // Without --force the stored copy is reused; with it, installed anew.
    let vmlinux = Path::new(k["vmlinux"].as_str().unwrap()).to_path_buf();
    let ino = || std::fs::metadata(&vmlinux).unwrap().ino();
    let before = ino();
    let args = [
        "system", "kernel", "set", "--tar", tar_arg, "--binary", member,
    ];
    cli.run(&args).success();
    assert_eq!(ino(), before, "reused");
    let mut forced = args.to_vec();
    forced.push("--force");
    cli.run(&forced).success();
    assert_ne!(ino(), before, "installed anew");
    assert_eq!(&std::fs::read(&vmlinux).unwrap()[..4], b"\x7fELF");

    cli.run(&[
        "system", "kernel", "set", "--tar", tar_arg, "--binary", "opt/none",
    ])
    .fails_with("no kernel file opt/none in archive");
    cli.run(&["system", "kernel", "set", "--tar", tar_arg])
        .fails_with("--binary");
}

/// The two-platform test image loaded into a fresh store as `name`; the archive's path too.
fn load_multi_arch(dir: &Path, name: &str) -> (Cli, common::images::TestImage, std::path::PathBuf) {
    let image = common::images::multi_arch(&dir.join("layout"));
    let archive = dir.join("multi.tar");
    common::images::to_oci_archive(&image, &archive, name);
    let cli = Cli::new();
    cli.run(&["image", "load", "-i", archive.to_str().unwrap()])
        .success();
    (cli, image, archive)
}

/// The `index.json` of an OCI-layout tar.
fn archive_index(archive: &Path) -> serde_json::Value {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("index.json") {
            return serde_json::from_reader(entry).unwrap();
        }
    }
    panic!("no index.json in {}", archive.display());
}

#[test]
fn image_save_platform_keeps_one_manifest_and_load_force_skips_invalid_members() {
    let dir = tempfile::tempdir().unwrap();
    let name = "example.com/multi:1";
    let (cli, image, archive) = load_multi_arch(dir.path(), name);

    let out = dir.path().join("arm.tar");
    cli.run(&[
        "image",
        "save",
        "--platform",
        "linux/arm64",
        "-o",
        out.to_str().unwrap(),
        name,
    ])
    .success();
    let index = archive_index(&out);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], image.manifests[1].as_str());
    // What it holds is the arm64 image alone, under the same name.
    let other = Cli::new();
    other
        .run(&["image", "load", "-i", out.to_str().unwrap()])
        .success();
    let info = &other.run(&["image", "inspect", name]).success().json()[0];
    assert_eq!(info["manifestDigest"], image.manifests[1].as_str());
    assert_eq!(info["platform"]["architecture"], "arm64");
    cli.run(&[
        "image",
        "save",
        "--platform",
        "linux/s390x",
        "-o",
        out.to_str().unwrap(),
        name,
    ])
    .fails_with("linux/s390x");
    // Without --platform the whole index is saved, as before.
    cli.run(&["image", "save", "-o", out.to_str().unwrap(), name])
        .success();
    assert_eq!(
        archive_index(&out)["manifests"][0]["digest"],
        image.digest.as_str()
    );

    // An archive with a member at an absolute path: refused, or loaded past it with --force.
    let evil = dir.path().join("evil");
    std::fs::write(&evil, "x").unwrap();
    let st = Command::new("tar")
        .arg("--append")
        .arg("--absolute-names")
        .arg("-f")
        .arg(&archive)
        .arg(&evil)
        .status()
        .unwrap();
    assert!(st.success());
    let fresh = Cli::new();
    let archive = archive.to_str().unwrap();
    fresh
        .run(&["image", "load", "-i", archive])
        .fails_with("refusing a hostile archive");
    let r = fresh
        .run(&["image", "load", "--force", "-i", archive])
        .success();
    assert!(r.stdout.contains(name), "{}", r.stdout);
    assert!(
        r.stderr.contains("skipped invalid archive members")
            && r.stderr.contains(evil.to_str().unwrap()),
        "{}",
        r.stderr
    );
}

#[test]
fn image_prune_all_removes_every_image_no_container_uses() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("busybox.tar");
    let image = common::images::busybox(&dir.path().join("layout"));
    common::images::to_oci_archive(&image, &archive, "example.com/used:1");
    let cli = Cli::new();
    cli.run(&["image", "load", "-i", archive.to_str().unwrap()])
        .success();
    cli.run(&["image", "tag", "example.com/used:1", "example.com/spare:1"])
        .success();
    // Another image: the same busybox files imported, so a config and manifest of its own.
    let rootfs = dir.path().join("rootfs.tar");
    common::images::rootfs_tarball(&rootfs);
    cli.run(&[
        "image",
        "import",
        rootfs.to_str().unwrap(),
        "example.com/other:1",
    ])
    .success();
    cli.run(&[
        "create",
        "--name",
        "c",
        "--network",
        "none",
        "example.com/used:1",
    ])
    .success();

    // Plain prune removes no name.
    cli.run(&["image", "prune"]).success();
    assert_eq!(
        cli.run(&["image", "ls", "-q"])
            .success()
            .stdout
            .lines()
            .count(),
        3
    );

    let out = cli.run(&["image", "prune", "-a"]).success().stdout;
    assert!(out.contains("Untagged: example.com/other:1"), "{out}");
    // Another name of the image the container uses stays, as docker keeps a used image.
    assert!(!out.contains("used:1") && !out.contains("spare:1"), "{out}");
    let left = cli.run(&["image", "ls", "-q"]).success().stdout;
    assert!(
        left.contains("used:1") && left.contains("spare:1") && !left.contains("other"),
        "{left}"
    );
    assert!(!out.contains("Deleted 0 blobs"), "{out}");
    cli.run(&["rm", "c"]).success();
    cli.run(&["image", "prune", "--all"]).success();
    assert_eq!(cli.run(&["image", "ls", "-q"]).success().stdout, "");
}

#[test]
fn registry_list_shows_hosts_and_users_never_secrets() {
    let mut cli = Cli::new();
    let b64 = |s: &str| {
        use base64_free::encode;
        encode(s.as_bytes())
    };
    // Ours, as `registry login` writes it; docker's, with a URL key and a helper-only entry.
    std::fs::write(
        cli.root().join("auth.json"),
        format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}}}}}"#,
            b64("alice:s3cret-one"),
            b64("bob:s3cret-two")
        ),
    )
    .unwrap();
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}, "ghcr.io": {{}}}}}}"#,
            b64("carol:s3cret-three"),
            b64("mallory:s3cret-four")
        ),
    )
    .unwrap();
    cli.env("DOCKER_CONFIG", docker.path());

    let table = cli.run(&["registry", "list"]).success().stdout;
    assert!(!table.contains("s3cret"), "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["REGISTRY", "USERNAME"],
            vec!["127.0.0.1:5000", "alice"],
            vec!["docker.io", "carol"],
            vec!["ghcr.io", "-"],
            vec!["quay.io", "bob"],
        ],
        "{table}"
    );
    let json = cli.run(&["registry", "ls", "--format", "json"]).success();
    assert!(!json.stdout.contains("s3cret"), "{}", json.stdout);
    let json = json.json();
    assert_eq!(json[3]["registry"], "quay.io");
    assert_eq!(json[3]["username"], "bob");
    assert_eq!(
        json[3]["file"],
        cli.root().join("auth.json").to_str().unwrap()
    );
    assert_eq!(json[2]["username"], serde_json::Value::Null);
    assert_eq!(
        cli.run(&["registry", "ls", "-q"]).success().stdout,
        "127.0.0.1:5000\ndocker.io\nghcr.io\nquay.io\n"
    );
}

/// Base64 without a dependency: the test writes auth files the way docker does.
mod base64_free {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn system_property_list_shows_settings_and_where_they_come_from() {
    let mut cli = Cli::new();
    let table = cli.run(&["system", "property", "list"]).success().stdout;
    let row = |table: &str, key: &str| -> (String, String) {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in:\n{table}"));
        let mut cells = line.split_whitespace();
        cells.next();
        let source = cells.next().unwrap().to_string();
        (source, cells.collect::<Vec<_>>().join(" "))
    };
    assert!(table.starts_with("KEY"), "{table}");
    let root = cli.root().to_str().unwrap().to_string();
    assert_eq!(row(&table, "root"), ("flag".into(), root.clone()));
    assert_eq!(
        row(&table, "network.subnet"),
        ("default".into(), "192.168.64.0/24".into())
    );
    assert_eq!(
        row(&table, "vm.templates"),
        ("default".into(), "auto".into())
    );
    assert!(row(&table, "kernel").1.starts_with("none set"), "{table}");
    assert_eq!(row(&table, "registry.auth").1, format!("{root}/auth.json"));
    assert!(table.contains("engine.socket"), "{table}");

    cli.env("CONTAINER_DEFAULT_SUBNET", "10.77.0.0/24");
    cli.env("CONTAINER_TEMPLATES", "off");
    let json = cli
        .run(&["system", "property", "ls", "--format", "json"])
        .success()
        .json();
    let get = |key: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {json}"))
            .clone()
    };
    assert_eq!(get("network.subnet")["value"], "10.77.0.0/24");
    assert_eq!(get("network.subnet")["source"], "env");
    assert_eq!(get("network.subnet")["env"], "CONTAINER_DEFAULT_SUBNET");
    assert_eq!(get("vm.templates")["value"], "off");
    assert_eq!(get("root")["source"], "flag");

    // A kernel set is state.
    let deb = common::kernel_deb();
    cli.run(&["system", "kernel", "set", "--deb", deb.to_str().unwrap()])
        .success();
    let table = cli.run(&["system", "property", "ls"]).success().stdout;
    let (source, value) = row(&table, "kernel");
    assert_eq!(source, "state");
    assert!(value.contains("cloud-amd64"), "{table}");
}
