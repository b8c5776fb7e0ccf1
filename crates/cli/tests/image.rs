//! `container image …` and `container registry …` against a real `docker-registry` the tests
//! start, with skopeo and umoci as outside oracles, and a fake registry for faults.

mod common;

use std::time::{Duration, Instant};

use common::fake::{FakeRegistry, Route};
use common::images::{self, push_with_skopeo};
use common::{sha256, tool, Cli, Registry};

/// A registry with the busybox image pushed by skopeo as `busybox:latest`.
fn registry_with_busybox() -> (Registry, images::TestImage, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let image = images::busybox(&dir.path().join("layout"));
    let reg = Registry::start();
    push_with_skopeo(&image, &reg.reference("busybox:latest"));
    (reg, image, dir)
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn pull_list_inspect_and_outside_readers() {
    let (reg, image, _dir) = registry_with_busybox();
    let cli = Cli::new();
    let r = reg.reference("busybox");
    let out = cli.run(&["image", "pull", &r]).success();
    assert_eq!(out.stdout.trim(), format!("{}/busybox:latest", reg.addr));

    // list --format json: normalised reference and the manifest digest.
    let list = cli
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["reference"], format!("{}/busybox:latest", reg.addr));
    assert_eq!(list[0]["digest"], image.digest.as_str());
    // `ls` alias and table output.
    let table = cli.run(&["image", "ls"]).success().stdout;
    assert!(table.contains("REFERENCE") && table.contains(&format!("{}/busybox:latest", reg.addr)));

    // Every blob is byte-identical to the layout's.
    for d in image.layers.iter().chain([&image.config, &image.digest]) {
        let hex = d.trim_start_matches("sha256:");
        assert_eq!(
            std::fs::read(cli.layout().join("blobs/sha256").join(hex)).unwrap(),
            image.blob(d)
        );
    }
    assert_eq!(cli.temp_files(), 0);

    // inspect: manifest, config fields, platform.
    let info = cli.run(&["image", "inspect", &r]).success().json()[0].clone();
    assert_eq!(info["digest"], image.digest.as_str());
    assert_eq!(info["platform"]["architecture"], "amd64");
    assert_eq!(info["platform"]["os"], "linux");
    assert_eq!(info["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(info["config"]["WorkingDir"], "/data");
    assert_eq!(info["config"]["User"], "1000:1000");
    assert!(info["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "TESTVAR=hello"));
    assert!(info["config"]["ExposedPorts"].get("8080/tcp").is_some());
    assert_eq!(info["config"]["Labels"]["org.example.test"], "busybox");
    assert_eq!(info["manifest"]["layers"].as_array().unwrap().len(), 3);

    // Outside readers of the store's OCI layout.
    let layout_ref = format!("oci:{}:{}/busybox:latest", cli.layout().display(), reg.addr);
    let sk: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &layout_ref])).unwrap();
    assert_eq!(sk["Digest"], image.digest.as_str());
    assert_eq!(sk["Layers"].as_array().unwrap().len(), 3);
    let umoci = tool(
        "umoci",
        &["ls", "--layout", &cli.layout().to_string_lossy()],
    );
    assert!(
        umoci.contains(&format!("{}/busybox:latest", reg.addr)),
        "{umoci}"
    );
    let stat = tool(
        "umoci",
        &[
            "stat",
            "--image",
            &format!("{}:{}/busybox:latest", cli.layout().display(), reg.addr),
        ],
    );
    assert!(stat.contains("container test suite"), "{stat}");

    // A second pull fetches nothing again and changes nothing.
    let before = cli.blobs();
    cli.run(&["image", "pull", "-q", &r]).success();
    assert_eq!(cli.blobs(), before);

    // Pinned by digest: a second name for the same content.
    let pinned = format!("{}/busybox@{}", reg.addr, image.digest);
    let out = cli.run(&["image", "pull", "-q", &pinned]).success();
    assert_eq!(out.stdout.trim(), pinned);
    let refs = cli.run(&["image", "list", "-q"]).success().stdout;
    assert!(refs.lines().any(|l| l == pinned), "{refs}");
    assert_eq!(cli.blobs(), before);
    let info = cli.run(&["image", "inspect", &pinned]).success().json()[0].clone();
    assert_eq!(info["digest"], image.digest.as_str());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn push_then_pull_back_byte_identical_monolithic_and_chunked() {
    let (reg, image, _dir) = registry_with_busybox();
    let cli = Cli::new();
    cli.run(&["image", "pull", "-q", &reg.reference("busybox")])
        .success();
    // Monolithic (default chunk size exceeds every blob) and chunked (tiny chunks).
    cli.run(&[
        "image",
        "tag",
        &reg.reference("busybox"),
        &reg.reference("copy/mono:v1"),
    ])
    .success();
    cli.run(&[
        "image",
        "tag",
        &reg.reference("busybox"),
        &reg.reference("copy/chunked:v1"),
    ])
    .success();
    let pushed = cli
        .run(&["image", "push", "-q", &reg.reference("copy/mono:v1")])
        .success();
    assert_eq!(pushed.stdout.trim(), image.digest);
    cli.run(&[
        "image",
        "push",
        "-q",
        "--chunk-size",
        "65536",
        &reg.reference("copy/chunked:v1"),
    ])
    .success();
    for name in ["copy/mono:v1", "copy/chunked:v1"] {
        let other = Cli::new();
        other
            .run(&["image", "pull", "-q", &reg.reference(name)])
            .success();
        let list = other
            .run(&["image", "list", "--format", "json"])
            .success()
            .json();
        assert_eq!(list[0]["digest"], image.digest.as_str(), "{name}");
        for d in &image.layers {
            let hex = d.trim_start_matches("sha256:");
            assert_eq!(
                std::fs::read(other.layout().join("blobs/sha256").join(hex)).unwrap(),
                image.blob(d)
            );
        }
        // skopeo (outside) agrees on what the registry now holds.
        let sk = tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{}", reg.reference(name)),
            ],
        );
        assert!(sk.contains(&image.digest), "{sk}");
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn multi_arch_index_picks_platform_and_lists_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::multi_arch(&dir.path().join("layout"));
    let reg = Registry::start();
    push_with_skopeo(&image, &reg.reference("multi:1"));
    let cli = Cli::new();
    let r = reg.reference("multi:1");
    cli.run(&["image", "pull", "-q", &r]).success();
    let list = cli
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    // The name points at the index.
    assert_eq!(list[0]["digest"], image.digest.as_str());
    let info = cli.run(&["image", "inspect", &r]).success().json()[0].clone();
    assert_eq!(info["platform"]["architecture"], "amd64");
    assert_eq!(info["manifestDigest"], image.manifests[0].as_str());
    assert!(info["index"]["manifests"].is_array());

    let arm = Cli::new();
    arm.run(&["image", "pull", "-q", "--platform", "linux/arm64", &r])
        .success();
    let info = arm
        .run(&["image", "inspect", "--platform", "linux/arm64", &r])
        .success()
        .json()[0]
        .clone();
    assert_eq!(info["platform"]["architecture"], "arm64");
    assert_eq!(info["manifestDigest"], image.manifests[1].as_str());

    // Apple's --os/--arch (uname's aarch64 is arm64), and --progress plain: a line as each
    // blob starts and ends, terminal or not.
    let apple = Cli::new();
    let r2 = apple
        .run(&[
            "image",
            "pull",
            "--progress",
            "plain",
            "--os",
            "linux",
            "--arch",
            "aarch64",
            &r,
        ])
        .success();
    let lines: Vec<&str> = r2.stderr.lines().collect();
    let started: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" pulling "))
        .map(|l| &l[..12])
        .collect();
    assert!(!started.is_empty(), "{r2:?}");
    for blob in started {
        assert!(lines.contains(&format!("{blob} done").as_str()), "{r2:?}");
    }
    let info = apple
        .run(&["image", "inspect", "--platform", "linux/arm64", &r])
        .success()
        .json()[0]
        .clone();
    assert_eq!(info["manifestDigest"], image.manifests[1].as_str());
    let quiet = Cli::new();
    let r3 = quiet
        .run(&["image", "pull", "--progress", "none", &r])
        .success();
    assert!(!r3.stderr.contains("pulling"), "{r3:?}");

    let none = Cli::new();
    let out = none
        .run(&["image", "pull", "--platform", "linux/s390x", &r])
        .fails_with("linux/s390x");
    assert!(
        out.stderr.contains("linux/amd64") && out.stderr.contains("linux/arm64/v8"),
        "{}",
        out.stderr
    );
    assert!(none
        .run(&["image", "list", "-q"])
        .success()
        .stdout
        .is_empty());

    // A complete index in the store pushes whole and comes back identical.
    let all = Cli::new();
    let archive = dir.path().join("multi.tar");
    images::to_oci_archive(&image, &archive, &reg.reference("multi:2"));
    all.run(&["image", "load", "-i", &archive.to_string_lossy()])
        .success();
    all.run(&["image", "push", "-q", &reg.reference("multi:2")])
        .success();
    let back = Cli::new();
    back.run(&[
        "image",
        "pull",
        "-q",
        "--platform",
        "linux/arm64",
        &reg.reference("multi:2"),
    ])
    .success();
    let list = back
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["digest"], image.digest.as_str());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn save_load_round_trip_with_skopeo_as_oracle() {
    let (reg, image, dir) = registry_with_busybox();
    let cli = Cli::new();
    let r = reg.reference("busybox");
    cli.run(&["image", "pull", "-q", &r]).success();
    let archive = dir.path().join("saved.tar");
    cli.run(&["image", "save", "-o", &archive.to_string_lossy(), &r])
        .success();
    let sk: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", archive.display())],
    ))
    .unwrap();
    assert_eq!(sk["Digest"], image.digest.as_str());

    let other = Cli::new();
    let out = other
        .run(&["image", "load", "-i", &archive.to_string_lossy()])
        .success();
    assert!(
        out.stdout.contains(&format!("{}/busybox:latest", reg.addr)),
        "{}",
        out.stdout
    );
    let list = other
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["digest"], image.digest.as_str());
    assert_eq!(other.blobs(), cli.blobs());

    // docker-archive (written by skopeo) loads too.
    let docker = dir.path().join("docker.tar");
    images::to_docker_archive(&image, &docker, "example/bb:v9");
    let third = Cli::new();
    let out = third
        .run(&["image", "load", "-i", &docker.to_string_lossy()])
        .success();
    assert!(
        out.stdout.contains("docker.io/example/bb:v9"),
        "{}",
        out.stdout
    );
    let info = third
        .run(&["image", "inspect", "example/bb:v9"])
        .success()
        .json()[0]
        .clone();
    assert_eq!(info["config"]["WorkingDir"], "/data");
    assert_eq!(info["layers"].as_array().unwrap().len(), 3);

    // A corrupted archive is refused and names nothing.
    let bad = dir.path().join("bad.tar");
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let fresh = Cli::new();
    fresh
        .run(&["image", "load", "-i", &bad.to_string_lossy()])
        .fails_with("bad.tar");
    assert!(fresh
        .run(&["image", "list", "-q"])
        .success()
        .stdout
        .is_empty());
    let not_archive = dir.path().join("empty.tar");
    std::fs::write(&not_archive, images::LayerBuilder::new().finish().tar).unwrap();
    fresh
        .run(&["image", "load", "-i", &not_archive.to_string_lossy()])
        .fails_with("not an image archive");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn tag_delete_prune() {
    let (reg, _image, _dir) = registry_with_busybox();
    let cli = Cli::new();
    let r = reg.reference("busybox");
    cli.run(&["image", "pull", "-q", &r]).success();
    cli.run(&["image", "tag", &r, "local/name:two"]).success();
    let refs = cli.run(&["image", "list", "-q"]).success().stdout;
    assert!(refs.contains("docker.io/local/name:two"), "{refs}");
    // inspect always prints an array, one object per reference, in order (as docker does).
    let both = cli
        .run(&["image", "inspect", &r, "local/name:two"])
        .success()
        .json();
    let both = both.as_array().expect("inspect prints an array");
    assert_eq!(both.len(), 2);
    assert_eq!(both[0]["digest"], both[1]["digest"]);
    let one = cli.run(&["image", "inspect", &r]).success().json();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    let blobs = cli.blobs();
    assert_eq!(blobs.len(), 5);

    cli.run(&["image", "rm", &r]).success();
    cli.run(&["image", "prune"]).success();
    assert_eq!(
        cli.blobs(),
        blobs,
        "blobs still named by local/name:two were pruned"
    );
    cli.run(&["image", "inspect", "local/name:two"]).success();

    cli.run(&["image", "delete", "local/name:two"]).success();
    cli.run(&["image", "delete", "local/name:two"])
        .fails_with("not found");
    let out = cli.run(&["image", "prune"]).success();
    assert!(out.stdout.contains("Deleted 5 blobs"), "{}", out.stdout);
    assert!(cli.blobs().is_empty());
    cli.run(&["image", "inspect", "local/name:two"])
        .fails_with("not found");
    cli.run(&["image", "tag", "nope:1", "other:2"])
        .fails_with("not found");
}

