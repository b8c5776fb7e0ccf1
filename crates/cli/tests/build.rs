//! `container build` through the real binary: RUN steps in our VMs, COPY/WORKDIR layers from
//! the host, the cache, multi-stage builds and failures, on the runtime test image.

mod common;

use std::io::Read;
use std::path::Path;

use common::vm::{Env, IMAGE};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// How many steps a build took from the cache.
fn hits(run: &common::Run) -> usize {
    run.stderr.matches("Using cache").count()
}

fn build(env: &Env, ctx: &Path, args: &[&str]) -> common::Run {
    let mut a = vec!["build", "--network", "none"];
    a.extend(args);
    let ctx = ctx.to_str().unwrap().to_string();
    a.push(&ctx);
    env.run(&a)
}

/// The image `name`'s layers as lists of tar entry names, lowest first.
fn layer_entries(env: &Env, name: &str) -> Vec<Vec<String>> {
    let info = env.run(&["image", "inspect", name]).success().json();
    let manifest = info[0]["manifest"]["layers"]
        .as_array()
        .or_else(|| info[0]["Manifest"]["layers"].as_array())
        .cloned()
        .unwrap_or_else(|| manifest_layers(env, name));
    manifest
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let blob = env.cli.layout().join("blobs/sha256").join(digest);
            let f = std::fs::File::open(blob).unwrap();
            let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
            a.entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    String::from_utf8_lossy(&e.path_bytes()).into_owned()
                })
                .collect()
        })
        .collect()
}

