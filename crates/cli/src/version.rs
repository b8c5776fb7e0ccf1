//! `container version` (and `container system version`): docker's `version` layout, a Client
//! section with this binary's version, git commit, compiler and platform, and in place of
//! docker's Server section the guest kernel the VMs boot, from the kernel store. There is no
//! daemon to ask: everything is known here.

use clap::Args;
use serde::Serialize;

use crate::global::GlobalOptions;

/// Arguments of `version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// `json` for one JSON object, or a Go template over it (`{{.Client.Version}}`).
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// What `version` reports (docker's `Client` keys where it has one).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Version {
    client: Client,
    /// None when no kernel was set (VMs then boot the host's, when it has one).
    guest_kernel: Option<GuestKernel>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Client {
    version: &'static str,
    /// Empty when built outside a git checkout.
    git_commit: &'static str,
    /// Docker's `GoVersion`, for our compiler.
    rust_version: &'static str,
    os: &'static str,
    arch: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GuestKernel {
    /// The kernel release (`uname -r` in a container); empty when unknown (an ELF vmlinux).
    version: String,
    /// Its id in the kernel store.
    id: String,
}

/// This binary's side: known at build time (see `build.rs`).
fn client() -> Client {
    Client {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: option_env!("CONTAINER_GIT_COMMIT").unwrap_or(""),
        rust_version: option_env!("CONTAINER_RUSTC_VERSION").unwrap_or(""),
        os: std::env::consts::OS,
        arch: go_arch(std::env::consts::ARCH),
    }
}

/// Docker's (Go's) name for an architecture.
fn go_arch(arch: &'static str) -> &'static str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `container version`.
pub fn version(global: &GlobalOptions, a: VersionArgs) -> anyhow::Result<()> {
    let kernel = global.runtime()?.kernels().configured()?;
    let v = Version {
        client: client(),
        guest_kernel: kernel.map(|k| GuestKernel {
            version: k.release.unwrap_or_default(),
            id: k.id,
        }),
    };
    match a.format.as_deref() {
        Some("json") => crate::format::write_stdout(&format!("{}\n", serde_json::to_string(&v)?)),
        Some(text) => crate::format::print_inspect(&[serde_json::to_value(&v)?], Some(text)),
        None => crate::format::write_stdout(&text(&v)),
    }
}

/// docker's layout: a section title, then ` Key:` padded to one column.
fn text(v: &Version) -> String {
    let c = &v.client;
    let mut rows = vec![
        ("Client:", None),
        (" Version:", Some(c.version.to_string())),
    ];
    if !c.git_commit.is_empty() {
        rows.push((" Git commit:", Some(c.git_commit.to_string())));
    }
    if !c.rust_version.is_empty() {
        rows.push((" Rust version:", Some(c.rust_version.to_string())));
    }
    rows.push((" OS/Arch:", Some(format!("{}/{}", c.os, c.arch))));
    rows.push(("", None));
    rows.push(("Guest kernel:", None));
    match &v.guest_kernel {
        Some(k) => {
            let release = if k.version.is_empty() {
                "unknown (an ELF vmlinux)"
            } else {
                &k.version
            };
            rows.push((" Version:", Some(release.to_string())));
            rows.push((" Id:", Some(k.id.chars().take(12).collect())));
        }
        None => rows.push((
            " Version:",
            Some("none set (see container system kernel set)".to_string()),
        )),
    }
    let mut out = String::new();
    for (key, value) in rows {
        match value {
            Some(v) => out.push_str(&format!("{key:<20}{v}\n")),
            None => out.push_str(&format!("{key}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_s_layout() {
        let v = Version {
            client: Client {
                version: "1.2.3",
                git_commit: "abc1234",
                rust_version: "rustc 1.80.0",
                os: "linux",
                arch: "amd64",
            },
            guest_kernel: Some(GuestKernel {
                version: "6.1.0-1-cloud-amd64".into(),
                id: "0123456789abcdef".into(),
            }),
        };
        assert_eq!(
            text(&v),
            "Client:\n Version:           1.2.3\n Git commit:        abc1234\n \
             Rust version:      rustc 1.80.0\n OS/Arch:           linux/amd64\n\nGuest kernel:\n \
             Version:           6.1.0-1-cloud-amd64\n Id:                0123456789ab\n"
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["Client"]["GitCommit"], "abc1234");
        assert_eq!(j["GuestKernel"]["Version"], "6.1.0-1-cloud-amd64");
        assert_eq!(go_arch("x86_64"), "amd64");
    }
}