#[test]
fn import_rootfs_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("rootfs.tar");
    images::rootfs_tarball(&tarball);
    let cli = Cli::new();
    let out = cli
        .run(&["image", "import", &tarball.to_string_lossy(), "imported:v1"])
        .success();
    let info = cli
        .run(&["image", "inspect", "imported:v1"])
        .success()
        .json()[0]
        .clone();
    assert_eq!(info["digest"], out.stdout.trim());
    assert_eq!(info["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        info["layers"][0]["digest"],
        sha256(&std::fs::read(&tarball).unwrap()).as_str()
    );
    assert_eq!(
        info["rootfs"]["diff_ids"][0],
        sha256(&std::fs::read(&tarball).unwrap()).as_str()
    );
    assert_eq!(info["platform"]["os"], "linux");
    // umoci can read and unpack what import made.
    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:docker.io/library/imported:v1", cli.layout().display()),
            &bundle.to_string_lossy(),
        ],
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());

    // --change sets the config as docker import -c does; --message is the history comment.
    cli.run(&[
        "image",
        "import",
        "-c",
        "CMD [\"/bin/sh\", \"-c\", \"echo $GREETING\"]",
        "--change",
        "ENV GREETING=hi DIR=/srv",
        "-c",
        "WORKDIR $DIR/app",
        "-c",
        "EXPOSE 8080",
        "-m",
        "from a tarball",
        &tarball.to_string_lossy(),
        "imported:v2",
    ])
    .success();
    let info = cli
        .run(&["image", "inspect", "imported:v2"])
        .success()
        .json()[0]
        .clone();
    let config = &info["config"];
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo $GREETING"]),
        "{info}"
    );
    assert_eq!(
        config["Env"],
        serde_json::json!(["GREETING=hi", "DIR=/srv"])
    );
    assert_eq!(config["WorkingDir"], "/srv/app");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{info}");
    let blob = info["manifest"]["config"]["digest"].as_str().unwrap();
    let raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cli.layout().join("blobs/sha256").join(&blob[7..])).unwrap(),
    )
    .unwrap();
    assert_eq!(raw["history"][0]["comment"], "from a tarball");
    cli.run(&[
        "image",
        "import",
        "-c",
        "RUN true",
        &tarball.to_string_lossy(),
        "x:1",
    ])
    .fails_with("RUN is not a valid change command");

    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, vec![0x42u8; 4096]).unwrap();
    cli.run(&["image", "import", &junk.to_string_lossy(), "junk:1"])
        .fails_with("junk.tar");
    cli.run(&["image", "import", "/nonexistent.tar", "junk:1"])
        .fails_with("/nonexistent.tar");
    assert_eq!(
        cli.run(&["image", "list", "-q"])
            .success()
            .stdout
            .lines()
            .count(),
        2
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn basic_auth_with_login_logout_and_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::busybox(&dir.path().join("layout"));
    let reg = Registry::start_with_htpasswd("alice", "s3cret");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &format!("oci:{}:latest", image.layout.display()),
            &format!("docker://{}", reg.reference("private/bb:1")),
        ],
    );
    let cli = Cli::new();
    let r = reg.reference("private/bb:1");
    cli.run(&["image", "pull", &r]).fails_with("unauthorized");
    cli.run_with_stdin(
        &[
            "registry",
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &reg.addr,
        ],
        "wrong\n",
    )
    .fails_with("login");
    assert!(!cli.root().join("auth.json").exists());
    cli.run_with_stdin(
        &[
            "registry",
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &reg.addr,
        ],
        "s3cret\n",
    )
    .success();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cli.root().join("auth.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    cli.run(&["image", "pull", "-q", &r]).success();
    cli.run(&["image", "tag", &r, &reg.reference("private/pushed:1")])
        .success();
    cli.run(&["image", "push", "-q", &reg.reference("private/pushed:1")])
        .success();
    cli.run(&["registry", "logout", &reg.addr]).success();
    cli.run(&["registry", "logout", &reg.addr])
        .fails_with("not logged in");

    // Docker's config file is honoured too.
    let other = Cli::new();
    other.run(&["image", "pull", &r]).fails_with("unauthorized");
    std::fs::create_dir_all(other.root().join("docker")).unwrap();
    std::fs::write(
        other.root().join("docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    other.run(&["image", "pull", "-q", &r]).success();
}

#[test]
fn bearer_token_flow_with_cache() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::busybox(&dir.path().join("layout"));
    let fake = FakeRegistry::start();
    fake.serve_image("tok/bb", "v1", &image);
    fake.require_bearer("bob", "hunter2");
    let cli = Cli::new();
    let r = fake.reference("tok/bb:v1");
    cli.run(&["image", "pull", &r]).fails_with("unauthorized");
    cli.run_with_stdin(
        &[
            "registry",
            "login",
            "-u",
            "bob",
            "--password-stdin",
            &fake.addr,
        ],
        "nope",
    )
    .fails_with("rejected");
    cli.run_with_stdin(
        &[
            "registry",
            "login",
            "-u",
            "bob",
            "--password-stdin",
            &fake.addr,
        ],
        "hunter2",
    )
    .success();
    let before = fake
        .token_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    cli.run(&["image", "pull", "-q", &r]).success();
    let used = fake
        .token_requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    // One token for the repository's pull scope serves the manifest and all five blobs.
    assert_eq!(used, 1, "token endpoint asked {used} times");
    let list = cli
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["digest"], image.digest.as_str());
}

