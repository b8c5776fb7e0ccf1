//! The user scenarios of issue 14, end to end through the real `container` binary and real VMs,
//! on a realistic image: Debian bookworm from debootstrap with nginx, python3, postgresql and
//! curl (`testkit::debian`, built once and cached in /var/cache/container-test).
//!
//! - nginx behind `-p`, fetched from the host's side, and nothing left after stop and rm;
//! - two containers on a user network, one reaching the other's server by name;
//! - postgres: `initdb` on a fresh named volume, a table written, and read back by a second
//!   container on the same volume;
//! - a host directory bound read-write (the host sees what the container wrote) and read-only
//!   (writes fail with "Read-only file system", the host directory stays as it was).
//!
//! Every command runs in a network namespace of the test's own (`common::vm::Env`); the tests
//! that need no network run with `--network none`. Needs what tests/run.rs needs, plus
//! virtiofsd, debootstrap, curl and, for the first build of the image, the Debian mirror.

mod common;

use std::path::Path;
use std::time::Duration;

use common::vm::{self, wait_output_within};
use common::{retry, Run};

/// The Debian image, imported into each test's root.
const IMAGE: &str = "localhost/debian-scenarios:1";

/// PostgreSQL's own binaries first, as docker's postgres image has them: Debian's `/usr/bin`
/// wrappers (a perl script per call) need a cluster configured in /etc/postgresql.
const PATH: &str =
    "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// initdb and a postgres start each take tens of seconds under TCG.
const POSTGRES_TIMEOUT: Duration = Duration::from_secs(600);

/// A fresh root (its commands in a namespace of its own) holding the Debian image.
struct Env {
    vm: vm::Env,
}

impl Env {
    fn new(tag: &str) -> Env {
        let tar = testkit::debian::rootfs_tar();
        let vm = vm::Env::tagged(tag, false);
        let tar = tar.to_str().expect("a UTF-8 cache path");
        vm.run(&["image", "import", "-c", PATH, tar, IMAGE])
            .success();
        Env { vm }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.vm.run(args)
    }

    /// [`Env::run`] allowed `timeout` instead of `vm::TIMEOUT`.
    fn run_within(&self, args: &[&str], timeout: Duration) -> Run {
        wait_output_within(self.vm.cli.command(args), timeout)
    }

    /// `curl ARGS… URL` from the test's namespace (the host side of the containers), retried
    /// while the server starts; its output.
    fn host_curl(&self, args: &[&str], url: &str) -> String {
        let mut all = vec!["-sSf", "-m", "5"];
        all.extend_from_slice(args);
        all.push(url);
        let mut last = String::new();
        retry(|| {
            let (ok, out) = self.vm.netns.exec("curl", &all);
            last = out.clone();
            ok.then_some(out)
        })
        .unwrap_or_else(|| panic!("curl {url} from the host side failed: {last}"))
    }

