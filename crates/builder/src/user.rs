//! Owners for `COPY --chown`, `ADD --chown` and the directories `WORKDIR` creates: Docker's
//! `user[:group]` syntax, with names looked up in the stage's `/etc/passwd` and `/etc/group`.
//!
//! - A number needs no lookup. A user given alone brings its group: the primary group from
//!   `/etc/passwd` for a name (BuildKit and buildah both do this, whatever the reference
//!   says), the same number for a numeric id (`--chown=1000` is `1000:1000`).
//! - A name that is not found is an error for `--chown` (the reference: "the build fails";
//!   buildah agrees); BuildKit's silent fallback to root is not copied.

use super::tree::{resolve, SourceTree, TreeError};
use std::io::Read;

/// What `--chown` (or `USER`) names: `user`, `user:group`, each a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSpec {
    /// The user.
    pub user: Id,
    /// The group, when given.
    pub group: Option<Id>,
}

/// A user or group, by name or number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// A name to look up.
    Name(String),
    /// A number.
    Number(u32),
}

/// An owner could not be parsed or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The text is not `user[:group]`.
    #[error("invalid owner {0:?}: expected user[:group]")]
    Syntax(String),
    /// No such user in the stage's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in the stage's /etc/passwd")]
    NoUser(String),
    /// No such group in the stage's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in the stage's /etc/group")]
    NoGroup(String),
    /// The user database could not be read.
    #[error("cannot read the stage's user database: {0}")]
    Read(String),
}

impl Id {
    fn parse(text: &str) -> Id {
        // Go's ParseUint(s, 10, 32): digits only, no sign.
        match text.parse::<u32>() {
            Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Id::Number(n),
            _ => Id::Name(text.to_string()),
        }
    }
}

impl OwnerSpec {
    /// Parses `user`, `user:group` (`--chown`'s value, or `USER`'s).
    pub fn parse(text: &str) -> Result<OwnerSpec, UserError> {
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(UserError::Syntax(text.into()));
        }
        Ok(OwnerSpec {
            user: Id::parse(user),
            group: group.map(Id::parse),
        })
    }

    /// Whether resolving it needs the stage's user database.
    pub fn needs_lookup(&self) -> bool {
        matches!(self.user, Id::Name(_)) || matches!(self.group, Some(Id::Name(_)))
    }

    /// The numeric owner, names looked up in `users`.
    pub fn resolve(&self, users: &dyn UserLookup) -> Result<(u32, u32), UserError> {
        let (uid, mut gid) = match &self.user {
            Id::Number(n) => (*n, *n),
            Id::Name(name) => users
                .user(name)?
                .ok_or_else(|| UserError::NoUser(name.clone()))?,
        };
        match &self.group {
            None => {}
            Some(Id::Number(n)) => gid = *n,
            Some(Id::Name(name)) => {
                gid = users
                    .group(name)?
                    .ok_or_else(|| UserError::NoGroup(name.clone()))?
            }
        }
        Ok((uid, gid))
    }
}

/// The stage's users and groups. The builder implements it by reading the stage's root
/// filesystem (or uses [`UserDb`] on the two files' text).
pub trait UserLookup {
    /// The uid and primary gid of the user `name`; `None` when there is none.
    fn user(&self, name: &str) -> Result<Option<(u32, u32)>, UserError>;
    /// The gid of the group `name`; `None` when there is none.
    fn group(&self, name: &str) -> Result<Option<u32>, UserError>;
}

/// No user database at all (a stage without `/etc/passwd`): numbers only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsers;

impl UserLookup for NoUsers {
    fn user(&self, _name: &str) -> Result<Option<(u32, u32)>, UserError> {
        Ok(None)
    }
    fn group(&self, _name: &str) -> Result<Option<u32>, UserError> {
        Ok(None)
    }
}

/// `/etc/passwd` and `/etc/group`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    users: Vec<(String, u32, u32)>,
    groups: Vec<(String, u32)>,
}

impl UserDb {
    /// Parses the text of `/etc/passwd` and `/etc/group` (either may be empty). Lines that
    /// do not parse are skipped, as libc's readers do; the first entry of a name wins.
    pub fn parse(passwd: &str, group: &str) -> UserDb {
        let users = passwd
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
                    return None;
                }
                Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 3 || f[0].is_empty() || f[0].starts_with('#') {
                    return None;
                }
                Some((f[0].to_string(), f[2].parse().ok()?))
            })
            .collect();
        UserDb { users, groups }
    }

    /// Reads `etc/passwd` and `etc/group` of a root filesystem (following symlinks inside
    /// it); a missing file counts as empty.
    pub fn from_tree(tree: &dyn SourceTree) -> Result<UserDb, TreeError> {
        let read = |path: &str| -> Result<String, TreeError> {
            let resolved = match resolve(tree, path, true) {
                Ok(p) => p,
                Err(TreeError::Missing { .. } | TreeError::NotADirectory { .. }) => {
                    return Ok(String::new())
                }
                Err(e) => return Err(e),
            };
            match tree.entry(&resolved)? {
                Some(e) if e.is_file() => {}
                _ => return Ok(String::new()),
            }
            let mut text = Vec::new();
            tree.open(&resolved)?
                .read_to_end(&mut text)
                .map_err(|source| TreeError::Read {
                    tree: tree.name().into(),
                    path: resolved.clone(),
                    source,
                })?;
            Ok(String::from_utf8_lossy(&text).into_owned())
        };
        Ok(UserDb::parse(&read("etc/passwd")?, &read("etc/group")?))
    }
}

impl UserLookup for UserDb {
    fn user(&self, name: &str) -> Result<Option<(u32, u32)>, UserError> {
        Ok(self
            .users
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, uid, gid)| (uid, gid)))
    }
    fn group(&self, name: &str) -> Result<Option<u32>, UserError> {
        Ok(self
            .groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, gid)| gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1700:\n";

    #[test]
    fn owners() {
        let db = UserDb::parse(PASSWD, GROUP);
        let r = |s: &str| OwnerSpec::parse(s).unwrap().resolve(&db);
        assert_eq!(r("app"), Ok((1500, 1600)));
        assert_eq!(r("app:web"), Ok((1500, 1700)));
        assert_eq!(r("1234"), Ok((1234, 1234)));
        assert_eq!(r("10:11"), Ok((10, 11)));
        assert_eq!(r("55:web"), Ok((55, 1700)));
        assert_eq!(r("nobody"), Err(UserError::NoUser("nobody".into())));
        assert_eq!(r("app:nogroup"), Err(UserError::NoGroup("nogroup".into())));
        assert!(OwnerSpec::parse("app:").is_err());
        assert!(OwnerSpec::parse(":x").is_err());
        assert!(!OwnerSpec::parse("1:2").unwrap().needs_lookup());
        assert_eq!(OwnerSpec::parse("+1").unwrap().user, Id::Name("+1".into()));
    }
}
