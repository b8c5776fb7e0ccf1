//! Pods end to end: `container pod create|start|stop|rm|ls|inspect` and `run --pod`, real VMs
//! (TCG) started by the real binary in a network namespace the test creates. Several
//! containers run in one VM (one QEMU), reach each other over localhost, share the pod's
//! published port, and keep their own root filesystems.

mod common;

use common::retry;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{images, vm, Cli};
use serde_json::json;

const IMAGE: &str = "localhost/pod-test:1";
const PAGE: &str = "hello from a pod\n";

/// Busybox with httpd, nc and a page at /www.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pod-image");
        let _ = std::fs::remove_dir_all(&dir);
        let applets = ["httpd", "nc", "sleep", "cat", "hostname"];
        let layers = images::busybox_with(&applets, |l| {
            l.dir("www", 0o755, 0, 0)
                .file("www/index.html", PAGE.as_bytes(), 0o644, 0, 0)
        });
        let config = json!({
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        });
        images::archive(&dir, IMAGE, &layers, config)
    })
}

/// GET / on localhost:`port` from inside container `name` (busybox nc), the body; retried
/// while the server starts.
fn get_inside(env: &vm::Env, name: &str, port: u16) -> Option<String> {
    retry(|| get_once(env, name, port))
}

fn get_once(env: &vm::Env, name: &str, port: u16) -> Option<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 {port}");
    let r = env.run(&["exec", name, "sh", "-c", &script]);
    let (head, body) = r.stdout.split_once("\r\n\r\n")?;
    (r.code == 0 && head.contains(" 200 ")).then(|| body.to_string())
}

