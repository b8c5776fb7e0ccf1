//! `container completion SHELL` and the man pages (`__man DIR`): generated from the command
//! definitions, so every command and flag is in them; the bash script parses, and pages render.

mod common;

use std::process::Command;

use common::Cli;

#[test]
fn completion_scripts_know_every_command() {
    let cli = Cli::new();
    let bash = cli.run(&["completion", "bash"]).success().stdout;
    for word in [
        "pod",
        "run",
        "--pod",
        "image",
        "network",
        "volume",
        "system",
        "--publish",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("container.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Sourced, it registers the completion function for `container`.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p container",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("_container"),
        "{registered:?}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = cli.run(&["completion", shell]).success().stdout;
        assert!(out.contains("container"), "{shell}: {out}");
    }
    cli.run(&["completion", "tcsh"])
        .fails_with("invalid value 'tcsh'");
}

#[test]
fn man_pages_cover_the_commands() {
    let cli = Cli::new();
    let dir = tempfile::tempdir().unwrap();
    cli.run(&["__man", dir.path().to_str().unwrap()]).success();
    for page in [
        "container.1",
        "container-run.1",
        "container-pod-create.1",
        "container-image-pull.1",
        "container-system-service.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("container-run.1")).unwrap();
    assert!(run.contains("pod"), "run's page lacks --pod");
    assert!(!dir.path().join("container-__monitor.1").exists());
    assert!(!dir.path().join("container-__monitor-pool.1").exists());
}
