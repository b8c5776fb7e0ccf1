//! `--sysctl KEY=VALUE`: kernel settings of the container, limited to those docker allows
//! (docker/cli `opts.ValidateSysctl`): the ones a Linux namespace scopes — `net.*` (network
//! namespace), `kernel.shm*`, `kernel.msg*`, `kernel.sem` and `fs.mqueue.*` (IPC namespace).
//!
//! The guest writes them in the container's namespaces before its process starts. In a VM
//! the guest kernel is the container's own, so even a setting docker could not scope would
//! reach no other container; the list stays docker's so that a command line means the same
//! here as there.

use std::collections::BTreeMap;

/// The `kernel.*` settings docker allows, all of the IPC namespace.
const KERNEL: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The prefixes docker allows: the network namespace's and POSIX message queues'.
const PREFIXES: [&str; 2] = ["net.", "fs.mqueue."];

/// A `--sysctl` docker would refuse; the message is docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sysctl '{0}' is not allowed")]
pub struct SysctlError(pub String);

/// Checks one `KEY=VALUE` and splits it.
pub fn parse(s: &str) -> Result<(String, String), SysctlError> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| SysctlError(s.to_string()))?;
    check(key, value).map_err(|_| SysctlError(s.to_string()))?;
    Ok((key.to_string(), value.to_string()))
}

/// Checks a key and value (an Engine API body's `HostConfig.Sysctls` entry).
pub fn check(key: &str, value: &str) -> Result<(), SysctlError> {
    // Path separators and dots would let a key leave /proc/sys in the guest.
    let well_formed = !key.is_empty()
        && key
            .split('.')
            .all(|p| !p.is_empty() && !p.contains('/') && p != "..");
    let allowed = KERNEL.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p));
    if !well_formed || !allowed || value.contains('\n') {
        return Err(SysctlError(format!("{key}={value}")));
    }
    Ok(())
}

/// Checks every entry of `sysctls`.
pub fn check_all(sysctls: &BTreeMap<String, String>) -> Result<(), SysctlError> {
    sysctls.iter().try_for_each(|(k, v)| check(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_settings_pass() {
        for s in [
            "net.ipv4.ip_forward=1",
            "net.core.somaxconn=1024",
            "kernel.shmmax=68719476736",
            "kernel.sem=250 32000 100 128",
            "fs.mqueue.msg_max=64",
            "net.ipv4.ping_group_range=0 2147483647",
        ] {
            assert!(parse(s).is_ok(), "{s}");
        }
        assert_eq!(
            parse("net.a=b=c").unwrap(),
            ("net.a".to_string(), "b=c".to_string())
        );
    }

    #[test]
    fn others_are_refused_with_dockers_message() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            err("kernel.pid_max=10"),
            "sysctl 'kernel.pid_max=10' is not allowed"
        );
        assert_eq!(
            err("vm.swappiness=1"),
            "sysctl 'vm.swappiness=1' is not allowed"
        );
        assert_eq!(err("net.ipv4"), "sysctl 'net.ipv4' is not allowed");
        assert!(parse("kernel.shm=1").is_err());
        assert!(parse("net.../../kernel/x=1").is_err());
        assert!(parse("net.a/b=1").is_err());
        assert!(parse("net.a=1\n2").is_err());
    }
}
