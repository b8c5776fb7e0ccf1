//! A test that needs more processes than its own re-runs its own test binary, filtered to
//! itself, with a role in the environment; the child sees the role and plays it instead of the
//! test. The test is thereby both sides and always runs, instead of a helper "test" that does
//! nothing unless a variable is set. Re-exec rather than `fork` because the test harness has
//! threads, and a forked child of a threaded process may only call async-signal-safe functions.
//!
//! ```ignore
//! #[test]
//! fn many_processes() {
//!     if let Some(role) = testkit::child::role() {
//!         return play(&role); // in the child
//!     }
//!     let out = testkit::child::command("many_processes", "p1").output().unwrap();
//!     let text = String::from_utf8(out.stdout).unwrap();
//!     assert_eq!(testkit::child::said(&text, "DONE"), Some("DONE p1"));
//! }
//! ```

use std::process::Command;

const ROLE_VAR: &str = "CONTAINER_TEST_CHILD_ROLE";

/// The role this process was started for by [`command`], if it is such a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// The current test binary, to run only the test named `test` (exactly) in `role`. Ignored
/// tests are included, so the child runs whether or not its parent needed `--ignored`.
pub fn command(test: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current test binary");
    let mut c = Command::new(exe);
    c.args([test, "--exact", "--include-ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(ROLE_VAR, role);
    c
}

/// What a child printed after the harness's own `test NAME ... ` prefix (which libtest writes on
/// the same line before the test's output), from the first line starting with `marker`.
pub fn said<'a>(stdout: &'a str, marker: &str) -> Option<&'a str> {
    let at = stdout.find(marker)?;
    stdout[at..].lines().next()
}