#[test]
fn redirects_to_blob_storage_are_followed() {
    let (fake, image, _dir) = fake_with_busybox();
    for layer in &image.layers {
        let path = format!("/v2/bad/bb/blobs/{layer}");
        let storage = format!("/storage/{}", layer.trim_start_matches("sha256:"));
        fake.route(&storage, fake.get_route(&path));
        let mut redirect = Route::ok("text/plain", Vec::new());
        redirect.status = 307;
        redirect
            .headers
            .push(("Location".into(), format!("http://{}{storage}", fake.addr)));
        fake.route(&path, redirect);
    }
    let cli = Cli::new();
    cli.run(&["image", "pull", "-q", &fake.reference("bad/bb:v1")])
        .success();
    let seen = fake.requests.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|r| r.contains("/storage/")).count(),
        3,
        "{seen:?}"
    );
    assert_nothing_half_written_except_names(&cli, &image);
}

/// A fake registry serving the busybox image as `bad/bb:v1`, to be broken by each test.
fn fake_with_busybox() -> (FakeRegistry, images::TestImage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let image = images::busybox(&dir.path().join("layout"));
    let fake = FakeRegistry::start();
    fake.serve_image("bad/bb", "v1", &image);
    (fake, image, dir)
}

/// Asserts a failed pull left no name and no temp file behind, and only complete blobs.
#[track_caller]
fn assert_nothing_half_written(cli: &Cli, image: &images::TestImage) {
    assert!(cli
        .run(&["image", "list", "-q"])
        .success()
        .stdout
        .is_empty());
    assert_eq!(cli.temp_files(), 0, "temp files left behind");
    for blob in cli.blobs() {
        let d = format!("sha256:{blob}");
        let data = std::fs::read(cli.layout().join("blobs/sha256").join(&blob)).unwrap();
        assert_eq!(sha256(&data), d, "corrupt blob committed");
        assert_eq!(data, image.blob(&d));
    }
}