#[test]
fn pod_flags_are_checked_before_anything_runs() {
    let cli = Cli::new();
    cli.run(&["pod", "create"]).fails_with("a pod needs a name");
    cli.run(&["pod", "create", "a", "--name", "b"])
        .fails_with("two names for one pod");
    cli.run(&["pod", "create", "-bad"])
        .fails_with("unexpected argument");
    cli.run(&["pod", "create", "bad/name"])
        .fails_with("invalid pod name \"bad/name\"");
    cli.run(&["run", "--pod", "nope", "localhost/img:1"])
        .fails_with("no such pod: nope");
    cli.run(&["pod", "rm", "nope"])
        .fails_with("no such pod: nope");
    cli.run(&["pod", "inspect", "nope"])
        .fails_with("no such pod: nope");
    // Flags that belong to the pod are refused for its containers.
    cli.run(&["pod", "create", "p"]).success();
    for (flags, what) in [
        (&["-p", "8080:80"][..], "-p/--publish"),
        (&["--network", "none"][..], "--network"),
        (&["--hostname", "x"][..], "--hostname"),
        (&["-v", "vol:/x"][..], "not volumes"),
    ] {
        let mut args = vec!["create", "--pod", "p"];
        args.extend_from_slice(flags);
        args.push("localhost/img:1");
        let r = cli.run(&args).fails_with(what);
        assert_eq!(r.code, 125, "{r:?}");
    }
    cli.run(&["create", "--pod", "p", "-m", "64g", "localhost/img:1"])
        .fails_with("does not fit pod p's VM");
    cli.run(&["pod", "create", "p"])
        .fails_with("pod name \"p\" is already in use");
    let ls = cli.run(&["pod", "ls", "--format", "json"]).success().json();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls[0]["Name"], "p");
    assert_eq!(ls[0]["State"], "created");
    assert_eq!(ls[0]["NumContainers"], 0);
    cli.run(&["pod", "rm", "p"]).success();
    assert!(cli.run(&["pod", "ls", "-q"]).success().stdout.is_empty());
    assert!(cli.run(&["ls", "-a", "-q"]).success().stdout.is_empty());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn containers_of_a_pod_share_one_vm() {
    let env = vm::Env::tagged("pod", false);
    env.run(&["image", "load", "-i", image_tar().to_str().unwrap()])
        .success();
    env.run(&["pod", "create", "web", "-p", "18081:8080", "-m", "256m"])
        .success();
    // A member starts its stopped pod first.
    env.run(&[
        "run", "-d", "--pod", "web", "--name", "srv", IMAGE, "httpd", "-f", "-p", "8080", "-h",
        "/www",
    ])
    .success();
    assert_eq!(env.qemus(), 1, "one VM for the pod");
    let pod = env.run(&["pod", "inspect", "web"]).success().json()[0].clone();
    assert_eq!(pod["State"], "running", "{pod}");
    assert_eq!(pod["NumContainers"], 1, "{pod}");
    assert_eq!(pod["Containers"][0]["Name"], "srv", "{pod}");
    let srv = env.inspect("srv");
    assert!(
        srv["vmPid"].is_null(),
        "a member has no VM of its own: {srv}"
    );
    assert_eq!(srv["config"]["pod"]["role"], "member", "{srv}");
    // Its image's filesystem reaches the pod as a link to the cached file, never a copy (the
    // image files are sparse gigabytes; a link cannot cross the share's bind mount).
    let infra = env.inspect("web-infra")["id"].as_str().unwrap().to_string();
    let srv_id = srv["id"].as_str().unwrap();
    let base = env
        .cli
        .root()
        .join("containers")
        .join(&infra)
        .join("pod-files")
        .join(&srv_id[..12])
        .join("base.ext4");
    assert!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&base).unwrap()) >= 2,
        "{} is a copy",
        base.display()
    );

    // A second container reaches the first over the pod's localhost, in the same VM.
    env.run(&[
        "run", "-d", "--pod", "web", "--name", "client", IMAGE, "sleep", "600",
    ])
    .success();
    assert_eq!(env.qemus(), 1, "still one VM");
    assert_eq!(get_inside(&env, "client", 8080).as_deref(), Some(PAGE));
    // The pod's published port reaches a member's server.
    let got = retry(|| {
        let (ok, out) = env
            .netns
            .exec("curl", &["-sSf", "-m", "3", "http://127.0.0.1:18081/"]);
        ok.then_some(out)
    });
    assert_eq!(got.as_deref(), Some(PAGE));
    // Each container has its own filesystem, hostname shared with the pod.
    env.run(&["exec", "client", "sh", "-c", "echo mine > /www/index.html"])
        .success();
    assert_eq!(
        env.run(&["exec", "srv", "cat", "/www/index.html"])
            .success()
            .stdout,
        PAGE
    );
    assert_eq!(
        env.run(&["exec", "srv", "hostname"]).success().stdout,
        env.run(&["exec", "client", "hostname"]).success().stdout
    );
    // Bind mounts reach a member through the pod's share: read-write, read-only, a file.
    let host = env.cli.root().join("host-data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("keep"), "host file\n").unwrap();
    let hosts_file = env.cli.root().join("extra-hosts");
    std::fs::write(&hosts_file, "10.1.2.3 extra\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let file = format!("{}:/etc/extra-hosts:ro", hosts_file.display());
    let r = env.run(&[
        "run",
        "--rm",
        "--pod",
        "web",
        "-v",
        &rw,
        "-v",
        &ro,
        "-v",
        &file,
        IMAGE,
        "sh",
        "-c",
        "cat /data/keep /etc/extra-hosts && echo from-guest > /data/new && \
         ! touch /ro/x 2>/dev/null && echo ro-held",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "host file\n10.1.2.3 extra\nro-held\n", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("new")).unwrap(),
        "from-guest\n"
    );
    // Nothing of the bind stays mounted once the container is gone: where the pod's monitor
    // (and its virtiofsd) sees the share, the binds were made and are gone again.
    let monitor = env.inspect("web-infra")["monitorPid"].as_u64().unwrap();
    let mountinfo = std::fs::read_to_string(format!("/proc/{monitor}/mountinfo")).unwrap();
    assert!(
        mountinfo.contains(&format!("{}/pod ", env.cli.root().display()))
            || mountinfo.contains("/pod "),
        "the pod's share is not a mount point: {mountinfo}"
    );
    assert!(
        !mountinfo.contains("/binds/"),
        "a member's bind is still mounted: {mountinfo}"
    );

    // A foreground member: its output and exit code, then it is gone from the VM.
    let r = env.run(&[
        "run",
        "--rm",
        "--pod",
        "web",
        IMAGE,
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hi\n"), "{r:?}");
    assert_eq!(env.qemus(), 1);

    // The pod's VM is not one member's to remove.
    let r = env.run(&["rm", "-f", "web-infra"]);
    assert!(r.stderr.contains("remove the pod"), "{r:?}");
    // A running pod is removed only with -f.
    env.run(&["pod", "rm", "web"]).fails_with("is running");

    // Stop: members and VM; start: the VM, then the members, whose writes were kept.
    env.run(&["pod", "stop", "-t", "1", "web"]).success();
    assert_eq!(env.qemus(), 0);
    for name in ["srv", "client", "web-infra"] {
        assert_eq!(env.inspect(name)["status"], "exited", "{name}");
    }
    env.run(&["pod", "start", "web"]).success();
    assert_eq!(env.qemus(), 1);
    assert_eq!(env.inspect("srv")["status"], "running");
    assert_eq!(
        env.run(&["exec", "client", "cat", "/www/index.html"])
            .success()
            .stdout,
        "mine\n"
    );
    assert_eq!(get_inside(&env, "client", 8080).as_deref(), Some(PAGE));

    // A member's monitor killed: its processes in the pod's VM end with it, and it starts
    // again on the same files (not mounted twice, no second server on the port).
    let monitor = env.inspect("srv")["monitorPid"].as_u64().unwrap();
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.inspect("srv")["status"] != "exited" {
        assert!(
            Instant::now() < deadline,
            "srv did not exit with its monitor"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        retry(|| get_once(&env, "client", 8080).is_none().then_some(())).is_some(),
        "the server of a member whose monitor died still answers"
    );
    env.run(&["start", "srv"]).success();
    assert_eq!(get_inside(&env, "client", 8080).as_deref(), Some(PAGE));
    let top = env.run(&["top", "srv"]).success().stdout;
    assert_eq!(top.matches("httpd").count(), 1, "{top}");

    // A member stopped alone leaves the pod running.
    env.run(&["stop", "-t", "1", "client"]).success();
    assert_eq!(env.inspect("client")["status"], "exited");
    assert_eq!(env.inspect("srv")["status"], "running");

    // stats, top, logs and cp work on a member as on any container.
    let st = env
        .run(&["stats", "--no-stream", "--format", "json", "srv"])
        .success()
        .json();
    assert!(st[0]["pids"].as_u64().unwrap() >= 1, "{st}");
    assert!(st[0]["memory_usage"].as_u64().unwrap() > 0, "{st}");
    let top = env.run(&["top", "srv"]).success().stdout;
    assert!(top.contains("httpd"), "{top}");
    let file = env.cli.root().join("to-copy");
    std::fs::write(&file, "copied\n").unwrap();
    env.run(&["cp", file.to_str().unwrap(), "srv:/tmp/copied"])
        .success();
    assert_eq!(
        env.run(&["exec", "srv", "cat", "/tmp/copied"])
            .success()
            .stdout,
        "copied\n"
    );
    // A member cannot freeze the pod's VM alone.
    assert_ne!(env.run(&["pause", "srv"]).code, 0);
    assert_eq!(env.inspect("srv")["status"], "running");

    // The pod's VM killed: its containers end, saying why; the pod starts again.
    let qemu = env.inspect("web-infra")["vmPid"].as_u64().unwrap();
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(qemu as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.inspect("srv")["status"] != "exited" {
        assert!(
            Instant::now() < deadline,
            "srv did not exit with its pod's VM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let srv = env.inspect("srv");
    let reason = srv["exitReason"].as_str().unwrap_or_default();
    assert!(reason.contains("pod's VM ended"), "{srv}");
    assert_eq!(env.qemus(), 0);
    env.run(&["pod", "start", "web"]).success();
    assert_eq!(get_inside(&env, "client", 8080).as_deref(), Some(PAGE));

    // A member with a bind runs when the pod is removed by force: the host directory under
    // its bind is untouched by the removal.
    env.run(&[
        "run", "-d", "--pod", "web", "--name", "binder", "-v", &rw, IMAGE, "sleep", "600",
    ])
    .success();
    env.run(&["pod", "rm", "-f", "web"]).success();
    assert_eq!(env.qemus(), 0);
    assert_eq!(
        std::fs::read_to_string(host.join("keep")).unwrap(),
        "host file\n"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = env.cli.root().to_string_lossy().into_owned();
    assert!(
        !mountinfo.contains(&root),
        "something of the pod is still mounted: {mountinfo}"
    );
    assert!(env.run(&["ls", "-a", "-q"]).success().stdout.is_empty());
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
}
