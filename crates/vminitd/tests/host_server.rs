//! vminitd's server logic without a VM: `vminitd --listen` (as root, on the host) runs real
//! containers (namespaces, pivot_root into a busybox rootfs) for the agent client.

mod common;

use std::time::Duration;

use agent::{ErrorCode, ExitStatus, Request};
use common::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let server = start_server(dir.path());
    (dir, rootfs, server)
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn container_processes_exit_codes_users_and_isolation() {
    let (_dir, rootfs, server) = setup();
    let c = connect(&server.socket).await;
    assert!(!c.hello().kernel.is_empty());
    c.ping().await.unwrap();

    // The init process: long-running, so execs can join it.
    let init = c
        .create_process(create(
            "c1",
            Some(&rootfs),
            process(&["sh", "-c", "echo pid=$$; sleep 60"]),
        ))
        .await
        .unwrap();
    let mut init_out = c.stdout(init);
    c.start(init).await.unwrap();
    let first = init_out.recv().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first),
        "pid=1\n",
        "init is PID 1 of its namespace"
    );

    let (o, e, st) = run(
        &c,
        create(
            "c1",
            None,
            process(&["/bin/sh", "-c", "echo hi; echo oops >&2; exit 7"]),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (o.as_str(), e.as_str(), st),
        (
            "hi\n",
            "oops\n",
            ExitStatus {
                code: Some(7),
                signal: None,
                ..st
            }
        )
    );

    // Rootfs, hostname and /etc files, masked and read-only paths.
    let script = "hostname; cat /etc/hostname; ls /; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
                  (echo 1 > /proc/sys/kernel/ctrl-alt-del) 2>/dev/null && echo writable || echo readonly; \
                  grep -c localhost /etc/hosts; ls /dev";
    let (o, e, st) = run(&c, create("c1", None, process(&["sh", "-c", script])))
        .await
        .unwrap();
    assert_eq!(st.code, Some(0), "stderr: {e}");
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(&lines[..2], &["testhost", "testhost"]);
    assert!(o.contains("busybox") || o.contains("bin"), "{o}");
    assert!(!o.contains("usr\n"), "host root leaked: {o}");
    assert_eq!(
        lines.iter().filter(|l| **l == "0").count(),
        2,
        "timer_list and /sys/firmware masked: {o}"
    );
    assert!(lines.contains(&"readonly"), "/proc/sys read-only: {o}");
    for node in ["null", "zero", "urandom", "ptmx", "pts", "shm", "stdout"] {
        assert!(lines.contains(&node), "/dev/{node} missing: {o}");
    }

    // Users from the container's passwd/group.
    let mut spec = process(&["sh", "-c", "id -u; id -g; id -G; echo $HOME; pwd"]);
    spec.user = "alice".into();
    spec.cwd = Some("/home/alice".into());
    let (o, _, _) = run(&c, create("c1", None, spec)).await.unwrap();
    assert_eq!(o, "1000\n1000\n1000 10\n/home/alice\n/home/alice\n");
    let mut spec = process(&["id", "-u"]);
    spec.user = "mallory".into();
    let err = run(&c, create("c1", None, spec)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownUser), "{err}");

    // Capabilities, rlimits, no_new_privs: docker's defaults for root, none for a user.
    let status = "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n";
    let (o, _, _) = run(&c, create("c1", None, process(&["sh", "-c", status])))
        .await
        .unwrap();
    assert!(
        o.contains("CapEff:\t00000000a80425fb") && o.contains("CapBnd:\t00000000a80425fb"),
        "{o}"
    );
    let mut spec = process(&["sh", "-c", status]);
    spec.user = "1000:1000".into();
    spec.no_new_privileges = true;
    spec.rlimits = vec![agent::Rlimit {
        kind: "RLIMIT_NOFILE".into(),
        soft: 321,
        hard: 321,
    }];
    let (o, _, _) = run(&c, create("c1", None, spec)).await.unwrap();
    assert!(
        o.contains("CapEff:\t0000000000000000")
            && o.contains("NoNewPrivs:\t1")
            && o.ends_with("321\n"),
        "{o}"
    );
    let mut spec = process(&["true"]);
    spec.capabilities = Some(agent::Capabilities {
        bounding: vec!["CAP_BOGUS".into()],
        ..Default::default()
    });
    let err = run(&c, create("c1", None, spec)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");

    // 127 and 126 (the host maps these codes: runtime::exit).
    let err = run(&c, create("c1", None, process(&["no-such-cmd"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ExecutableNotFound), "{err}");
    let err = run(&c, create("c1", None, process(&["/bin/notexec"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotExecutable), "{err}");
    let err = run(&c, create("c1", None, process(&["/etc"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotExecutable), "{err}");

    // stdin.
    let mut spec = process(&["cat"]);
    spec.stdin = true;
    let h = c.create_process(create("c1", None, spec)).await.unwrap();
    let mut out = c.stdout(h);
    let mut stdin = c.stdin(h);
    c.start(h).await.unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let writer = tokio::spawn(async move {
        stdin.write_all(&big).await.unwrap();
        stdin.close().await.unwrap();
        big
    });
    let got = out.read_to_end().await;
    let big = writer.await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big);
    assert_eq!(c.wait(h).await.unwrap().code, Some(0));

    // A terminal with resize.
    let mut spec = process(&["sh", "-c", "stty size; sleep 0.3; stty size; tty"]);
    spec.terminal = true;
    spec.console_size = Some((24, 80));
    let h = c.create_process(create("c1", None, spec)).await.unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.resize_pty(h, 50, 132).await.unwrap();
    let o = String::from_utf8_lossy(&out.read_to_end().await).replace('\r', "");
    assert_eq!(
        o, "24 80\n50 132\n/dev/pts/0\n",
        "the pty is the container's own"
    );
    assert_eq!(c.wait(h).await.unwrap().code, Some(0));

    // Kill the init: signal status, and the container stops.
    c.kill(init, 9, false).await.unwrap();
    let st = c.wait(init).await.unwrap();
    assert_eq!(
        st,
        ExitStatus {
            code: None,
            signal: Some(9),
            ..st
        }
    );
    let err = c
        .create_process(create("c1", None, process(&["true"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongState), "{err}");
    c.delete(init).await.unwrap();
    assert_eq!(
        c.delete(init).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn readonly_rootfs_extra_mounts_and_guest_dns() {
    let (_dir, rootfs, server) = setup();
    let c = connect(&server.socket).await;
    c.configure(agent::Configure {
        dns: Some(agent::Dns {
            nameservers: vec!["192.0.2.53".into()],
            ..Default::default()
        }),
        hosts: vec![agent::HostEntry {
            ip: "192.0.2.7".into(),
            names: vec!["svc".into()],
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let bad = agent::Configure {
        dns: Some(agent::Dns {
            nameservers: vec!["not-an-ip".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = c.configure(bad).await.unwrap_err();
    assert!(err.to_string().contains("not-an-ip"), "{err}");

    let script = "cat /etc/resolv.conf; grep svc /etc/hosts; grep ' /data ' /proc/mounts; \
                  touch /data/ok && echo data-writable; touch /x 2>/dev/null || echo root-readonly";
    let mut req = create("c4", Some(&rootfs), process(&["sh", "-c", script]));
    req.readonly_rootfs = true;
    req.mounts = vec![agent::Mount {
        source: "tmpfs".into(),
        target: "/data".into(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m".into(), "nosuid".into()],
    }];
    let (o, e, st) = run(&c, req).await.unwrap();
    assert_eq!(st.code, Some(0), "{e}");
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "nameserver 192.0.2.53");
    assert_eq!(lines[1], "192.0.2.7\tsvc");
    assert!(lines[2].starts_with("tmpfs /data tmpfs rw,nosuid"), "{o}");
    assert_eq!(&lines[3..], &["data-writable", "root-readonly"]);
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn a_stalled_output_stream_does_not_block_the_channel() {
    let (_dir, rootfs, server) = setup();
    let c = connect(&server.socket).await;
    // `yes` writes forever; its stdout is attached but never read.
    let h = c
        .create_process(create("c5", Some(&rootfs), process(&["yes"])))
        .await
        .unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(2), c.ping())
            .await
            .expect("ping not blocked")
            .unwrap();
    }
    let (o, _, st) = tokio::time::timeout(
        Duration::from_secs(10),
        run(&c, create("c5", None, process(&["echo", "ok"]))),
    )
    .await
    .expect("exec not blocked")
    .unwrap();
    assert_eq!((o.as_str(), st.code), ("ok\n", Some(0)));
    // The guest stopped at the credit it was given (the client buffers at most that).
    c.kill(h, 9, false).await.unwrap();
    assert_eq!(c.wait(h).await.unwrap().signal, Some(9));
    let total = tokio::time::timeout(Duration::from_secs(10), out.read_to_end())
        .await
        .expect("stream ends")
        .len();
    assert!(total >= agent::client::OUTPUT_WINDOW as usize, "{total}");
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn processes_survive_a_reconnect() {
    let (_dir, rootfs, server) = setup();
    let c = connect(&server.socket).await;
    let h = c
        .create_process(create(
            "c2",
            Some(&rootfs),
            process(&["sh", "-c", "sleep 0.5; echo after; exit 3"]),
        ))
        .await
        .unwrap();
    c.start(h).await.unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = connect(&server.socket).await;
    assert_eq!(c.hello().processes, vec![h]);
    let mut out = c.stdout(h);
    assert_eq!(c.wait(h).await.unwrap().code, Some(3));
    assert_eq!(String::from_utf8_lossy(&out.read_to_end().await), "after\n");

    // A stream with unused credit whose host went away must not make vminitd spin.
    let y = c
        .create_process(create("c2", Some(&rootfs), process(&["yes"])))
        .await;
    let y = match y {
        Ok(h) => h,
        // c2's init has exited: make a new container for this part.
        Err(_) => c
            .create_process(create("c2b", Some(&rootfs), process(&["yes"])))
            .await
            .unwrap(),
    };
    let mut ys = c.stdout(y);
    c.start(y).await.unwrap();
    assert!(ys.recv().await.is_some());
    drop(ys);
    drop(c);
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = cpu(pid);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ticks = cpu(pid) - before;
    assert!(
        ticks < 20,
        "vminitd used {ticks} clock ticks in 1 s with no host"
    );
    let c = connect(&server.socket).await;
    c.kill(y, 9, false).await.unwrap();

    // Malformed requests are answered, not fatal.
    let r = c
        .call(Request::Start(agent::ProcessRef { handle: 999 }))
        .await
        .unwrap_err();
    assert_eq!(r.code(), Some(ErrorCode::NotFound));
    c.ping().await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn round_trip_and_exec_latency() {
    let (_dir, rootfs, server) = setup();
    let c = connect(&server.socket).await;
    let init = c
        .create_process(create("c3", Some(&rootfs), process(&["sleep", "60"])))
        .await
        .unwrap();
    c.start(init).await.unwrap();
    eprintln!("started");
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        c.ping().await.unwrap();
    }
    let ping = t.elapsed() / n;
    eprintln!("pinged");
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let (_, _, st) = run(&c, create("c3", None, process(&["/bin/true"])))
            .await
            .unwrap();
        assert_eq!(st.code, Some(0));
    }
    let exec = t.elapsed() / 20;
    eprintln!("host mode: ping round trip {ping:?}, exec true {exec:?}");
    // About 50 µs and 3 ms measured on an idle 2-core host; the bounds leave room for a host
    // busy with VMs and builds, and still catch a round trip that waits on a timer or a poll.
    assert!(ping < Duration::from_millis(5), "ping round trip {ping:?}");
    assert!(
        exec < Duration::from_millis(250),
        "exec round trip {exec:?}"
    );
    c.kill(init, 9, false).await.unwrap();
}

/// A container process with `init`: vminitd re-executed as the container's PID 1 in front of
/// the command.
fn with_init(args: &[&str]) -> agent::ProcessSpec {
    agent::ProcessSpec {
        init: true,
        ..process(args)
    }
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn an_init_forwards_signals_reaps_orphans_and_passes_the_exit_on() {
    // The init is vminitd exec'd again inside the container: it must be the static build.
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let server = start_server_from(&testkit::static_vminitd(), dir.path());
    let c = connect(&server.socket).await;

    // SIGTERM ends a command that has no handler for it at once: it is not PID 1 any more.
    let h = c
        .create_process(create(
            "i1",
            Some(&rootfs),
            with_init(&["sh", "-c", "echo pid=$$ ppid=$PPID; sleep 600"]),
        ))
        .await
        .unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.recv().await.unwrap()),
        "pid=2 ppid=1\n"
    );
    let (o, _, st) = run(&c, create("i1", None, process(&["cat", "/proc/1/cmdline"])))
        .await
        .unwrap();
    assert_eq!(st.code, Some(0));
    assert_eq!(
        o,
        "vminitd-init\0--\0sh\0-c\0echo pid=$$ ppid=$PPID; sleep 600\0"
    );
    let t0 = std::time::Instant::now();
    c.kill(h, libc::SIGTERM, false).await.unwrap();
    let st = tokio::time::timeout(Duration::from_secs(5), c.wait(h))
        .await
        .expect("SIGTERM ends the command at once")
        .unwrap();
    assert_eq!(
        st,
        ExitStatus {
            code: Some(143),
            signal: None,
            ..st
        },
        "128+SIGTERM, as tini"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // A signal the command handles reaches its handler; orphans are reaped, not left as
    // zombies; the command's own exit code is the init's.
    let script = "trap 'echo got USR1; exit 5' USR1; sh -c 'sleep 0.2 &'; sleep 1; \
                  cat /proc/[0-9]*/stat | grep -c ') Z '; echo ready; \
                  while true; do sleep 0.1; done";
    let h = c
        .create_process(create(
            "i2",
            Some(&rootfs),
            with_init(&["sh", "-c", script]),
        ))
        .await
        .unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("ready") {
        seen.push_str(&String::from_utf8_lossy(&out.recv().await.unwrap()));
    }
    assert_eq!(seen, "0\nready\n", "no zombie left");
    c.kill(h, libc::SIGUSR1, false).await.unwrap();
    let st = tokio::time::timeout(Duration::from_secs(5), c.wait(h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.code, Some(5));
    assert_eq!(
        String::from_utf8_lossy(&out.read_to_end().await),
        "got USR1\n"
    );

    // A command that does not exist is refused before the container starts, as without an
    // init (127).
    let err = c
        .create_process(create("i3", Some(&rootfs), with_init(&["nosuchcommand"])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ExecutableNotFound), "{err}");
}