#[test]
fn bad_registry_answers_are_refused_cleanly() {
    let (fake, image, _dir) = fake_with_busybox();
    let r = fake.reference("bad/bb:v1");
    let layer = image.layers[1].clone();
    let blob_path = format!("/v2/bad/bb/blobs/{layer}");
    let good = fake.get_route(&blob_path);

    // Tampered content, same size: digest mismatch.
    let mut tampered = good.clone();
    let n = tampered.body.len();
    tampered.body[n / 2] ^= 0x55;
    fake.route(&blob_path, tampered);
    let cli = Cli::new();
    cli.run(&["image", "pull", &r])
        .fails_with("digest mismatch");
    assert_nothing_half_written(&cli, &image);

    // Wrong size (extra bytes).
    let mut bigger = good.clone();
    bigger.body.extend_from_slice(b"trailing garbage");
    fake.route(&blob_path, bigger);
    cli.run(&["image", "pull", &r]).fails_with("wrong size");
    assert_nothing_half_written(&cli, &image);

    // Truncated download: Content-Length promises more than arrives.
    let mut short = good.clone();
    short.truncate_to = Some(short.body.len() / 3);
    fake.route(&blob_path, short);
    cli.run(&["image", "pull", &r]).fails_with("interrupted");
    assert_nothing_half_written(&cli, &image);

    // Restored: the pull completes.
    fake.route(&blob_path, good);
    cli.run(&["image", "pull", "-q", &r]).success();
    assert_eq!(cli.run(&["image", "list", "-q"]).success().stdout.trim(), r);
}

