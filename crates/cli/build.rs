//! Build script of the `container` binary: what `container version` reports that Cargo does
//! not hand to the compiler itself, the source's git commit and the compiler's version. Both
//! are optional: a build outside a git checkout (a source tarball) has no commit, unless
//! `CONTAINER_GIT_COMMIT` names it.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CONTAINER_GIT_COMMIT");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Some(v) = stdout(Command::new(rustc).arg("--version")) {
        println!("cargo:rustc-env=CONTAINER_RUSTC_VERSION={v}");
    }
    let commit = std::env::var("CONTAINER_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| stdout(Command::new("git").args(["rev-parse", "--short=7", "HEAD"])));
    if let Some(c) = commit {
        println!("cargo:rustc-env=CONTAINER_GIT_COMMIT={c}");
    }
    // A new commit or checkout moves HEAD and appends to its log: run again then, so the
    // commit shown is the one built (in a worktree these paths are the worktree's own).
    for file in ["HEAD", "logs/HEAD"] {
        if let Some(p) = stdout(Command::new("git").args(["rev-parse", "--git-path", file])) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// The command's first line of output, if it ran and succeeded.
fn stdout(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}
