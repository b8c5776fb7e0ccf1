//! `inspect -f` and `list --format` through the real binary: docker's Go templates over the
//! docker-shaped inspect document. Created containers need no VM, so most of this is cheap; one
//! test runs a container for the fields only a running one has.

mod common;

use common::images;
use common::vm::{Env, IMAGE};
use serde_json::json;

/// An image with what the runtime test image lacks: an entrypoint, labels, an exposed port.
const LABELLED: &str = "localhost/inspect-test:1";

fn load_labelled(env: &Env) {
    let dir = env.cli.root().join("labelled-image");
    let tar = images::archive(
        &dir,
        LABELLED,
        &images::busybox_with(&[], |l| l),
        json!({
            "Env": ["PATH=/bin"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo default"],
            "Labels": {"k": "v", "org.example.team": "core"},
            "ExposedPorts": {"80/tcp": {}, "9000": {}},
        }),
    );
    env.run(&["image", "load", "-i", tar.to_str().unwrap()])
        .success();
}

fn format(env: &Env, template: &str, names: &[&str]) -> String {
    let mut args = vec!["inspect", "-f", template];
    args.extend(names);
    env.run(&args).success().stdout
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn inspect_format_renders_docker_fields_of_created_containers() {
    let env = Env::new(true);
    load_labelled(&env);
    env.run(&["volume", "create", "data", "--size", "64m"])
        .success();
    let id = env
        .run(&[
            "create",
            "--name",
            "web",
            "-e",
            "A=1",
            "-p",
            "8080:80",
            "--cap-add",
            "NET_ADMIN",
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "-v",
            "data:/data",
            "--tmpfs",
            "/run",
            LABELLED,
            "echo there",
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    env.run(&["create", "--name", "plain", IMAGE]).success();

    let f = |t: &str| format(&env, t, &["web"]);
    assert_eq!(
        f("{{.State.Status}} {{.State.Running}} {{.State.Pid}} {{.Name}}"),
        "created false 0 /web\n"
    );
    assert_eq!(f("{{.Id}}"), format!("{id}\n"));
    assert_eq!(
        f("{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Path}} {{.Args}}"),
        "[\"/bin/sh\",\"-c\"] [\"echo there\"] /bin/sh [-c echo there]\n"
    );
    assert_eq!(
        f(r#"{{index .Config.Labels "k"}}|{{index .Config.Labels "none"}}|"#),
        "v||\n"
    );
    assert_eq!(
        f("{{range $k, $v := .Config.ExposedPorts}}{{$k}} {{end}}"),
        "80/tcp 9000/tcp \n"
    );
    assert_eq!(
        f(r#"{{range .Config.Env}}{{if eq . "A=1"}}found{{end}}{{end}}"#),
        "found\n"
    );
    assert_eq!(
        f("{{range .Mounts}}{{.Type}}:{{.Name}}:{{.Destination}}:{{.RW}} {{end}}"),
        "volume:data:/data:true tmpfs::/run:true \n"
    );
    assert_eq!(
        f("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CapAdd}} {{.HostConfig.NetworkMode}}"),
        "67108864 1500000000 [CAP_NET_ADMIN] default\n"
    );
    assert_eq!(
        f("{{range $p, $b := .HostConfig.PortBindings}}{{$p}}={{(index $b 0).HostIp}}:{{(index $b 0).HostPort}}{{end}}"),
        "80/tcp=127.0.0.1:8080\n"
    );
    // Not running: networks are listed without addresses, as docker shows them.
    assert_eq!(
        f("{{range $k, $v := .NetworkSettings.Networks}}{{$k}}=[{{$v.IPAddress}}]{{end}} {{.NetworkSettings.Ports}}"),
        "default=[] map[]\n"
    );
    assert_eq!(f("{{.State.StartedAt}}"), "0001-01-01T00:00:00Z\n");
    // Today's keys are there too.
    assert_eq!(
        f("{{.status}} {{.name}} {{.config.hostname}}"),
        format!("created web {}\n", &id[..12])
    );
    // One line per container, in the order asked.
    assert_eq!(
        format(&env, "{{.Name}} {{.Config.Entrypoint}} {{json .Config.Cmd}}", &["web", "plain"]),
        "/web [/bin/sh -c] [\"echo there\"]\n/plain <nil> [\"sh\",\"-c\",\"echo default cmd; id -u; pwd; echo $TESTVAR\"]\n"
    );

    // Without -f, and with -f json, the JSON array: today's keys unchanged, docker's beside.
    let plain = env.run(&["inspect", "web"]).success().json();
    let json = env
        .run(&["inspect", "--format", "json", "web"])
        .success()
        .json();
    assert_eq!(plain, json);
    assert_eq!(plain[0]["status"], "created");
    assert_eq!(plain[0]["id"], id.as_str());
    assert_eq!(plain[0]["State"]["Status"], "created");
    assert_eq!(plain[0]["Config"]["Labels"]["org.example.team"], "core");

    // A bad template is one error line, exit 125, naming the problem.
    env.run(&["inspect", "-f", "{{nope .}}", "web"])
        .fails_with(r#"template: :1: function "nope" not defined"#);
    env.run(&["inspect", "-f", "{{.Name.First}}", "web"])
        .fails_with("can't evaluate field First in type string");
    env.run(&["inspect", "-f", "{{if .Name}}", "web"])
        .fails_with("unexpected EOF");

    // list --format: docker's ps fields, and a table with docker's headers.
    let r = env
        .run(&[
            "list",
            "-a",
            "--format",
            "{{.Names}} {{.State}} {{.Status}} {{.ID}}",
        ])
        .success();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(lines[0].starts_with("plain created Created "), "{r:?}");
    assert_eq!(lines[1], format!("web created Created {}", &id[..12]));
    let r = env
        .run(&["ls", "-a", "--format", r"table {{.Names}}\t{{.Image}}"])
        .success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    // Columns are at least 10 wide, with 3 spaces of padding (docker's tabwriter).
    assert_eq!(lines[0], format!("{:<10}IMAGE", "NAMES"), "{r:?}");
    assert!(
        lines.contains(&format!("{:<10}{LABELLED}", "web").as_str()),
        "{r:?}"
    );
    assert!(env
        .run(&["list", "-a", "--format", "json"])
        .success()
        .json()
        .is_array());
    env.run(&["list", "--format", "{{.Nope"])
        .fails_with("unclosed action");

    // The other inspect verbs take -f over their own documents.
    assert_eq!(
        env.run(&[
            "volume",
            "inspect",
            "-f",
            "{{.name}} {{.driver}} {{.containers}}",
            "data"
        ])
        .success()
        .stdout,
        "data local [web]\n"
    );
    assert_eq!(
        env.run(&[
            "image",
            "inspect",
            "-f",
            "{{.reference}} {{index .config.Labels \"k\"}}",
            LABELLED
        ])
        .success()
        .stdout,
        format!("{LABELLED} v\n")
    );
    assert!(env
        .run(&["image", "inspect", "--format", "json", LABELLED])
        .success()
        .json()
        .is_array());
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn inspect_format_shows_a_running_containers_state_and_addresses() {
    let env = Env::new(true);
    env.run(&[
        "run", "-d", "--name", "up", "-p", "8081:80", IMAGE, "sleep", "1000",
    ])
    .success();
    let doc = env.inspect("up");
    let lease = doc["networks"][0]["address"].as_str().unwrap().to_string();
    let (ip, prefix) = lease.split_once('/').unwrap();
    let out = format(
        &env,
        "{{.State.Status}} {{.State.Running}} {{if gt .State.Pid 0}}pid{{end}} \
         {{.NetworkSettings.IPAddress}}/{{.NetworkSettings.IPPrefixLen}} \
         {{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}}{{end}} \
         {{json .NetworkSettings.Ports}}",
        &["up"],
    );
    assert_eq!(
        out,
        format!(
            "running true pid {ip}/{prefix} default={ip} \
             {{\"80/tcp\":[{{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"8081\"}},\
             {{\"HostIp\":\"::1\",\"HostPort\":\"8081\"}}]}}\n"
        )
    );
    assert_eq!(doc["State"]["Pid"], doc["vmPid"]);
    assert_eq!(
        doc["NetworkSettings"]["MacAddress"],
        doc["networks"][0]["mac"]
    );
    let r = env
        .run(&["ls", "--format", "{{.Names}}|{{.Status}}|{{.Ports}}"])
        .success();
    assert!(
        r.stdout.starts_with("up|Up ")
            && r.stdout
                .ends_with("|127.0.0.1:8081->80/tcp, [::1]:8081->80/tcp\n"),
        "{r:?}"
    );
    assert_eq!(
        env.run(&[
            "network",
            "inspect",
            "-f",
            "{{.name}} {{len .containers}}",
            "default"
        ])
        .success()
        .stdout,
        "default 1\n"
    );
    env.run(&["stop", "-t", "0", "up"]).success();
    assert_eq!(
        format(
            &env,
            "{{.State.Status}} {{.State.ExitCode}} {{.NetworkSettings.IPAddress}}|",
            &["up"]
        ),
        "exited 137 |\n"
    );
}