/// The manifest's layer descriptors, read from the OCI layout's index.
fn manifest_layers(env: &Env, name: &str) -> Vec<serde_json::Value> {
    let layout = env.cli.layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.contains(name))
        })
        .unwrap_or_else(|| panic!("{name} not in {index}"));
    let digest = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut text = String::new();
    std::fs::File::open(layout.join("blobs/sha256").join(digest))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["layers"].as_array().unwrap().clone()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and the guest kernel: run scripts/test.sh"
)]
fn run_copy_and_workdir_steps_make_an_image_that_runs_and_rebuilds_from_cache() {
    let env = Env::new(true);
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            ("f.txt", "world\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM {IMAGE}\n\
                     USER 0\n\
                     ARG GREETING=hello\n\
                     ENV APP=/app\n\
                     WORKDIR $APP\n\
                     COPY f.txt ./\n\
                     RUN echo \"$GREETING from $(cat f.txt)\" > out.txt && rm /bin/notexec.sh\n\
                     RUN echo step output; cat out.txt\n\
                     LABEL stage=one\n\
                     CMD [\"cat\", \"/app/out.txt\"]\n"
                ),
            ),
        ],
    );
    let first = build(
        &env,
        ctx.path(),
        &["-t", "built:1", "--build-arg", "GREETING=hi"],
    )
    .success();
    assert!(
        first.stderr.contains("STEP 7/9: RUN echo step output"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("hi from world"), "{}", first.stderr);
    assert!(
        first.stdout.trim().starts_with("sha256:"),
        "{}",
        first.stdout
    );

    let out = env
        .run(&["run", "--rm", "--network", "none", "built:1"])
        .success();
    assert_eq!(out.stdout, "hi from world\n");
    let out = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "built:1",
            "sh",
            "-c",
            "ls /bin/notexec.sh; echo $APP; pwd",
        ])
        .success();
    assert_eq!(out.stdout, "/app\n/app\n", "{}", out.stderr);
    let info = env.run(&["image", "inspect", "built:1"]).success().stdout;
    assert!(
        info.contains("\"stage\": \"one\"") || info.contains("\"stage\":\"one\""),
        "{info}"
    );

    // Each RUN's layer holds what it changed: the deletion as a whiteout, and none of the
    // mount points the guest made for the step (/etc/hosts, /proc, …).
    let layers = layer_entries(&env, "built:1");
    let run1 = &layers[layers.len() - 2];
    assert!(run1.contains(&"bin/.wh.notexec.sh".to_string()), "{run1:?}");
    assert!(run1.contains(&"app/out.txt".to_string()), "{run1:?}");
    for l in &layers[layers.len() - 2..] {
        for stub in [
            "etc/hosts",
            "etc/resolv.conf",
            "etc/hostname",
            "proc/",
            "sys/",
        ] {
            assert!(!l.iter().any(|e| e == stub), "{stub} in {l:?}");
        }
    }

    // Nothing changed: every step from the cache, no VM, the same layers.
    let again = build(
        &env,
        ctx.path(),
        &["-t", "built:2", "--build-arg", "GREETING=hi"],
    )
    .success();
    assert_eq!(hits(&again), 3, "{}", again.stderr);
    assert!(!again.stderr.contains("hi from world"), "{}", again.stderr);
    // The same image, to its ID: nothing in it depends on when the rebuild ran.
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(layer_entries(&env, "built:2"), layers);

    // A changed file: its COPY and the steps after it run again.
    write(ctx.path(), &[("f.txt", "there\n")]);
    let changed = build(
        &env,
        ctx.path(),
        &["-t", "built:3", "--build-arg", "GREETING=hi"],
    )
    .success();
    assert_eq!(hits(&changed), 0, "{}", changed.stderr);
    let out = env
        .run(&["run", "--rm", "--network", "none", "built:3"])
        .success();
    assert_eq!(out.stdout, "hi from there\n");

    // A different build argument invalidates the RUN that sees it, not the COPY.
    let arg = build(&env, ctx.path(), &["-t", "built:4"]).success();
    assert_eq!(hits(&arg), 1, "{}", arg.stderr);
    let out = env
        .run(&["run", "--rm", "--network", "none", "built:4"])
        .success();
    assert_eq!(out.stdout, "hello from there\n");

    // The cache's layers outlive the images that used them through `image prune`; after
    // `builder prune` they are gone and the steps run again.
    for tag in ["built:1", "built:2", "built:3", "built:4"] {
        env.run(&["image", "rm", tag]).success();
    }
    env.run(&["image", "prune"]).success();
    let cached = build(&env, ctx.path(), &["-t", "built:5"]).success();
    assert_eq!(hits(&cached), 3, "{}", cached.stderr);
    env.run(&["builder", "prune", "-f"]).success();
    let fresh = build(&env, ctx.path(), &["-t", "built:6"]).success();
    assert_eq!(hits(&fresh), 0, "{}", fresh.stderr);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and the guest kernel: run scripts/test.sh"
)]
fn multi_stage_copy_from_and_failures() {
    let env = Env::new(true);
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {IMAGE} AS builder\n\
                 USER 0\n\
                 RUN mkdir -p /out && echo built > /out/result && chmod 640 /out/result\n\
                 FROM {IMAGE}\n\
                 COPY --from=builder /out/result /result\n\
                 CMD [\"cat\", \"/result\"]\n"
            ),
        )],
    );
    build(&env, ctx.path(), &["-t", "multi"]).success();
    let out = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "0",
            "multi",
            "sh",
            "-c",
            "cat /result; stat -c %a /result",
        ])
        .success();
    assert_eq!(out.stdout, "built\n640\n", "{}", out.stderr);

    // -o: the root filesystem unpacked, an OCI archive `image load` takes, a tar on stdout.
    let outs = tempfile::tempdir().unwrap();
    let local = outs.path().join("rootfs");
    let archive = outs.path().join("image.tar");
    build(
        &env,
        ctx.path(),
        &[
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=oci,dest={}", archive.display()),
            "-t",
            "multi:exported",
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(local.join("result")).unwrap(),
        "built\n"
    );
    assert!(local.join("bin/busybox").is_file());
    env.run(&["image", "rm", "multi:exported"]).success();
    env.run(&["image", "load", "-i", archive.to_str().unwrap()])
        .success();
    env.run(&["image", "inspect", "multi:exported"]).success();
    let ctx_arg = ctx.path().to_str().unwrap().to_string();
    let (code, tar_bytes, err) = env.run_bytes(
        &["build", "--network", "none", "-q", "-o", "-", &ctx_arg],
        None,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let mut a = tar::Archive::new(&tar_bytes[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "result"), "{names:?}");

    // A failing RUN names its line and exit code; nothing is named.
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM {IMAGE}\nRUN echo before\nRUN echo failing; exit 3\n"),
        )],
    );
    let failed = build(&env, ctx.path(), &["-t", "broken"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains(
            "Dockerfile:3: process \"/bin/sh -c echo failing; exit 3\" did not complete successfully: exit code: 3"
        ),
        "{}",
        failed.stderr
    );
    let images = env.run(&["image", "ls"]).success().stdout;
    assert!(!images.contains("broken"), "{images}");

    // Bad input: a missing COPY source and an unknown stage, each naming the line.
    write(
        ctx.path(),
        &[("Dockerfile", &format!("FROM {IMAGE}\nCOPY nope.txt /\n"))],
    );
    let r = build(&env, ctx.path(), &["-t", "broken"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("Dockerfile:2:") && r.stderr.contains("nope.txt"),
        "{}",
        r.stderr
    );
    write(
        ctx.path(),
        &[("Dockerfile", &format!("FROM {IMAGE}\nFOO bar\n"))],
    );
    let r = build(&env, ctx.path(), &["-t", "broken"]);
    assert!(
        r.stderr.contains("Dockerfile:2: unknown instruction: FOO"),
        "{}",
        r.stderr
    );
    // A stage that does not exist, a cycle between stages, a context that is not there.
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {IMAGE} AS a\nCOPY --from=b /x /x\nFROM {IMAGE} AS b\nCOPY --from=a /y /y\n"
            ),
        )],
    );
    let r = build(&env, ctx.path(), &["--target", "nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("target stage \"nope\" could not be found"),
        "{}",
        r.stderr
    );
    let r = build(&env, ctx.path(), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("circular dependency detected on stage"),
        "{}",
        r.stderr
    );
    let r = env.run(&["build", "/nonexistent-context"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent-context"), "{}", r.stderr);
    env.run(&["build", "prune"]).success();
    assert_eq!(env.qemus(), 0);
}

/// Runs a host tool to success, returning its stdout.
fn sh(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The extended attributes of `path` (not followed), as `name=hex` sorted.
fn xattrs(path: &Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the buffers are valid for their lengths and `c` is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let n = usize::try_from(n).unwrap_or_else(|_| {
        panic!(
            "llistxattr {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )
    });
    let mut out: Vec<String> = names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cname = std::ffi::CString::new(name).unwrap();
            let mut value = vec![0u8; 64 * 1024];
            // SAFETY: as above.
            let k = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            let k = usize::try_from(k).unwrap_or_else(|_| {
                panic!(
                    "lgetxattr {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )
            });
            format!(
                "{}={}",
                String::from_utf8_lossy(name),
                hex::encode(&value[..k])
            )
        })
        .collect();
    out.sort();
    out
}

/// Every entry under `root`: type, content digest, link count, mode, owner, xattrs
/// (timestamps aside).
fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let t = meta.file_type();
            let what = if t.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if t.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if t.is_file() {
                let content = std::fs::read(&path).unwrap();
                format!(
                    "file {} {} nlink={}",
                    content.len(),
                    oci::Digest::of(&content).short(),
                    meta.nlink()
                )
            } else if t.is_fifo() {
                "fifo".to_string()
            } else if t.is_char_device() || t.is_block_device() {
                format!("dev {:x}", meta.rdev())
            } else {
                "socket".to_string()
            };
            let mode = if t.is_symlink() {
                0o777
            } else {
                meta.mode() & 0o7777
            };
            out.insert(
                rel,
                format!(
                    "{what} {mode:o} {}:{} {:?}",
                    meta.uid(),
                    meta.gid(),
                    xattrs(&path)
                ),
            );
        }
    }
    out
}

