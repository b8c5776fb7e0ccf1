//! Flags of `run`/`create` and the listings they feed, through the real binary: where flags end
//! and the command begins, `--label`/`--label-file` (containers, volumes, networks), `--filter`
//! on `list`/`ps`, `volume ls` and `network ls`, `--cidfile`, `--pull` and `--platform`.
//! Created containers need no VM, so all but one test only create; the last runs one
//! container for what only a running one shows.

mod common;

use std::time::{Duration, Instant};

use common::vm::{build_image, wait_output, Env, IMAGE};
use common::{images, Cli, Registry};
use serde_json::json;

/// An image with labels of its own, which containers inherit.
const LABELLED: &str = "localhost/labelled:1";

fn load_labelled(env: &Env) {
    let tar = images::archive(
        &env.cli.root().join("labelled-image"),
        LABELLED,
        &images::busybox_with(&[], |l| l),
        json!({
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Labels": {"k": "image", "org.example.team": "core"},
        }),
    );
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
}

/// The names `list ARGS…` prints, in its order.
fn names(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "--format", "{{.Names}}"];
    all.extend(args);
    env.run(&all)
        .success()
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

fn create(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["create"];
    all.extend(args);
    env.run(&all).success().stdout.trim().to_string()
}

#[test]
fn unknown_flags_before_the_image_are_usage_errors() {
    // Parsing fails before any state is touched: no root, VM or image needed.
    let cli = Cli::new();
    cli.run(&["run", "--gpus", "all", "localhost/img:1"])
        .fails_with("unexpected argument '--gpus'");
    // --restart is known: its own errors are docker's, and it refuses --rm as docker does.
    cli.run(&["run", "--restart", "always:3", "localhost/img:1"])
        .fails_with("maximum retry count cannot be used with restart policy 'always'");
    cli.run(&["create", "--restart", "on-failure:-1", "localhost/img:1"])
        .fails_with("maximum retry count cannot be negative");
    cli.run(&["run", "--restart", "sometimes", "localhost/img:1"])
        .fails_with("invalid restart policy 'sometimes'");
    cli.run(&["run", "--rm", "--restart", "always", "localhost/img:1"])
        .fails_with("Conflicting options: --restart and --rm");
    cli.run(&["run", "--bogus", "localhost/img:1", "true"])
        .fails_with("unexpected argument '--bogus'");
    // The health flags are known; their errors are docker's, before any image is pulled.
    cli.run(&[
        "create",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "localhost/img:1",
    ])
    .fails_with("--no-healthcheck conflicts with --health-* options");
    cli.run(&["create", "--health-interval", "10", "localhost/img:1"])
        .fails_with("--health-interval");
    let r = cli
        .run(&["run", "--privilegd", "localhost/img:1"])
        .fails_with("unexpected argument");
    assert!(r.stderr.contains("'--privileged'"), "no hint: {}", r.stderr);
    cli.run(&["exec", "--bogus", "box", "ls"])
        .fails_with("unexpected argument '--bogus'");
    cli.run(&["list", "--bogus"])
        .fails_with("unexpected argument '--bogus'");
    cli.run(&["run", "--pull", "sometimes", "localhost/img:1"])
        .fails_with("sometimes");
    cli.run(&["run", "--platform", "amd64", "localhost/img:1"])
        .fails_with("amd64");
    cli.run(&["run", "-l", "=v", "localhost/img:1"])
        .fails_with("needs a key");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn what_follows_the_image_is_the_command() {
    let env = Env::new(true);
    create(
        &env,
        &["--name", "a", "-l", "k=v", IMAGE, "sh", "-c", "echo --x"],
    );
    create(&env, &["--name", "b", IMAGE, "--rm", "-d"]);
    let f = |name| {
        env.run(&["inspect", "-f", "{{json .Path}} {{json .Args}}", name])
            .success()
            .stdout
    };
    assert_eq!(f("a"), "\"sh\" [\"-c\",\"echo --x\"]\n");
    assert_eq!(f("b"), "\"--rm\" [\"-d\"]\n");
    // Neither --rm nor -d after the image was taken for run's own.
    assert_eq!(
        env.run(&["inspect", "-f", "{{.HostConfig.AutoRemove}}", "b"])
            .success()
            .stdout,
        "false\n"
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn labels_merge_over_the_images_and_show_in_inspect_and_list() {
    let env = Env::new(true);
    load_labelled(&env);
    let file = env.cli.root().join("labels");
    std::fs::write(
        &file,
        "# from a file\n\nfrom.file=1\nk=file\n  spaced=a b \nbare\n",
    )
    .unwrap();
    let id = create(
        &env,
        &[
            "--name",
            "web",
            "--label-file",
            file.to_str().unwrap(),
            "-l",
            "k=flag",
            "--label",
            "empty",
            LABELLED,
        ],
    );
    let want = json!({
        "k": "flag",
        "org.example.team": "core",
        "from.file": "1",
        "spaced": "a b ",
        "bare": "",
        "empty": "",
    });
    let doc = env.inspect("web");
    assert_eq!(doc["Config"]["Labels"], want);
    assert_eq!(doc["config"]["labels"], want);
    let list = env
        .run(&["list", "-a", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["labels"], want);
    assert_eq!(
        env.run(&["list", "-a", "--format", "{{.Labels}}"])
            .success()
            .stdout,
        "bare=,empty=,from.file=1,k=flag,org.example.team=core,spaced=a b \n"
    );
    // The image keeps its own.
    let image = env.run(&["image", "inspect", LABELLED]).success().json();
    assert_eq!(
        image[0]["config"]["Labels"],
        json!({"k": "image", "org.example.team": "core"})
    );
    // A container of an image without labels has only its own.
    create(&env, &["--name", "plain", "-l", "a=1", IMAGE]);
    assert_eq!(env.inspect("plain")["Config"]["Labels"], json!({"a": "1"}));

    // Bad label files are one line naming the file, and create nothing.
    std::fs::write(&file, "ok=1\nbad key=1\n").unwrap();
    env.run(&["create", "--label-file", file.to_str().unwrap(), IMAGE])
        .fails_with("line 2");
    env.run(&["create", "--label-file", "/nonexistent/labels", IMAGE])
        .fails_with("/nonexistent/labels");
    assert_eq!(env.container_dirs().len(), 2);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn filters_select_containers_as_docker_does() {
    let env = Env::new(true);
    load_labelled(&env);
    create(
        &env,
        &["--name", "a", "-l", "tier=front", "-l", "team=core", IMAGE],
    );
    let b = create(
        &env,
        &[
            "--name",
            "b",
            "-l",
            "tier=back",
            "--network",
            "none",
            "-v",
            "data:/data",
            IMAGE,
        ],
    );
    create(&env, &["--name", "c", LABELLED]);
    let n = |args: &[&str]| names(&env, args);

    // Created containers are listed with -a, or by a status filter alone (as docker).
    assert!(n(&[]).is_empty());
    assert_eq!(n(&["--filter", "status=created"]), ["a", "b", "c"]);
    assert!(n(&["-a", "--filter", "status=running"]).is_empty());
    assert!(n(&["-f", "status=exited"]).is_empty());
    // Labels: a key, a key and value; several label filters must all hold.
    assert_eq!(n(&["-a", "--filter", "label=tier"]), ["a", "b"]);
    assert_eq!(n(&["-a", "-f", "label=tier=back"]), ["b"]);
    assert_eq!(n(&["-a", "-f", "label=tier", "-f", "label=team"]), ["a"]);
    assert_eq!(n(&["-a", "-f", "label=org.example.team=core"]), ["c"]);
    // Same key ORed, different keys ANDed.
    assert_eq!(n(&["-a", "-f", "name=^a$", "-f", "name=^c$"]), ["a", "c"]);
    assert_eq!(
        n(&["-a", "-f", "name=^a$", "-f", "name=^c$", "-f", "label=tier"]),
        ["a"]
    );
    assert_eq!(n(&["-f", "status=created", "-f", "label=tier"]), ["a", "b"]);
    // Names are docker's regular expressions, with or without its leading slash.
    assert_eq!(n(&["-a", "-f", "name=[ab]"]), ["a", "b"]);
    assert_eq!(n(&["-a", "-f", "name=^/c"]), ["c"]);
    assert_eq!(n(&["-a", "-f", &format!("id={}", &b[..10])]), ["b"]);
    assert_eq!(n(&["-a", "-f", "network=none"]), ["b"]);
    assert_eq!(n(&["-a", "-f", "network=default"]), ["a", "c"]);
    assert_eq!(n(&["-a", "-f", "volume=data"]), ["b"]);
    assert_eq!(n(&["-a", "-f", "volume=/data"]), ["b"]);
    assert!(n(&["-a", "-f", "exited=0"]).is_empty());
    // Images by reference, by another name of the same image, and by digest prefix.
    assert_eq!(n(&["-a", "-f", &format!("ancestor={IMAGE}")]), ["a", "b"]);
    assert_eq!(n(&["-a", "-f", &format!("ancestor={LABELLED}")]), ["c"]);
    env.run(&["image", "tag", IMAGE, "localhost/alias:2"])
        .success();
    assert_eq!(n(&["-a", "-f", "ancestor=localhost/alias:2"]), ["a", "b"]);
    let images = env
        .run(&["image", "list", "--format", "json"])
        .success()
        .json();
    let digest = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == IMAGE)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        n(&["-a", "-f", &format!("ancestor={}", &digest[..19])]),
        ["a", "b"]
    );
    assert!(n(&["-a", "-f", "ancestor=localhost/none:1"]).is_empty());
    // ps is list; -q prints the ids of what the filters select.
    assert_eq!(
        env.run(&["ps", "-aq", "-f", "label=tier=back"])
            .success()
            .stdout,
        format!("{b}\n")
    );

    // Unknown keys and impossible values are one line, exit 125.
    env.run(&["list", "-f", "colour=red"])
        .fails_with("invalid filter 'colour'");
    env.run(&["list", "-f", "status=sleeping"])
        .fails_with("invalid filter 'status=sleeping'");
    env.run(&["list", "-f", "exited=x"])
        .fails_with("invalid filter 'exited=x'");
    env.run(&["ps", "-f", "label"])
        .fails_with("expected name=value");
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn volumes_and_networks_have_labels_and_filters() {
    let env = Env::new(true);
    let file = env.cli.root().join("labels");
    std::fs::write(&file, "from.file=yes\n").unwrap();
    env.run(&[
        "volume",
        "create",
        "v1",
        "--size",
        "16m",
        "-l",
        "app=web",
        "--label-file",
        file.to_str().unwrap(),
    ])
    .success();
    env.run(&["volume", "create", "v2", "--size", "16m"])
        .success();
    env.run(&[
        "volume", "create", "other", "--size", "16m", "--label", "app=db",
    ])
    .success();
    create(&env, &["--name", "user", "-v", "v2:/data", IMAGE]);

    let vols = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["volume", "ls", "-q"];
        all.extend(args);
        env.run(&all)
            .success()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        env.run(&["volume", "inspect", "-f", "{{json .labels}}", "v1"])
            .success()
            .stdout,
        "{\"app\":\"web\",\"from.file\":\"yes\"}\n"
    );
    let list = env
        .run(&["volume", "ls", "--format", "json"])
        .success()
        .json();
    assert_eq!(list[2]["name"], "v2");
    assert_eq!(list[2]["labels"], json!({}));
    assert_eq!(vols(&["--filter", "label=app"]), ["other", "v1"]);
    assert_eq!(vols(&["-f", "label=app=web"]), ["v1"]);
    assert_eq!(vols(&["-f", "name=^v"]), ["v1", "v2"]);
    assert_eq!(vols(&["-f", "dangling=true"]), ["other", "v1"]);
    assert_eq!(vols(&["-f", "dangling=false"]), ["v2"]);
    assert_eq!(vols(&["-f", "driver=local", "-f", "name=other"]), ["other"]);
    env.run(&["volume", "ls", "-f", "status=running"])
        .fails_with("invalid filter 'status'");

    env.run(&[
        "network",
        "create",
        "labnet",
        "--subnet",
        "10.123.7.0/24",
        "--label",
        "env=test",
    ])
    .success();
    env.run(&["network", "create", "plain", "--subnet", "10.123.8.0/24"])
        .success();
    assert_eq!(
        env.run(&["network", "inspect", "-f", "{{json .labels}}", "labnet"])
            .success()
            .stdout,
        "{\"env\":\"test\"}\n"
    );
    let nets = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["network", "ls", "-q"];
        all.extend(args);
        env.run(&all)
            .success()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(nets(&["-f", "label=env=test"]), ["labnet"]);
    assert_eq!(nets(&["-f", "name=^pla"]), ["plain"]);
    assert!(nets(&["-f", "label=env=prod"]).is_empty());
    // Every network is a bridge, as docker's local ones.
    assert!(nets(&["-f", "driver=bridge"]).contains(&"labnet".to_string()));
    assert!(nets(&["-f", "driver=overlay"]).is_empty());
    env.run(&["network", "ls", "-f", "colour=red"])
        .fails_with("invalid filter 'colour'");
    env.run(&["network", "rm", "labnet", "plain"]).success();
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cidfile_pull_never_and_platform() {
    let env = Env::new(true);
    let dir = tempfile::tempdir().unwrap();
    let cid = dir.path().join("cid");
    let cid_arg = cid.to_str().unwrap();

    // The full id, without a newline; a second container with the same file is refused
    // before it is created.
    let id = create(&env, &["--cidfile", cid_arg, IMAGE]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    env.run(&["create", "--cidfile", cid_arg, IMAGE])
        .fails_with("found");
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    assert_eq!(env.container_dirs().len(), 1);
    // A failed create leaves no file behind.
    let failed = dir.path().join("failed");
    let failed_arg = failed.to_str().unwrap();
    env.run(&[
        "create",
        "--cidfile",
        failed_arg,
        "--pull",
        "never",
        "localhost/absent:1",
    ])
    .fails_with("localhost/absent:1 is not in the store");
    assert!(!failed.exists());
    env.run(&["create", "--cidfile", "/nonexistent/dir/cid", IMAGE])
        .fails_with("/nonexistent/dir/cid");

    // --pull never uses what the store has; --pull always pulls first, even then (and there
    // is no registry behind localhost/…).
    create(&env, &["--pull", "never", IMAGE]);
    create(&env, &["--pull", "missing", IMAGE]);
    env.run(&["create", "--pull", "always", IMAGE])
        .fails_with(&format!("cannot pull image {IMAGE}"));

    // --platform: linux/amd64 only, and the image must be for it.
    create(&env, &["--platform", "linux/amd64", IMAGE]);
    env.run(&["create", "--platform", "linux/arm64", IMAGE])
        .fails_with("platform linux/arm64 is not supported");
    let arm = "localhost/arm-only:1";
    let layout = dir.path().join("arm");
    let layers = images::busybox_layers();
    let w = images::LayoutWriter::new(&layout);
    let manifest = w.image(&images::busybox_config("arm64", &layers), &layers);
    let layout = w.finish(arm, manifest);
    let tar = dir.path().join("arm.tar");
    common::tool(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
    env.run(&[
        "create",
        "--platform",
        "linux/amd64",
        "--pull",
        "never",
        arm,
    ])
    .fails_with("is not in the store for platform linux/amd64");
    assert_eq!(env.container_dirs().len(), 4);
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and a registry: run scripts/test.sh"
)]
fn pull_always_gets_what_the_tag_points_to_now() {
    let env = Env::new(false);
    let registry = Registry::start();
    let reference = registry.reference("moving:1");
    let push = |layout: &std::path::Path, name: &str| {
        common::tool(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci:{}:{name}", layout.display()),
                &format!("docker://{reference}"),
            ],
        )
    };
    let first = build_image(&env.cli.root().join("first"));
    push(&first, IMAGE);
    // The registry listens on the host's loopback; create does not need the namespace.
    let host = |args: &[&str]| wait_output(env.cli.host_command(args));
    host(&["create", "--pull", "never", &reference]).fails_with("is not in the store");
    host(&["create", "--name", "one", &reference]).success();
    let second = images::layout(
        &env.cli.root().join("second"),
        "second",
        &images::busybox_with(&[], |l| l),
        json!({"Cmd": ["sh"], "Labels": {"version": "2"}}),
    );
    push(&second, "second");
    let digest = |name: &str| {
        env.run(&["inspect", "-f", "{{.imageDigest}}", name])
            .success()
            .stdout
    };
    // missing: the store has the tag, so the old image.
    host(&["create", "--name", "two", &reference]).success();
    assert_eq!(digest("one"), digest("two"));
    // always: the registry's image now.
    host(&["create", "--name", "three", "--pull", "always", &reference]).success();
    assert_ne!(digest("one"), digest("three"));
    assert_eq!(
        env.run(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"version\"}}",
            "three"
        ])
        .success()
        .stdout,
        "2\n"
    );
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn status_and_exit_filters_follow_a_running_container() {
    let env = Env::new(true);
    env.run(&[
        "run",
        "-d",
        "--name",
        "up",
        "-l",
        "role=server",
        IMAGE,
        "sh",
        "-c",
        "echo --x; sleep 600",
    ])
    .success();
    create(&env, &["--name", "idle", IMAGE]);
    assert_eq!(names(&env, &[]), ["up"]);
    assert_eq!(names(&env, &["-f", "status=running"]), ["up"]);
    assert_eq!(names(&env, &["-f", "status=created"]), ["idle"]);
    assert_eq!(
        names(&env, &["-f", "status=running", "-f", "status=created"]),
        ["up", "idle"]
    );
    assert_eq!(names(&env, &["-f", "label=role=server"]), ["up"]);
    // The flag after the image reached the command.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = env.run(&["logs", "up"]).success().stdout;
        if logs == "--x\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.run(&["kill", "up"]).success();
    let deadline = Instant::now() + Duration::from_secs(60);
    while names(&env, &["-f", "status=exited"]) != ["up"] {
        assert!(Instant::now() < deadline, "up did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(names(&env, &["-f", "status=running"]).is_empty());
    assert_eq!(names(&env, &["-a", "-f", "exited=137"]), ["up"]);
    assert!(names(&env, &["-a", "-f", "exited=0"]).is_empty());
}
