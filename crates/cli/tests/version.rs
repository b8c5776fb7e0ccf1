//! `container version` and `container system version`: docker's Client section with our
//! version, commit, compiler and platform, and the guest kernel from the kernel store.

mod common;

use common::Cli;

#[test]
fn version_shows_the_client_and_no_kernel_on_a_fresh_root() {
    let cli = Cli::new();
    let out = cli.run(&["version"]).success().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Client:", "{out}");
    assert_eq!(
        lines[1],
        format!(" Version:           {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(out.contains("\n OS/Arch:           linux/amd64\n"), "{out}");
    assert!(out.contains("\n Rust version:      rustc "), "{out}");
    assert!(
        out.ends_with(
            "Guest kernel:\n Version:           none set (see container system kernel set)\n"
        ),
        "{out}"
    );
    // The same from `system version`.
    assert_eq!(cli.run(&["system", "version"]).success().stdout, out);

    let j = cli.run(&["version", "--format", "json"]).success().json();
    assert_eq!(j["Client"]["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (&j["Client"]["Os"], &j["Client"]["Arch"]),
        (&"linux".into(), &"amd64".into())
    );
    let commit = j["Client"]["GitCommit"].as_str().unwrap();
    // Built from a git checkout here: a short commit id.
    assert!(
        commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{j}"
    );
    assert!(
        out.contains(&format!(" Git commit:        {commit}\n")),
        "{out}"
    );
    assert!(j["GuestKernel"].is_null());
    let t = cli
        .run(&["version", "--format", "{{.Client.Version}}"])
        .success()
        .stdout;
    assert_eq!(t, format!("{}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs the guest kernel package: run scripts/test.sh"
)]
fn version_shows_the_configured_guest_kernel() {
    let cli = Cli::new();
    std::os::unix::fs::symlink(
        common::shared_root().join("kernels"),
        cli.root().join("kernels"),
    )
    .unwrap();
    let shown = cli
        .run(&["system", "kernel", "show", "--format", "json"])
        .success()
        .json();
    let release = shown["release"].as_str().unwrap();
    let j = cli.run(&["version", "--format", "json"]).success().json();
    assert_eq!(j["GuestKernel"]["Version"], release);
    let out = cli.run(&["version"]).success().stdout;
    assert!(
        out.contains(&format!("Guest kernel:\n Version:           {release}\n")),
        "{out}"
    );
}