    /// The container's address on its first network, without the prefix length.
    fn address(&self, name: &str) -> String {
        let c = self.vm.inspect(name);
        let a = c["networks"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address: {c}"));
        a.split('/').next().unwrap_or(a).to_string()
    }

    /// Ids of every container of this root, running or not.
    fn containers(&self) -> String {
        self.run(&["list", "-a", "-q"]).success().stdout
    }
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and the Debian test image: run scripts/test.sh"
)]
fn nginx_serves_its_page_on_a_published_port_and_leaves_nothing_behind() {
    let env = Env::new("nginx");
    env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18081:80",
        IMAGE,
        "nginx",
        "-g",
        "daemon off;",
    ])
    .success();
    let url = "http://127.0.0.1:18081/";
    let page = env.host_curl(&[], url);
    assert!(
        page.contains("<title>Welcome to nginx!</title>"),
        "not nginx's page: {page}"
    );
    let head = env.host_curl(&["-I"], url);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Server: nginx/"), "{head}");

    // It was this container's nginx, master as root and workers as www-data, that answered.
    let ps = env
        .run(&["exec", "web", "ps", "-eo", "user=,args="])
        .success()
        .stdout;
    assert!(
        ps.lines()
            .any(|l| l.starts_with("root") && l.contains("nginx: master process")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("www-data") && l.contains("nginx: worker process")),
        "{ps}"
    );
    let log = env
        .run(&["exec", "web", "cat", "/var/log/nginx/access.log"])
        .success()
        .stdout;
    assert!(log.contains("\"GET / HTTP/1.1\" 200"), "{log}");
    assert!(log.contains("\"HEAD / HTTP/1.1\" 200"), "{log}");

    env.run(&["stop", "web"]).success();
    env.run(&["rm", "web"]).success();
    assert_eq!(env.containers(), "");
    assert!(env.vm.container_dirs().is_empty());
    assert_eq!(env.vm.qemus(), 0);
    // The default network's bridge and nf_tables go with its last container, as the tap does.
    let links = env.vm.netns.links();
    assert!(
        !links
            .iter()
            .any(|l| l.starts_with("ctap") || l.starts_with("cbr")),
        "a tap or bridge is left: {links:?}"
    );
    let (_, tables) = env.vm.netns.exec("nft", &["list", "tables"]);
    assert!(!tables.contains("containerization"), "{tables}");
    let (listening, out) = env
        .vm
        .netns
        .exec("curl", &["-sS", "-m", "2", "http://127.0.0.1:18081/"]);
    assert!(
        !listening && out.contains("(7)"),
        "the published port is still open: {out}"
    );
}

/// The client's side: fetch `http://api:8000/hello.txt` (retried while the server's python
/// starts), then print the body and the address the name resolved to.
const CLIENT: &str = r#"
import socket, sys, time, urllib.request
deadline = time.monotonic() + 120
while True:
    try:
        body = urllib.request.urlopen("http://api:8000/hello.txt", timeout=10).read().decode()
        break
    except OSError as e:
        if time.monotonic() > deadline:
            sys.exit(f"api never answered: {e}")
        time.sleep(1)