#[test]
fn hostile_registries_fail_fast_and_leave_nothing() {
    let (fake, image, _dir) = fake_with_busybox();
    let r = fake.reference("bad/bb:v1");
    let layer = image.layers[1].clone();
    let blob_path = format!("/v2/bad/bb/blobs/{layer}");
    let manifest_path = "/v2/bad/bb/manifests/v1";
    let (good_blob, good_manifest) = (fake.get_route(&blob_path), fake.get_route(manifest_path));
    let mut cli = Cli::new();
    // A registry may stay silent (and trickle) for 2 s here instead of a minute.
    cli.env("CONTAINER_REGISTRY_TIMEOUT", "2");
    let fails_fast = |cli: &Cli, needle: &str| {
        let t = std::time::Instant::now();
        cli.run(&["image", "pull", &r]).fails_with(needle);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{needle}: {:?}",
            t.elapsed()
        );
        assert_nothing_half_written(cli, &image);
    };

    // A blob that never ends, without a length: cut at its descriptor's size.
    let mut endless = Route::ok("application/octet-stream", vec![b'x'; 4096]);
    endless.endless = true;
    fake.route(&blob_path, endless.clone());
    fails_fast(&cli, "wrong size");
    // A trickle: a byte every 100 ms keeps each read alive but goes nowhere.
    let mut trickle = good_blob.clone();
    trickle.chunk = Some(1);
    trickle.delay = Some(Duration::from_millis(100));
    fake.route(&blob_path, trickle);
    fails_fast(&cli, "too slow");
    // Silence after the request.
    let mut silent = good_blob.clone();
    silent.stall = Some(Duration::from_secs(30));
    fake.route(&blob_path, silent);
    fails_fast(&cli, "timed out");
    // A redirect to itself.
    let mut lp = Route::ok("text/plain", Vec::new());
    lp.status = 302;
    lp.headers.push((
        "Location".into(),
        format!("http://{}{blob_path}", fake.addr),
    ));
    fake.route(&blob_path, lp);
    fails_fast(&cli, "redirect");
    fake.route(&blob_path, good_blob);

    // Manifests: huge with a length, endless without one.
    let huge = Route::ok(
        "application/vnd.oci.image.manifest.v1+json",
        vec![b' '; (8 << 20) + 1],
    );
    fake.route(manifest_path, huge);
    fails_fast(&cli, "larger than");
    let mut endless_doc = Route::ok(
        "application/vnd.oci.image.manifest.v1+json",
        vec![b' '; 4096],
    );
    endless_doc.endless = true;
    fake.route(manifest_path, endless_doc);
    fails_fast(&cli, "larger than");
    fake.route(manifest_path, good_manifest);

    // Token endpoints that fail: an error status, garbage, an endless answer.
    fake.require_bearer("bob", "hunter2");
    let mut err = Route::ok("text/plain", b"boom".to_vec());
    err.status = 500;
    fake.route("/token", err);
    fails_fast(&cli, "cannot get a token");
    fake.route(
        "/token",
        Route::ok("application/json", b"{not json".to_vec()),
    );
    fails_fast(&cli, "bad JSON");
    fake.route("/token", endless);
    fails_fast(&cli, "larger than");
}

