//! Resolves a container user spec (`name|uid[:group|gid]`) against the container's own
//! `/etc/passwd` and `/etc/group`, parsed here (there is no NSS in the guest, and the guest's
//! files would be the wrong ones anyway). Follows the rules docker/runc apply: a numeric uid
//! need not exist in passwd; a name must; groups the user is a member of in `/etc/group`
//! become supplementary groups.

use std::path::Path;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (without duplicates, primary group excluded).
    pub groups: Vec<u32>,
    /// Home directory (default `/`).
    pub home: String,
}

/// Errors resolving a user.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not in the container's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// The group name is not in the container's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A spec that is neither a name nor a number, or an id out of range.
    #[error("invalid user spec {0:?}")]
    Invalid(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_id(s: &str) -> Result<u32, UserError> {
    s.parse().map_err(|_| UserError::Invalid(s.to_string()))
}

/// Resolves `spec` with the passwd/group file contents given (missing files are empty).
pub fn resolve_from(
    spec: &str,
    passwd: &str,
    group: &str,
    additional: &[String],
) -> Result<ExecUser, UserError> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = if is_numeric(user_part) {
        let uid = parse_id(user_part)?;
        users.iter().find(|u| u.uid == uid)
    } else {
        let e = users.iter().find(|u| u.name == user_part);
        if e.is_none() {
            return Err(UserError::UnknownUser(user_part.to_string()));
        }
        e
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => parse_id(user_part)?,
    };
    let mut gid = entry.map_or(0, |e| e.gid);
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let mut supplementary = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = lookup_group(&groups, g)?;
        }
        Some(_) => return Err(UserError::Invalid(spec.to_string())),
        None => {
            // Only without an explicit group, as docker: member groups of the named user.
            if let Some(e) = entry {
                for g in &groups {
                    if g.members.iter().any(|m| m == &e.name) {
                        supplementary.push(g.gid);
                    }
                }
            }
        }
    }
    for g in additional {
        supplementary.push(lookup_group(&groups, g)?);
    }
    supplementary.sort_unstable();
    supplementary.dedup();
    supplementary.retain(|&g| g != gid);
    Ok(ExecUser {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

fn lookup_group(groups: &[GroupEntry], g: &str) -> Result<u32, UserError> {
    if is_numeric(g) {
        return parse_id(g);
    }
    groups
        .iter()
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::UnknownGroup(g.to_string()))
}

/// Resolves `spec` against `<rootfs>/etc/passwd` and `<rootfs>/etc/group`.
pub fn resolve(rootfs: &Path, spec: &str, additional: &[String]) -> Result<ExecUser, UserError> {
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_default();
    resolve_from(spec, &read("etc/passwd"), &read("etc/group"), additional)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        alice:x:1000:1000::/home/alice:/bin/sh\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\naudio:x:29: alice \nstaff:x:50:\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve_from(spec, PASSWD, GROUP, &[])
    }

    #[test]
    fn empty_is_root() {
        assert_eq!(
            r("").unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
    }

    #[test]
    fn name_gets_primary_and_member_groups() {
        let u = r("alice").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups, u.home.as_str()),
            (1000, 1000, vec![10, 29], "/home/alice")
        );
    }

    #[test]
    fn numeric_uid_not_in_passwd() {
        assert_eq!(
            r("4242").unwrap(),
            ExecUser {
                uid: 4242,
                gid: 0,
                groups: vec![],
                home: "/".into()
            }
        );
        assert_eq!(r("1000").unwrap().gid, 1000);
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let u = r("alice:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 50, vec![]));
        assert_eq!(r("1:77").unwrap().gid, 77);
        assert_eq!(r("nobody:wheel").unwrap().gid, 10);
    }

    #[test]
    fn errors_name_the_culprit() {
        assert!(matches!(r("mallory"), Err(UserError::UnknownUser(n)) if n == "mallory"));
        assert!(matches!(r("alice:nogroup"), Err(UserError::UnknownGroup(n)) if n == "nogroup"));
        assert!(matches!(r("alice:"), Err(UserError::Invalid(_))));
        assert!(matches!(r("99999999999"), Err(UserError::Invalid(_))));
    }

    #[test]
    fn additional_groups_and_missing_files() {
        let u = resolve_from(
            "alice",
            PASSWD,
            GROUP,
            &["staff".into(), "7".into(), "1000".into()],
        )
        .unwrap();
        assert_eq!(u.groups, vec![7, 10, 29, 50]);
        assert_eq!(resolve_from("", "", "", &[]).unwrap().home, "/");
        assert!(resolve_from("alice", "", "", &[]).is_err());
    }
}