print(body, end="")
print(socket.gethostbyname("api"))
"#;

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and the Debian test image: run scripts/test.sh"
)]
fn two_containers_on_a_user_network_reach_each_other_by_name() {
    let env = Env::new("names");
    env.run(&["network", "create", "scen"]).success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "scen",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /srv && echo 'hello from api' > /srv/hello.txt && \
         exec python3 -m http.server 8000 --directory /srv",
    ])
    .success();
    let api = env.address("api");
    let r = env.run(&[
        "run",
        "--rm",
        "--name",
        "client",
        "--network",
        "scen",
        IMAGE,
        "python3",
        "-c",
        CLIENT,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, format!("hello from api\n{api}\n"), "{r:?}");

    // And back the other way, with curl: the client's name resolves from the server's side too.
    env.run(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "scen",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /srv && echo 'hello from other' > /srv/hello.txt && \
         exec python3 -m http.server 8001 --directory /srv",
    ])
    .success();
    let r = env.run(&[
        "exec",
        "api",
        "curl",
        "-sSf",
        "--retry",
        "60",
        "--retry-delay",
        "1",
        "--retry-connrefused",
        "-m",
        "10",
        "http://other:8001/hello.txt",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hello from other\n", "{r:?}");

    env.run(&["rm", "-f", "api", "other"]).success();
    assert_eq!(env.containers(), "");
    env.run(&["network", "rm", "scen"]).success();
    let nets = env.run(&["network", "ls"]).success().stdout;
    assert!(!nets.contains("scen"), "{nets}");
}

/// Runs as user postgres on the volume at /var/lib/postgresql/data: starts the server (on a
/// socket in /tmp, no TCP), runs `sql` with psql (stops at the first error) and stops the
/// server cleanly. Its output is psql's, unaligned, tuples only; on a failure the server's log.
fn with_postgres(sql: &str) -> String {
    format!(
        "set -e; D=/var/lib/postgresql/data
         pg_ctl -D $D -l /tmp/pg.log -o \"-k /tmp -c listen_addresses=''\" -w -t 300 start \
           >/dev/null || {{ cat /tmp/pg.log >&2; exit 1; }}
         psql -h /tmp -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq <<'SQL'
{sql}
SQL
         pg_ctl -D $D -m fast -w -t 300 stop >/dev/null"
    )
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and the Debian test image: run scripts/test.sh"
)]
fn postgres_initialises_a_fresh_named_volume_and_a_second_container_reads_its_data() {
    let env = Env::new("pg");
    env.run(&["volume", "create", "pgdata"]).success();
    let volume = "pgdata:/var/lib/postgresql/data";
    let base = [
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "postgres",
        "-v",
        volume,
        IMAGE,
        "sh",
        "-c",
    ];

    // The fresh volume took the image directory's owner and mode and nothing else (initdb
    // refuses a directory with anything in it, lost+found included).
    let first = format!(
        "stat -c '%U %a' /var/lib/postgresql/data; ls -A /var/lib/postgresql/data | wc -l
         initdb -D /var/lib/postgresql/data -U postgres --auth=trust --no-locale -E UTF8 \
           >/tmp/initdb.log 2>&1 || {{ cat /tmp/initdb.log >&2; exit 1; }}
         {}",
        with_postgres(
            "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
             INSERT INTO notes (body) VALUES ('written by the first container');
             SELECT count(*) FROM notes;"
        )
    );
    let mut args = base.to_vec();
    args.push(&first);
    let r = env.run_within(&args, POSTGRES_TIMEOUT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "postgres 700\n0\n1\n", "{r:?}");

    let second = with_postgres(
        "INSERT INTO notes (body) VALUES ('written by the second container');
         SELECT string_agg(body, ',' ORDER BY id) FROM notes;
         SHOW server_version_num;",
    );
    let mut args = base.to_vec();
    args.push(&second);
    let r = env.run_within(&args, POSTGRES_TIMEOUT);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("written by the first container,written by the second container"),
        "{r:?}"
    );
    assert!(lines.get(1).is_some_and(|v| v.starts_with("15")), "{r:?}");

    assert_eq!(env.containers(), "");
    env.run(&["volume", "rm", "pgdata"]).success();
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU, network namespaces and the Debian test image: run scripts/test.sh"
)]
fn a_bind_mount_takes_the_containers_writes_and_its_read_only_twin_refuses_them() {
    use std::os::unix::fs::MetadataExt;

    let env = Env::new("bind");
    let host = tempfile::tempdir().unwrap();
    let share = host.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("in.txt"), "from the host\n").unwrap();

    let rw = format!("{}:/srv/share", share.display());
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &rw,
        IMAGE,
        "sh",
        "-c",
        ". /etc/os-release; cat /srv/share/in.txt; \
         echo \"written by $PRETTY_NAME\" > /srv/share/out.txt",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "from the host\n", "{r:?}");
    let out = share.join("out.txt");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "written by Debian GNU/Linux 12 (bookworm)\n"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), 0);

    let ro = format!("{}:/srv/share:ro", share.display());
    let r = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &ro,
        IMAGE,
        "sh",
        "-c",
        "cat /srv/share/out.txt; \
         echo overwritten > /srv/share/out.txt || echo write-refused; \
         rm /srv/share/in.txt || echo rm-refused; \
         touch /srv/share/new.txt || echo create-refused",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "written by Debian GNU/Linux 12 (bookworm)\nwrite-refused\nrm-refused\ncreate-refused\n",
        "{r:?}"
    );
    assert_eq!(
        r.stderr.matches("Read-only file system").count(),
        3,
        "{r:?}"
    );
    assert_eq!(names(&share), ["in.txt", "out.txt"]);
    assert_eq!(
        std::fs::read_to_string(share.join("in.txt")).unwrap(),
        "from the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "written by Debian GNU/Linux 12 (bookworm)\n"
    );
    assert_eq!(env.containers(), "");
}