#[test]
fn malformed_and_unknown_documents_are_refused() {
    let (fake, image, _dir) = fake_with_busybox();
    let cli = Cli::new();
    let cases: Vec<(&str, Route, &str)> = vec![
        ("broken-json", Route::ok("application/vnd.oci.image.manifest.v1+json", b"{\"schemaVersion\": 2, \"config\": ".to_vec()), "malformed"),
        (
            "broken-index",
            Route::ok("application/vnd.oci.image.index.v1+json", br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:nothex"}]}"#.to_vec()),
            "malformed image index",
        ),
        (
            "unknown-type",
            Route::ok("application/x-unknown", br#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}"#.to_vec()),
            "application/vnd.example.thing+json",
        ),
        (
            "schema1",
            Route::ok("application/vnd.docker.distribution.manifest.v1+prettyjws", br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec()),
            "unsupported media type",
        ),
    ];
    for (tag, route, needle) in cases {
        fake.route(&format!("/v2/bad/bb/manifests/{tag}"), route);
        cli.run(&["image", "pull", &fake.reference(&format!("bad/bb:{tag}"))])
            .fails_with(needle);
    }
    // A manifest whose layer has a media type we do not know.
    let mut m: serde_json::Value = serde_json::from_slice(&image.blob(&image.digest)).unwrap();
    m["layers"][0]["mediaType"] = "application/vnd.example.layer.v1+squashfs".into();
    fake.route(
        "/v2/bad/bb/manifests/odd-layer",
        Route::ok(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&m).unwrap(),
        ),
    );
    cli.run(&["image", "pull", &fake.reference("bad/bb:odd-layer")])
        .fails_with("squashfs");
    // Pinned by a digest the registry's bytes do not match.
    let wrong = format!("sha256:{}", "0".repeat(64));
    fake.route(
        &format!("/v2/bad/bb/manifests/{wrong}"),
        fake.get_route("/v2/bad/bb/manifests/v1"),
    );
    cli.run(&["image", "pull", &fake.reference(&format!("bad/bb@{wrong}"))])
        .fails_with("manifest digest mismatch");
    assert_nothing_half_written(&cli, &image);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn unknown_images_unreachable_registries_and_bad_references() {
    let (reg, _image, _dir) = registry_with_busybox();
    let cli = Cli::new();
    cli.run(&["image", "pull", &reg.reference("nosuchimage")])
        .fails_with("not found");
    cli.run(&["image", "pull", &reg.reference("busybox:nosuchtag")])
        .fails_with("not found");
    let port = common::registry::free_port();
    cli.run(&["image", "pull", &format!("127.0.0.1:{port}/x:1")])
        .fails_with("cannot reach registry");
    cli.run(&["image", "pull", "UPPER/case"])
        .fails_with("invalid reference");
    cli.run(&[
        "image",
        "pull",
        "--platform",
        "linux",
        &reg.reference("busybox"),
    ])
    .fails_with("invalid platform");
    // https against a plain-HTTP registry fails; --scheme http against 127.0.0.1 works.
    cli.run(&[
        "image",
        "pull",
        "--scheme",
        "https",
        &reg.reference("busybox"),
    ])
    .fails_with(&reg.addr);
    cli.run(&[
        "image",
        "pull",
        "-q",
        "--scheme",
        "http",
        &reg.reference("busybox"),
    ])
    .success();
    cli.run(&["image", "push", "nothere:1"])
        .fails_with("not found");
    cli.run(&["image", "inspect", "nothere:1"])
        .fails_with("not found");
    cli.run(&[
        "image",
        "save",
        "-o",
        "/nonexistent-dir/x.tar",
        &reg.reference("busybox"),
    ])
    .fails_with("/nonexistent-dir/x.tar");
    cli.run(&["image", "load", "-i", "/nonexistent.tar"])
        .fails_with("/nonexistent.tar");
}

#[test]
fn kill_during_pull_then_pull_again() {
    let (fake, image, _dir) = fake_with_busybox();
    // The base layer (~1 MiB) trickles out at 64 KiB per 200 ms: several seconds.
    let base = format!("/v2/bad/bb/blobs/{}", image.layers[0]);
    let good = fake.get_route(&base);
    let mut slow = good.clone();
    slow.delay = Some(Duration::from_millis(200));
    fake.route(&base, slow);
    let cli = Cli::new();
    let r = fake.reference("bad/bb:v1");
    let mut child = cli.command(&["image", "pull", "-q", &r]).spawn().unwrap();
    let start = Instant::now();
    while cli.temp_files() == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cli.temp_files() > 0, "pull never started writing");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(cli
        .run(&["image", "list", "-q"])
        .success()
        .stdout
        .is_empty());
    fake.route(&base, good);
    cli.run(&["image", "pull", "-q", &r]).success();
    let list = cli
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["digest"], image.digest.as_str());
    // The dead pull's temp file is garbage that prune removes; every blob is intact.
    cli.run(&["image", "prune"]).success();
    assert_eq!(cli.temp_files(), 0);
    assert_nothing_half_written_except_names(&cli, &image);
}

