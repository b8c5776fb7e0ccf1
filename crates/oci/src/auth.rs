//! Registry credentials: ours (`container registry login`, in `<state>/auth.json`, mode 0600)
//! and docker's (`~/.docker/config.json`, read only).
//!
//! Both files use docker's format: `{"auths": {"<host>": {"auth": base64("user:password")}}}`.
//! Ours wins when both have the host. Credential helpers (`credsStore`) are not supported.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Why reading or writing credentials failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credentials file could not be read.
    #[error("cannot read credentials file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The credentials file is not valid JSON of the expected shape.
    #[error("corrupt credentials file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The credentials file could not be written.
    #[error("cannot write credentials file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `logout` for a host we hold nothing for.
    #[error("not logged in to {0}")]
    NotLoggedIn(String),
}

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let Some(auth) = &self.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            return Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        Some(Credentials {
            username: self.username.clone()?,
            password: self.password.clone()?,
        })
    }
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    ours: PathBuf,
    docker: Option<PathBuf>,
}

impl CredentialStore {
    /// Our file under the state directory, plus `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub fn new(state_dir: &Path) -> Self {
        let docker = std::env::var_os("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
            });
        CredentialStore {
            ours: state_dir.join("auth.json"),
            docker,
        }
    }

    /// Only the given files (for tests and embedding).
    pub fn with_files(ours: PathBuf, docker: Option<PathBuf>) -> Self {
        CredentialStore { ours, docker }
    }

    /// Credentials for a registry host (`docker.io` also matches docker's legacy key).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        for path in std::iter::once(&self.ours).chain(self.docker.iter()) {
            let file = read_file(path)?;
            for key in host_keys(registry) {
                if let Some(c) = file.auths.get(&key).and_then(AuthEntry::credentials) {
                    return Ok(Some(c));
                }
            }
            // docker also writes keys as URLs (`https://host/v1/`).
            for (key, entry) in &file.auths {
                if strip_url(key) == registry {
                    if let Some(c) = entry.credentials() {
                        return Ok(Some(c));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Stores credentials in our file (0600), replacing any for the host.
    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
        let mut file = read_file(&self.ours)?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        file.auths.insert(
            registry.to_string(),
            AuthEntry {
                auth: Some(auth),
                ..Default::default()
            },
        );
        write_file(&self.ours, &file)
    }

    /// Removes a host from our file.
    pub fn remove(&self, registry: &str) -> Result<(), AuthError> {
        let mut file = read_file(&self.ours)?;
        if file.auths.remove(registry).is_none() {
            return Err(AuthError::NotLoggedIn(registry.to_string()));
        }
        write_file(&self.ours, &file)
    }
}

fn host_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string()];
    if registry == crate::reference::DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
        keys.push("registry-1.docker.io".to_string());
    }
    keys
}

fn strip_url(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn read_file(path: &Path) -> Result<AuthFile, AuthError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| AuthError::Parse {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(source) => Err(AuthError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, file: &AuthFile) -> Result<(), AuthError> {
    let err = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| err(io::Error::other(e)))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".auth.json.tmp-{}", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode above is filtered by the umask; make sure it is exactly 0600.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_docker_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        let docker = tmp.path().join("docker.json");
        fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"ZG9jazpwdw=="},"reg.example:5000":{"auth":"YTpi"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let store = CredentialStore::with_files(tmp.path().join("auth.json"), Some(docker));
        assert_eq!(store.get("docker.io").unwrap().unwrap().username, "dock");
        assert_eq!(
            store.get("reg.example:5000").unwrap().unwrap().password,
            "b"
        );
        assert!(store.get("other").unwrap().is_none());
        let c = Credentials {
            username: "me".into(),
            password: "p:w".into(),
        };
        store.set("reg.example:5000", &c).unwrap();
        assert_eq!(store.get("reg.example:5000").unwrap().unwrap(), c);
        let mode = fs::metadata(tmp.path().join("auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.remove("reg.example:5000").unwrap();
        assert!(store.remove("reg.example:5000").is_err());
        assert_eq!(
            store.get("reg.example:5000").unwrap().unwrap().username,
            "a"
        );
    }
}
