//! The settings in force (`container system property list`): each user-facing setting with
//! its effective value and where that value comes from, read without changing anything (no
//! default network or host kernel entry is made by looking).
//!
//! Settings live in environment variables read by the crate that uses them; this module
//! names them once more so one command can show them all. Read-only: Apple's `property set`
//! has no counterpart here (set the variable, or use the command: `system kernel set`).

use std::path::PathBuf;

use serde::Serialize;

use crate::Runtime;

/// Where a setting's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Built in.
    Default,
    /// An environment variable ([`Property::env`]).
    Env,
    /// A command-line flag.
    Flag,
    /// A choice recorded in the state directory (e.g. `system kernel set`).
    State,
}

impl Source {
    /// Its name as the table prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Env => "env",
            Source::Flag => "flag",
            Source::State => "state",
        }
    }
}

/// One setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    /// Its key (`network.subnet`).
    pub key: String,
    /// The value in force.
    pub value: String,
    /// Where the value comes from.
    pub source: Source,
    /// The environment variable that sets it, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<&'static str>,
}

impl Property {
    /// A setting with a value of its own.
    pub fn new(key: &str, value: impl Into<String>, source: Source) -> Property {
        Property {
            key: key.to_string(),
            value: value.into(),
            source,
            env: None,
        }
    }

    /// A setting read from `env`, else `default`.
    fn from_env(key: &str, env: &'static str, default: impl Into<String>) -> Property {
        let (value, source) = match std::env::var(env) {
            Ok(v) if !v.is_empty() => (v, Source::Env),
            _ => (default.into(), Source::Default),
        };
        Property {
            key: key.to_string(),
            value,
            source,
            env: Some(env),
        }
    }
}

fn display(path: Option<PathBuf>) -> String {
    path.map_or_else(|| "not found".into(), |p| p.display().to_string())
}

impl Runtime {
    /// The runtime's settings in force, by key (the state directory and the Engine API
    /// socket are the front end's to add: it knows how they were chosen).
    pub fn properties(&self) -> Vec<Property> {
        let kernel = match self.kernels().configured() {
            Ok(Some(k)) => Property::new(
                "kernel",
                format!(
                    "{} ({})",
                    k.release.as_deref().unwrap_or("unknown release"),
                    k.vmlinux.display()
                ),
                Source::State,
            ),
            Ok(None) => Property::new(
                "kernel",
                format!(
                    "none set: the host's /boot/vmlinuz-{}",
                    vmm::kernel::host_release()
                ),
                Source::Default,
            ),
            Err(e) => Property::new("kernel", format!("unreadable: {e}"), Source::State),
        };
        let docker_config = std::env::var_os("DOCKER_CONFIG")
            .map(|d| (PathBuf::from(d).join("config.json"), Source::Env))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    (
                        PathBuf::from(h).join(".docker/config.json"),
                        Source::Default,
                    )
                })
            });
        let mut out = vec![
            kernel,
            // Taken when the default network is first made; the network keeps it after.
            Property::from_env(
                "network.subnet",
                net::DEFAULT_SUBNET_ENV,
                net::DEFAULT_SUBNET.to_string(),
            ),
            // Unset: templates when QEMU can return a clone's freed memory (8.2 and later).
            Property::from_env("vm.templates", crate::real::template::TEMPLATES_ENV, "auto"),
            // Pre-booted VMs kept per shape, and how long one waits (seconds).
            Property::from_env("vm.pool", crate::real::pool::POOL_ENV, "1"),
            Property::from_env("vm.pool.idle", crate::real::pool::POOL_IDLE_ENV, "600"),
            // These names are private to the crates that read them (vmm, runtime::real, oci).
            Property::from_env("vm.qemu.sandbox", "CONTAINER_QEMU_SANDBOX", "on"),
            Property::from_env("vm.qemu.capabilities", "CONTAINER_QEMU_CAPS", "drop"),
            // `own`: a uid of its own per VM (as root); `invoker`; or a uid range FIRST-LAST.
            Property::from_env("vm.qemu.user", vmm::config::QEMU_USER_ENV, "own"),
            Property::from_env("vm.balloon.off", "CONTAINER_NO_BALLOON", "0"),
            // Bytes per second a container's main process may send output at.
            Property::from_env("container.output.rate", crate::pace::OUTPUT_RATE_ENV, "16M"),
            Property::from_env(
                "vminitd",
                "CONTAINER_VMINITD",
                display(crate::vminitd::find()),
            ),
            Property::from_env(
                "virtiofsd",
                "CONTAINER_VIRTIOFSD",
                display(crate::real::virtiofs::find_virtiofsd()),
            ),
            Property::new(
                "registry.scheme",
                "auto: http for localhost and loopback addresses, https otherwise (--scheme)",
                Source::Default,
            ),
            Property::from_env("registry.timeout", "CONTAINER_REGISTRY_TIMEOUT", "60"),
            Property::new(
                "registry.auth",
                self.root().join("auth.json").display().to_string(),
                Source::Default,
            ),
        ];
        if let Some((path, source)) = docker_config {
            out.push(Property {
                env: Some("DOCKER_CONFIG"),
                ..Property::new("registry.docker-config", path.display().to_string(), source)
            });
        }
        out
    }
}