#[test]
fn ctrl_c_during_pull_leaves_nothing_behind() {
    let (fake, image, _dir) = fake_with_busybox();
    let base = format!("/v2/bad/bb/blobs/{}", image.layers[0]);
    let good = fake.get_route(&base);
    let mut slow = good.clone();
    slow.delay = Some(Duration::from_millis(200));
    fake.route(&base, slow);
    let cli = Cli::new();
    let r = fake.reference("bad/bb:v1");
    let child = cli
        .command(&["image", "pull", "-q", &r])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while cli.temp_files() == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cli.temp_files() > 0, "pull never started writing");
    tool("kill", &["-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(cli.temp_files(), 0, "temp files left after Ctrl-C");
    assert!(cli
        .run(&["image", "list", "-q"])
        .success()
        .stdout
        .is_empty());
    fake.route(&base, good);
    cli.run(&["image", "pull", "-q", &r]).success();
    assert_nothing_half_written_except_names(&cli, &image);
}

fn assert_nothing_half_written_except_names(cli: &Cli, image: &images::TestImage) {
    for blob in cli.blobs() {
        let data = std::fs::read(cli.layout().join("blobs/sha256").join(&blob)).unwrap();
        assert_eq!(data, image.blob(&format!("sha256:{blob}")));
    }
    assert_eq!(cli.blobs().len(), 5);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn concurrent_pulls_of_the_same_image() {
    let (reg, image, _dir) = registry_with_busybox();
    let cli = Cli::new();
    let r = reg.reference("busybox");
    let mut procs: Vec<_> = (0..4)
        .map(|_| {
            cli.command(&["image", "pull", "-q", &r])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in procs.iter_mut() {
        assert!(p.wait().unwrap().success());
    }
    let list = cli
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["digest"], image.digest.as_str());
    assert_eq!(cli.temp_files(), 0);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn progress_bars_only_on_a_terminal() {
    let (reg, image, _dir) = registry_with_busybox();
    let r = reg.reference("busybox");
    // Not a terminal: no bars, one summary line on stderr.
    let plain = Cli::new();
    let out = plain.run(&["image", "pull", &r]).success();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("Pulled "), "{}", out.stderr);
    // A terminal (util-linux `script` gives the command a pty): one bar per blob.
    let tty = Cli::new();
    let cmd = format!(
        "{} --root {} image pull {}",
        env!("CARGO_BIN_EXE_container"),
        tty.root().display(),
        r
    );
    let shown = tool("script", &["-qec", &cmd, "/dev/null"]);
    for d in image.layers.iter().chain([&image.config]) {
        let short = &d.trim_start_matches("sha256:")[..12];
        assert!(shown.contains(short), "no bar for {short}: {shown}");
    }
    assert!(shown.contains("done"), "{shown}");
    // -q on a terminal: nothing but the reference.
    let quiet = Cli::new();
    let cmd = format!(
        "{} --root {} image pull -q {}",
        env!("CARGO_BIN_EXE_container"),
        quiet.root().display(),
        r
    );
    let shown = tool("script", &["-qec", &cmd, "/dev/null"]);
    assert_eq!(shown.trim(), format!("{}/busybox:latest", reg.addr));
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs a registry (docker-registry): run scripts/test.sh"
)]
fn docker_media_types_pull_and_push() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::multi_arch(&dir.path().join("layout"));
    let reg = Registry::start();
    // skopeo converts to docker v2 schema 2: a manifest list of docker manifests, gzip layers.
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", image.layout.display()),
            &format!("docker://{}", reg.reference("dock:1")),
        ],
    );
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}", reg.reference("dock:1")),
        ],
    );
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );

    let cli = Cli::new();
    cli.run(&["image", "pull", "-q", &reg.reference("dock:1")])
        .success();
    let info = cli
        .run(&["image", "inspect", &reg.reference("dock:1")])
        .success()
        .json()[0]
        .clone();
    assert_eq!(info["digest"], sha256(raw.as_bytes()).as_str());
    assert_eq!(
        info["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        info["manifest"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(info["platform"]["architecture"], "amd64");
    assert_eq!(info["config"]["User"], "1000:1000");
    // Ours pushes it back (only the amd64 manifest is stored) and it pulls again identically.
    cli.run(&[
        "image",
        "tag",
        &reg.reference("dock:1"),
        &reg.reference("dock:amd64"),
    ])
    .success();
    cli.run(&["image", "push", "-q", &reg.reference("dock:amd64")])
        .success();
    let back = Cli::new();
    back.run(&["image", "pull", "-q", &reg.reference("dock:amd64")])
        .success();
    let again = back
        .run(&["image", "inspect", &reg.reference("dock:amd64")])
        .success()
        .json()[0]
        .clone();
    assert_eq!(again["digest"], info["manifestDigest"]);
    assert_eq!(
        again["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

/// A tar with the members of `good` (a tar file) and then one raw member: `name`, a regular
/// file, or a symlink to `link` — written with raw header bytes, since tar writers refuse
/// such names.
fn with_raw_member(good: &std::path::Path, name: &str, link: Option<&str>, out: &std::path::Path) {
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(good).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        b.append(&h, &data[..]).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(if link.is_some() {
        tar::EntryType::Symlink
    } else {
        tar::EntryType::Regular
    });
    h.set_mode(0o644);
    h.set_size(if link.is_some() { 0 } else { 4 });
    h.set_cksum();
    let data: &[u8] = if link.is_some() { b"" } else { b"evil" };
    b.append(&h, data).unwrap();
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::busybox(&dir.path().join("layout"));
    let good = dir.path().join("good.tar");
    tool(
        "tar",
        &[
            "-C",
            image.layout.to_str().unwrap(),
            "-cf",
            good.to_str().unwrap(),
            ".",
        ],
    );
    let cli = Cli::new();
    for (name, link, why) in [
        ("../escape", None, "has a .. component"),
        ("/etc/evil", None, "has an absolute path"),
        (
            "blobs/sha256/evil",
            Some("../../../../etc/passwd"),
            "links outside the archive",
        ),
        (
            "blobs/sha256/abs",
            Some("/etc/passwd"),
            "links to an absolute path",
        ),
    ] {
        let bad = dir.path().join("bad.tar");
        with_raw_member(&good, name, link, &bad);
        let r = cli.run(&["image", "load", "-i", bad.to_str().unwrap()]);
        let r = r.fails_with(why);
        assert!(
            r.stderr.contains("refusing a hostile archive"),
            "{}",
            r.stderr
        );
        // Nothing of it stays: no blob, no name, no temp file.
        assert!(cli.blobs().is_empty(), "{name}: {:?}", cli.blobs());
        assert_eq!(cli.run(&["image", "list", "-q"]).success().stdout, "");
        assert_eq!(cli.temp_files(), 0);
    }
    // The same archive without the extra member loads.
    cli.run(&["image", "load", "-i", good.to_str().unwrap()])
        .success();

    // import: a member climbing out is refused; absolute symlinks are a rootfs's own data.
    let rootfs = dir.path().join("rootfs.tar");
    images::rootfs_tarball(&rootfs);
    let bad = dir.path().join("bad-rootfs.tar");
    with_raw_member(&rootfs, "../etc/passwd", None, &bad);
    cli.run(&["image", "import", bad.to_str().unwrap(), "bad:1"])
        .fails_with("has a .. component");
    let linked = dir.path().join("linked-rootfs.tar");
    with_raw_member(&rootfs, "bin/abs-link", Some("/bin/busybox"), &linked);
    cli.run(&["image", "import", linked.to_str().unwrap(), "linked:1"])
        .success();
}
