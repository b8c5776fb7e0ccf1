//! `CopyOut`/`CopyIn` against `vminitd --listen` (as root, on the host): real containers with
//! their own mount namespace, so paths resolve inside the container, tmpfs mounts included,
//! and nothing outside its root is reachable.

mod common;

use agent::{Client, CopyIn, CopyOut, CopySource, ErrorCode};
use common::*;

async fn copy_out(c: &Client, ctr: &str, path: &str) -> Result<(agent::PathStat, Vec<u8>), String> {
    let started = c
        .copy_out(CopyOut {
            container: ctr.into(),
            path: path.into(),
            follow_link: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    let h = started.handle;
    let (mut out, mut err) = (c.stdout(h), c.stderr(h));
    let (tar, msg) = tokio::join!(out.read_to_end(), err.read_to_end());
    let st = c.wait(h).await.unwrap();
    c.delete(h).await.unwrap();
    if st.code != Some(0) {
        return Err(String::from_utf8_lossy(&msg).into_owned());
    }
    Ok((started.stat.unwrap(), tar))
}

async fn copy_in(c: &Client, req: CopyIn, tar: &[u8]) -> Result<(), String> {
    let h = c.copy_in(req).await.map_err(|e| e.to_string())?.handle;
    let mut err = c.stderr(h);
    let mut w = c.stdin(h);
    w.write_all(tar).await.unwrap();
    w.close().await.unwrap();
    let msg = err.read_to_end().await;
    let st = c.wait(h).await.unwrap();
    c.delete(h).await.unwrap();
    if st.code != Some(0) {
        return Err(String::from_utf8_lossy(&msg).into_owned());
    }
    Ok(())
}

fn cin(ctr: &str, path: &str, is_dir: bool) -> CopyIn {
    CopyIn {
        container: ctr.into(),
        path: path.into(),
        source: Some(CopySource {
            is_dir,
            contents_only: false,
        }),
        preserve_owner: false,
    }
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn copies_in_and_out_inside_the_container_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let server = start_server(dir.path());
    let c = connect(&server.socket).await;
    let mut req = create(
        "cp1",
        Some(&rootfs),
        process(&[
            "sh",
            "-c",
            "echo secret-of-c > /etc/x && busybox ln -s / /up && sleep 60",
        ]),
    );
    req.mounts = vec![agent::Mount {
        source: "tmpfs".into(),
        target: "/scratch".into(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m".into()],
    }];
    let init = c.create_process(req).await.unwrap();
    c.start(init).await.unwrap();
    // Wait for the init script to set things up.
    for _ in 0..100 {
        if rootfs.join("up").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Out: a file; its stat and the tar entry.
    let (stat, tar) = copy_out(&c, "cp1", "/etc/x").await.unwrap();
    assert_eq!(stat.name, "x");
    assert!(!stat.is_dir());
    let mut ar = tar::Archive::new(tar.as_slice());
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str(), Some("x"));
    let mut s = String::new();
    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
    assert_eq!(s, "secret-of-c\n");

    // `..` and a symlink to `/` stay inside the container's root: the guest's (here: the
    // host's) /etc/hostname is not what comes back.
    let (_, tar) = copy_out(&c, "cp1", "/../../etc/x").await.unwrap();
    assert!(String::from_utf8_lossy(&tar).contains("secret-of-c"));
    let (_, tar) = copy_out(&c, "cp1", "/up/up/etc/x").await.unwrap();
    assert!(String::from_utf8_lossy(&tar).contains("secret-of-c"));
    let e = copy_out(&c, "cp1", "/up/usr/bin/env").await.unwrap_err();
    assert!(e.contains("Could not find the file /up/usr/bin/env"), "{e}");

    // In: a host directory into the container's tmpfs mount.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("f"), b"from host").unwrap();
    let tar = agent::copy::pack(Vec::new(), &src, "src", false).unwrap();
    copy_in(&c, cin("cp1", "/scratch/new", true), &tar)
        .await
        .unwrap();
    let (o, _, _) = run(
        &c,
        create(
            "cp1",
            None,
            process(&[
                "sh",
                "-c",
                "cat /scratch/new/f; ls -d /scratch/new/empty; busybox stat -c %u /scratch/new/f",
            ]),
        ),
    )
    .await
    .unwrap();
    assert_eq!(o, "from host/scratch/new/empty\n0\n");
    // Not visible outside the container (it went to the container's tmpfs, not the rootfs).
    assert!(!rootfs.join("scratch/new").exists());

    // A symlink in the container cannot redirect a copy-in outside its root.
    let tar = agent::copy::pack(Vec::new(), &src.join("f"), "f", false).unwrap();
    copy_in(&c, cin("cp1", "/up/tmp/", false), &tar)
        .await
        .unwrap();
    assert_eq!(std::fs::read(rootfs.join("tmp/f")).unwrap(), b"from host");

    // Errors: missing parent, unknown container, a raw stream into a file.
    let e = copy_in(&c, cin("cp1", "/nope/x", false), &tar)
        .await
        .unwrap_err();
    assert!(
        e.contains("destination directory /nope does not exist"),
        "{e}"
    );
    let e = c
        .copy_out(CopyOut {
            container: "ghost".into(),
            path: "/".into(),
            follow_link: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    let mut raw = cin("cp1", "/etc/x", false);
    raw.source = None;
    let e = copy_in(&c, raw, &tar).await.unwrap_err();
    assert!(e.contains("is not a directory"), "{e}");
}

#[tokio::test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root for namespaces and mounts: run scripts/test.sh"
)]
async fn a_read_only_rootfs_refuses_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let server = start_server(dir.path());
    let c = connect(&server.socket).await;
    let mut req = create("ro", Some(&rootfs), process(&["sleep", "60"]));
    req.readonly_rootfs = true;
    let init = c.create_process(req).await.unwrap();
    c.start(init).await.unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    let tar = agent::copy::pack(Vec::new(), &f, "f", false).unwrap();
    let e = copy_in(&c, cin("ro", "/f", false), &tar).await.unwrap_err();
    assert!(e.contains("cannot copy to /: Read-only file system"), "{e}");
    assert!(!rootfs.join("f").exists());
}
