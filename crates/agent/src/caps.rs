//! Linux capability names (OCI spelling, `CAP_CHOWN`) and docker's rules for the set a
//! container gets from `--cap-add`/`--cap-drop`. Part of the contract because both sides need
//! them: the host validates flags before a VM boots, the guest turns names into bits.

/// Every capability, indexed by its number (include/uapi/linux/capability.h).
pub const ALL: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// docker's default capability set.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The `CAP_` name for `name` in any case, with or without the prefix; `None` when unknown.
pub fn canonical(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let full = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL.iter().copied().find(|c| &c[4..] == full)
}

/// The capability number of `name` (any spelling [`canonical`] accepts).
pub fn number(name: &str) -> Option<usize> {
    let c = canonical(name)?;
    ALL.iter().position(|&n| n == c)
}

/// docker's set for `--cap-add`/`--cap-drop`: the default set plus `add` minus `drop`, where
/// `ALL` in `add` starts from every capability and `ALL` in `drop` from none. Returned in
/// capability-number order; an unknown name is the error.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut set = [false; ALL.len()];
    let base: &[&str] = if add.iter().any(is_all) {
        &ALL
    } else if drop.iter().any(is_all) {
        &[]
    } else {
        &DEFAULT
    };
    for name in base {
        if let Some(i) = number(name) {
            set[i] = true;
        }
    }
    for (names, on) in [(add, true), (drop, false)] {
        for name in names.iter().filter(|n| !is_all(n)) {
            set[number(name).ok_or_else(|| name.clone())?] = on;
        }
    }
    Ok(ALL
        .iter()
        .zip(set)
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_in_any_spelling() {
        assert_eq!(canonical("sys_admin"), Some("CAP_SYS_ADMIN"));
        assert_eq!(canonical("CAP_NET_ADMIN"), Some("CAP_NET_ADMIN"));
        assert_eq!(canonical("cap_chown"), Some("CAP_CHOWN"));
        assert_eq!(canonical("FLY"), None);
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
    }

    #[test]
    fn docker_rules_for_add_and_drop() {
        let d = resolve(&[], &[]).unwrap();
        assert_eq!(d.len(), DEFAULT.len());
        let r = resolve(&s(&["SYS_ADMIN"]), &s(&["chown"])).unwrap();
        assert!(r.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!r.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(r.len(), DEFAULT.len());
        assert_eq!(resolve(&s(&["all"]), &[]).unwrap().len(), ALL.len());
        assert_eq!(
            resolve(&s(&["ALL"]), &s(&["NET_RAW"])).unwrap().len(),
            ALL.len() - 1
        );
        assert_eq!(
            resolve(&s(&["kill"]), &s(&["ALL"])).unwrap(),
            vec!["CAP_KILL".to_string()]
        );
        assert_eq!(resolve(&s(&["FLY"]), &[]), Err("FLY".to_string()));
    }
}