/// The config of the only image of the OCI layout `layout`, and its ref name.
fn layout_config(layout: &Path) -> (String, serde_json::Value) {
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let name = manifests[0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read(blob(&manifests[0]["digest"]));
    (name, read(blob(&manifest["config"]["digest"])))
}

/// The oracle: a Dockerfile with RUN steps (whiteouts, a replaced directory, a user made by
/// a RUN), multi-stage `COPY --from`, ARG/ENV substitution, `.dockerignore`, WORKDIR and
/// the config instructions, built by us and by Debian's `buildah bud --isolation chroot`;
/// both images unpacked with umoci must have the same root filesystem and config.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, the guest kernel, buildah and umoci: run scripts/test.sh"
)]
fn same_image_as_buildah_with_run_steps() {
    let env = Env::new(true);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    write(
        &ctx,
        &[
            ("run.sh", "#!/bin/sh\necho running \"$@\"\n"),
            ("data/x.txt", "x\n"),
            ("sub/dir/deep.txt", "deep\n"),
            ("keep.log", "kept\n"),
            ("drop.log", "dropped\n"),
            ("secret/key", "no\n"),
            (".dockerignore", "*.log\n!keep.log\nsecret\n"),
            (
                "Dockerfile",
                "ARG BASE\n\
                 ARG VERSION=1.0\n\
                 FROM $BASE AS builder\n\
                 USER 0\n\
                 ARG VERSION\n\
                 ARG MSG=built\n\
                 RUN mkdir -p /out/sub && echo \"$MSG $VERSION\" > /out/result \
                     && chmod 640 /out/result && ln -s result /out/link \
                     && echo deep > /out/sub/f && chmod 700 /out/sub\n\
                 \n\
                 FROM $BASE\n\
                 ARG VERSION\n\
                 USER root\n\
                 ENV APP=/srv/app MODE=${MODE:-prod} VERSION=$VERSION\n\
                 LABEL version=$VERSION org.example.mode=\"$MODE\"\n\
                 RUN echo 'app:x:1500:1600::/home/app:/bin/sh' >> /etc/passwd \
                     && echo 'app:x:1600:' >> /etc/group && echo 'web:x:1700:app' >> /etc/group\n\
                 RUN rm /bin/notexec.sh /data/a.txt /bin/suid && rm -r /old\n\
                 RUN mkdir -m 700 /old && echo new > /old/n \
                     && rm -rf /data/* && echo replaced > /data/new\n\
                 COPY --chown=app . $APP/\n\
                 COPY --from=builder /out $APP/out/\n\
                 COPY --from=builder --chown=app:app /out/result /srv/result2\n\
                 WORKDIR $APP/work/dir\n\
                 USER app\n\
                 WORKDIR /home/app/w\n\
                 RUN echo \"$(id -u):$(id -g) in $(pwd) $MODE $VERSION\" > mine \
                     && ln mine mine-hard && ln -s mine mine-sym && mkfifo fifo \
                     && echo \"$(id -G) $HOME\" > ids\n\
                 USER root\n\
                 RUN chmod 4750 /srv/app/run.sh && chown app /srv/app/data \
                     && rm /srv/app/sub/dir/deep.txt \
                     && echo \"$HOME $(ls -a / | grep lost)\" > /srv/root-view \
                     && rm -r /srv/app/out/sub && ln /srv/app/run.sh /srv/run-hard\n\
                 SHELL [\"/bin/sh\", \"-ec\"]\n\
                 RUN [\"sh\", \"-c\", \"echo exec form > /srv/exec\"]\n\
                 RUN mv /srv/app/sub /srv/sub-moved && mv /srv/app/data/x.txt /srv/x-moved\n\
                 RUN mkdir -m 2775 /srv/sgid && mkdir -m 1777 /srv/sticky \
                     && touch \"/srv/with space\" /srv/ünï /srv/big-ids \
                     && chown 3000000:3000001 /srv/big-ids \
                     && mkdir -p /srv/long/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb \
                     && echo long > /srv/long/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n\
                 RUN echo shell form \"$0 $-\" > /srv/shell\n\
                 STOPSIGNAL SIGINT\n\
                 ENV PATH=/usr/local/bin:$PATH\n\
                 EXPOSE 8080/tcp 53/udp 9000\n\
                 VOLUME /srv/vol\n\
                 USER app:web\n\
                 CMD serve --mode $MODE\n\
                 ENTRYPOINT [\"/srv/app/run.sh\"]\n",
            ),
        ],
    );
    sh(std::process::Command::new("chmod")
        .args(["755"])
        .arg(ctx.join("run.sh")));
    sh(std::process::Command::new("chmod")
        .args(["700"])
        .arg(ctx.join("sub")));
    // A user xattr on a file a RUN chmods (copied up) and on one a RUN renames.
    for f in ["run.sh", "data/x.txt"] {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(ctx.join(f).as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a buffer valid for its length.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"user.origin".as_ptr(),
                b"ctx".as_ptr().cast(),
                3,
                0,
            )
        };
        assert_eq!(r, 0, "setxattr {f}: {}", std::io::Error::last_os_error());
    }

    // Ours, saved as an OCI archive and unpacked.
    build(
        &env,
        &ctx,
        &[
            "-t",
            "localhost/oracle:ours",
            "--build-arg",
            &format!("BASE={IMAGE}"),
            "--build-arg",
            "VERSION=2.5",
        ],
    )
    .success();
    assert_eq!(env.qemus(), 0);
    let archive = work.path().join("ours.tar");
    env.run(&[
        "image",
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/oracle:ours",
    ])
    .success();
    let ours_layout = work.path().join("ours-layout");
    std::fs::create_dir(&ours_layout).unwrap();
    sh(std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&ours_layout));
    let (name, our_config) = layout_config(&ours_layout);
    let ours = work.path().join("ours-bundle");
    sh(std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{name}", ours_layout.display()))
        .arg(&ours));

    // buildah's: the same Dockerfile, the base image from the same archive.
    let storage = work.path().join("storage");
    let buildah = |args: &[&str]| {
        let mut cmd = std::process::Command::new("buildah");
        cmd.arg("--storage-driver=vfs")
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"))
            .args(args);
        cmd
    };
    let base = format!("BASE=oci-archive:{}", common::vm::image_tar().display());
    let built = buildah(&[
        "bud",
        "--isolation",
        "chroot",
        // In its default OCI format buildah ignores SHELL (for RUN too), Docker does not.
        "--format",
        "docker",
        "-q",
        "--build-arg",
        &base,
        "--build-arg",
        "VERSION=2.5",
        "-t",
        "oracle",
    ])
    .arg(&ctx)
    .output()
    .unwrap();
    let theirs_layout = work.path().join("theirs-layout");
    let pushed = built.status.success().then(|| {
        buildah(&["push", "-q", "oracle"])
            .arg(format!("oci:{}:theirs", theirs_layout.display()))
            .output()
            .unwrap()
    });
    // buildah's storage goes whatever happened (vfs copies whole layers).
    sh(&mut buildah(&["rmi", "-a", "-f"]));
    assert!(
        built.status.success(),
        "buildah bud: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let pushed = pushed.unwrap();
    assert!(
        pushed.status.success(),
        "buildah push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let (_, their_config) = layout_config(&theirs_layout);
    let theirs = work.path().join("theirs-bundle");
    sh(std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:theirs", theirs_layout.display()))
        .arg(&theirs));

    let mut theirs_fs = snapshot(&theirs.join("rootfs"));
    let mine = snapshot(&ours.join("rootfs"));
    // buildah 1.28 leaves the mount points it made for RUN in the layers (empty files and
    // directories); BuildKit removes them after each step (MountStubsCleaner), as we do
    // (docs/build.md, "Oracle").
    for stub in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc",
        "sys",
        "dev",
        "run",
    ] {
        if !mine.contains_key(stub) {
            if let Some(v) = theirs_fs.remove(stub) {
                assert!(
                    v.starts_with("dir ") || v.starts_with("file 0 "),
                    "{stub}: {v}"
                );
                assert!(
                    !theirs_fs.keys().any(|k| k.starts_with(&format!("{stub}/"))),
                    "{stub} is not empty in buildah's image"
                );
            }
        }
    }
    let differences: Vec<String> = theirs_fs
        .keys()
        .chain(mine.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| theirs_fs.get(*k) != mine.get(*k))
        .map(|k| {
            format!(
                "{k}: buildah {:?}, ours {:?}",
                theirs_fs.get(k),
                mine.get(k)
            )
        })
        .collect();

    // The configs, field by field; buildah labels its images with its version. Shell is
    // not compared: an OCI config has none, and buildah's push to an OCI layout drops it
    // (ours keeps it, as BuildKit's OCI configs do; checked below).
    let mut config_differences = Vec::new();
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "OnBuild",
    ] {
        let norm = |v: &serde_json::Value| {
            let mut v = v.clone();
            if let Some(labels) = v.as_object_mut().filter(|_| field == "Labels") {
                labels.remove("io.buildah.version");
            }
            // buildah moves a redefined variable (PATH here) to the end of Env, Docker's
            // builders replace it in place (BuildKit's addEnv), as we do: checked below.
            if let Some(env) = v.as_array_mut().filter(|_| field == "Env") {
                env.sort_by_key(|e| e.to_string());
            }
            // A shell-form CMD runs through SHELL in Docker (BuildKit's withShell); buildah
            // 1.28 always uses /bin/sh -c. The command itself is compared, our shell below.
            if let Some(cmd) = v.as_array_mut().filter(|c| field == "Cmd" && c.len() == 3) {
                cmd.drain(..2);
            }
            match &v {
                serde_json::Value::Null => serde_json::Value::Null,
                serde_json::Value::Object(o) if o.is_empty() => serde_json::Value::Null,
                serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
                serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
                _ => v,
            }
        };
        let (a, b) = (
            norm(&their_config["config"][field]),
            norm(&our_config["config"][field]),
        );
        if a != b {
            config_differences.push(format!("{field}: buildah {a}, ours {b}"));
        }
    }
    assert!(
        differences.is_empty() && config_differences.is_empty(),
        "differences:\n{}\n{}",
        differences.join("\n"),
        config_differences.join("\n")
    );

    // The comparison covered what the steps made.
    let text = "1500:1600 in /home/app/w prod 2.5\n";
    assert_eq!(
        mine["home/app/w/mine"],
        format!(
            "file {} {} nlink=2 644 1500:1600 []",
            text.len(),
            oci::Digest::of(text.as_bytes()).short()
        )
    );
    assert_eq!(mine["home/app/w/fifo"], "fifo 644 1500:1600 []");
    // RUN sees HOME and the supplementary groups of /etc/group, and not the lost+found of
    // the VM's ext4.
    for (path, text) in [
        ("home/app/w/ids", "1600 1700 /home/app\n"),
        ("srv/root-view", "/root \n"),
    ] {
        let want = format!(
            "file {} {} ",
            text.len(),
            oci::Digest::of(text.as_bytes()).short()
        );
        assert!(mine[path].starts_with(&want), "{path}: {}", mine[path]);
    }
    assert_eq!(mine["home/app/w"], "dir 755 1500:1600 []");
    assert!(
        mine["srv/app/run.sh"].ends_with(" 4750 1500:1600 [\"user.origin=637478\"]"),
        "{}",
        mine["srv/app/run.sh"]
    );
    assert!(
        mine["srv/result2"].ends_with(" 640 1500:1600 []"),
        "{}",
        mine["srv/result2"]
    );
    assert_eq!(mine["old"], "dir 700 0:0 []");
    assert!(mine.len() > 50, "{mine:#?}");
    assert!(mine.contains_key("old/n") && !mine.contains_key("old/z"));
    assert!(mine.contains_key("data/new") && !mine.contains_key("data/b.txt"));
    assert!(!mine.contains_key("bin/notexec.sh") && !mine.contains_key("bin/suid"));
    assert!(mine.contains_key("srv/app/keep.log"));
    assert!(!mine.contains_key("srv/app/drop.log") && !mine.contains_key("srv/app/secret"));
    assert!(mine.contains_key("srv/app/out/link") && !mine.contains_key("srv/app/out/sub"));
    assert!(
        mine["srv/run-hard"].contains(" nlink=2 4750 "),
        "{}",
        mine["srv/run-hard"]
    );
    assert!(mine.contains_key("srv/exec") && mine.contains_key("srv/shell"));
    assert!(
        mine["srv/x-moved"].ends_with(" 644 1500:1600 [\"user.origin=637478\"]"),
        "{}",
        mine["srv/x-moved"]
    );
    assert_eq!(mine["srv/sub-moved"], "dir 700 1500:1600 []");
    assert!(
        mine["srv/big-ids"].ends_with(" 644 3000000:3000001 []"),
        "{}",
        mine["srv/big-ids"]
    );
    assert!(
        mine["srv/sgid"].starts_with("dir 2775 ") && mine["srv/sticky"].starts_with("dir 1777 ")
    );
    assert!(mine.contains_key("srv/with space") && mine.contains_key("srv/ünï"));
    assert!(mine.keys().any(|k| k.len() > 240), "no long path");
    assert!(!mine.contains_key("srv/app/sub") && !mine.contains_key("srv/app/data/x.txt"));
    assert_eq!(
        our_config["config"]["Env"],
        serde_json::json!([
            "PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TESTVAR=hello",
            "OVERRIDE=image",
            "APP=/srv/app",
            "MODE=prod",
            "VERSION=2.5"
        ])
    );
    assert_eq!(
        our_config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-ec", "serve --mode $MODE"])
    );
    assert_eq!(our_config["config"]["User"], "app:web");
    assert_eq!(
        our_config["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-ec"])
    );
    assert_eq!(our_config["config"]["Labels"]["version"], "2.5");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and the guest kernel: run scripts/test.sh"
)]
fn commit_makes_an_image_of_a_containers_changes() {
    let env = Env::new(true);
    env.run(&[
        "run",
        "-d",
        "--network",
        "none",
        "-u",
        "0",
        "-e",
        "FROM_RUN=yes",
        "--name",
        "changer",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /new.txt; rm /bin/notexec.sh; mkdir -p /made/deep; touch /made/deep/f; sleep 600",
    ])
    .success();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while env
        .run(&["exec", "changer", "sh", "-c", "test -f /made/deep/f"])
        .code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let id = env
        .run(&[
            "commit",
            "-c",
            "CMD [\"cat\", \"/new.txt\"]",
            "-m",
            "by the test",
            "-a",
            "tester",
            "changer",
            "committed:1",
        ])
        .success()
        .stdout;
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // Still running after the pause around the copy.
    assert_eq!(env.inspect("changer")["State"]["Status"], "running");

    let out = env
        .run(&["run", "--rm", "--network", "none", "committed:1"])
        .success();
    assert_eq!(out.stdout, "changed\n");
    let out = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "committed:1",
            "sh",
            "-c",
            "echo $FROM_RUN; ls /bin/notexec.sh 2>/dev/null || echo gone; ls /made/deep",
        ])
        .success();
    assert_eq!(out.stdout, "yes\ngone\nf\n", "{}", out.stderr);
    let layers = layer_entries(&env, "committed:1");
    let top = layers.last().unwrap();
    assert!(top.contains(&"bin/.wh.notexec.sh".to_string()), "{top:?}");
    assert!(top.contains(&"new.txt".to_string()), "{top:?}");
    // Not a change: the guest's mount points, and no lost+found (the container's root
    // filesystem has none, as its image has none).
    assert!(
        !top.iter()
            .any(|e| e.starts_with("proc") || e == "etc/hosts" || e.starts_with("lost+found")),
        "{top:?}"
    );
    env.run(&["commit", "nope", "x:1"]).fails_with("nope");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and the guest kernel: run scripts/test.sh"
)]
fn run_mounts_cache_bind_tmpfs_and_secret() {
    let env = Env::new(true);
    let ctx = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("tok.txt");
    std::fs::write(&token, "s3cret").unwrap();
    write(
        ctx.path(),
        &[
            ("f.txt", "ctx file\n"),
            ("sub/a", "a\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM {IMAGE} AS src\n\
                     USER 0\n\
                     RUN mkdir -p /out && echo from-stage > /out/x\n\
                     FROM {IMAGE}\n\
                     USER 0\n\
                     RUN --mount=type=cache,target=/cache sh -c 'echo run >> /cache/log; wc -l < /cache/log > /count'\n\
                     RUN --mount=target=/ctx cat /ctx/f.txt /ctx/sub/a > /from-ctx\n\
                     RUN --mount=type=bind,source=f.txt,target=/one.txt cat /one.txt > /from-file\n\
                     RUN --mount=from=src,source=/out,target=/mnt cat /mnt/x > /from-stage\n\
                     RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/x && cat /scratch/x > /from-tmpfs'\n\
                     RUN --mount=type=secret,id=tok,required sh -c 'test \"$(cat /run/secrets/tok)\" = s3cret && echo ok > /secret-ok'\n\
                     RUN <<EOF\n#!/bin/sh\necho from-program > /program-out\nEOF\n"
                ),
            ),
        ],
    );
    let secret = format!("id=tok,src={}", token.display());
    build(&env, ctx.path(), &["--secret", &secret, "-t", "mounts:1"]).success();
    let check = "cat /count /from-ctx /from-file /from-stage /from-tmpfs /secret-ok /program-out; \
                 for p in /ctx /mnt /scratch /one.txt /run/secrets /cache; do \
                 test -e $p && echo \"$p is left\"; done; true";
    let out = env
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "mounts:1",
            "sh",
            "-c",
            check,
        ])
        .success();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        [
            "1",
            "ctx",
            "file",
            "a",
            "ctx",
            "file",
            "from-stage",
            "t",
            "ok",
            "from-program"
        ],
        "{}",
        out.stderr
    );
    for layer in layer_entries(&env, "mounts:1") {
        for e in &layer {
            assert!(
                ![
                    "run/secrets",
                    "cache",
                    "ctx",
                    "mnt",
                    "scratch",
                    "one.txt",
                    "dev/pipes"
                ]
                .iter()
                .any(|m| e.trim_end_matches('/') == *m || e.starts_with(&format!("{m}/"))),
                "{e} in {layer:?}"
            );
        }
    }
    // The cache outlives the build; `builder prune` empties it.
    build(
        &env,
        ctx.path(),
        &["--secret", &secret, "--no-cache", "-t", "mounts:2"],
    )
    .success();
    let count = |tag: &str| {
        env.run(&["run", "--rm", "--network", "none", tag, "cat", "/count"])
            .success()
            .stdout
    };
    assert_eq!(count("mounts:2").trim(), "2");
    env.run(&["builder", "prune", "-f"]).success();
    build(&env, ctx.path(), &["--secret", &secret, "-t", "mounts:3"]).success();
    assert_eq!(count("mounts:3").trim(), "1");
    // A required secret that was not given fails the step, naming it.
    let r = build(&env, ctx.path(), &["--no-cache", "-t", "mounts:4"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Dockerfile:11: secret tok is required but was not given"),
        "{}",
        r.stderr
    );
    assert_eq!(env.qemus(), 0);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and the guest kernel: run scripts/test.sh"
)]
fn run_network_none_has_only_loopback_in_a_networked_build() {
    let env = Env::new(true);
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {IMAGE}\n\
                 USER 0\n\
                 RUN cat /proc/net/dev > /with-net\n\
                 RUN --network=none cat /proc/net/dev > /without-net\n"
            ),
        )],
    );
    // The build's network is QEMU's user-mode NAT: no bridge or tap on the host.
    let ctx_arg = ctx.path().to_str().unwrap().to_string();
    env.run(&["build", "--network", "default", "-t", "nets", &ctx_arg])
        .success();
    let read = |f: &str| {
        env.run(&["run", "--rm", "--network", "none", "nets", "cat", f])
            .success()
            .stdout
    };
    let (with, without) = (read("/with-net"), read("/without-net"));
    assert!(with.contains("eth0:"), "{with}");
    assert!(
        without.contains("lo:") && !without.contains("eth0"),
        "{without}"
    );
}
