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
    assert_eq!(
        again.stderr.matches("Using cache").count(),
        3,
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("hi from world"), "{}", again.stderr);
    assert_eq!(layer_entries(&env, "built:2"), layers);

    // A changed file: its COPY and the steps after it run again.
    write(ctx.path(), &[("f.txt", "there\n")]);
    let changed = build(
        &env,
        ctx.path(),
        &["-t", "built:3", "--build-arg", "GREETING=hi"],
    )
    .success();
    assert_eq!(
        changed.stderr.matches("Using cache").count(),
        0,
        "{}",
        changed.stderr
    );
    let out = env
        .run(&["run", "--rm", "--network", "none", "built:3"])
        .success();
    assert_eq!(out.stdout, "hi from there\n");

    // A different build argument invalidates the RUN that sees it, not the COPY.
    let arg = build(&env, ctx.path(), &["-t", "built:4"]).success();
    assert_eq!(
        arg.stderr.matches("Using cache").count(),
        1,
        "{}",
        arg.stderr
    );
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
    assert_eq!(
        cached.stderr.matches("Using cache").count(),
        3,
        "{}",
        cached.stderr
    );
    env.run(&["builder", "prune", "-f"]).success();
    let fresh = build(&env, ctx.path(), &["-t", "built:6"]).success();
    assert_eq!(
        fresh.stderr.matches("Using cache").count(),
        0,
        "{}",
        fresh.stderr
    );
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
    assert_eq!(env.qemus(), 0);
}
