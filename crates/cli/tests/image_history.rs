//! `container image history` on images made without a VM: a Dockerfile of COPY and config
//! steps (no RUN) and an imported rootfs tarball. Docker's columns, newest first, `0B` for
//! steps without a layer, the image id on the newest step and `<missing>` on the others.

mod common;

use common::Cli;

/// `build -q -t NAME` of a context holding `files`; returns the image id it prints.
fn build(cli: &Cli, name: &str, files: &[(&str, &str)]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    for (file, text) in files {
        std::fs::write(ctx.path().join(file), text).unwrap();
    }
    let r = cli
        .run(&["build", "-q", "-t", name, ctx.path().to_str().unwrap()])
        .success();
    r.stdout.trim().to_string()
}

fn unix_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_secs()).unwrap()
}

/// The cells of a docker table (columns three or more spaces apart).
fn cells(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn history_lists_the_steps_newest_first() {
    let cli = Cli::new();
    let content = "hello\n".repeat(1000);
    let id = build(
        &cli,
        "hist:1",
        &[
            ("hello.txt", &content),
            (
                "Dockerfile",
                "FROM scratch\nCOPY hello.txt /hello.txt\nENV A=1\nLABEL x=y\nCMD [\"/hello\"]\n",
            ),
        ],
    );
    let hex = id.strip_prefix("sha256:").unwrap_or(&id).to_string();

    let out = cli.run(&["image", "history", "hist:1"]).success().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    );
    assert_eq!(lines.len(), 5, "{out}");
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| cells(l)).collect();
    // Newest first: CMD, LABEL, ENV (no layers), then COPY's layer.
    assert_eq!(rows[0][0], hex[..12], "{out}");
    for r in &rows[1..] {
        assert_eq!(r[0], "<missing>", "{out}");
    }
    assert!(rows[0][2].contains("CMD"), "{out}");
    assert!(rows[1][2].contains("LABEL"), "{out}");
    assert!(rows[2][2].contains("ENV"), "{out}");
    assert!(rows[3][2].contains("COPY"), "{out}");
    for r in &rows[..3] {
        assert_eq!(r[3], "0B", "{out}");
        assert!(r[1].ends_with(" ago"), "{out}");
    }
    // The layer's uncompressed size: the 6000-byte file in a tar (headers, padding).
    let layer = &rows[3][3];
    assert!(layer.ends_with("kB") && layer != "0B", "{out}");

    // -q: one id per step; --no-trunc: the full id; -H=false: bytes and RFC 3339 times.
    let q = cli
        .run(&["image", "history", "-q", "hist:1"])
        .success()
        .stdout;
    assert_eq!(
        q.lines().collect::<Vec<_>>(),
        [&hex[..12], "<missing>", "<missing>", "<missing>"]
    );
    let raw = cli
        .run(&[
            "image",
            "history",
            "--no-trunc",
            "-H=false",
            "--format",
            "{{.ID}}|{{.CreatedSince}}|{{.Size}}",
            "hist:1",
        ])
        .success()
        .stdout;
    let first: Vec<&str> = raw.lines().next().unwrap().split('|').collect();
    assert_eq!(first[0], id);
    assert!(first[1].ends_with('Z') && first[1].contains('T'), "{raw}");
    assert_eq!(first[2], "0");
    let copy_size: u64 = raw
        .lines()
        .last()
        .unwrap()
        .split('|')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(copy_size > 6000, "{raw}");

    // JSON: the Engine API's items, the names on the newest.
    let json = cli
        .run(&["image", "history", "--format", "json", "hist:1"])
        .success()
        .json();
    assert_eq!(json[0]["Id"], id.as_str());
    assert_eq!(json[0]["Tags"][0], "docker.io/library/hist:1");
    assert_eq!(json[3]["Size"], copy_size);
    let created = json[0]["Created"].as_i64().unwrap();
    assert!((created - unix_now()).abs() < 600, "{json}");

    // An imported tarball: one step, with import's comment.
    let tar = tempfile::NamedTempFile::new().unwrap();
    {
        let mut b = tar::Builder::new(tar.as_file());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "x", &b"hi\n"[..]).unwrap();
        b.finish().unwrap();
    }
    cli.run(&[
        "image",
        "import",
        "-m",
        "from a tarball",
        tar.path().to_str().unwrap(),
        "imported:1",
    ])
    .success();
    let out = cli
        .run(&[
            "image",
            "history",
            "--format",
            "{{.CreatedBy}}|{{.Comment}}",
            "imported:1",
        ])
        .success()
        .stdout;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.trim_end().ends_with("|from a tarball"), "{out}");

    cli.run(&["image", "history", "nosuch:1"])
        .fails_with("nosuch");
}
