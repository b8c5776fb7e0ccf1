//! Registry credentials: ours (`container registry login`, in `<state>/auth.json`, mode 0600)
//! and docker's (`~/.docker/config.json`, read only).
//!
//! Both files use docker's format: `{"auths": {"<host>": {"auth": base64("user:password")}}}`.
//! Ours wins when both have the host. In each file, docker's credential helpers come first:
//! `credHelpers` (per host), then `credsStore` (every host), run as
//! `docker-credential-<name> get` with the server on stdin and `{"Username","Secret"}` JSON on
//! stdout; a helper that is not installed or knows nothing of the host falls through to `auths`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
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
    /// A credential helper failed (other than not knowing the host).
    #[error("credential helper docker-credential-{helper} failed: {message}")]
    Helper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// What it said, or why it could not run.
        message: String,
    },
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
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creds_store: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    cred_helpers: BTreeMap<String, String>,
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

/// One registry credentials are held for (`container registry list`): never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The registry's host (`host[:port]`), as references name it.
    pub registry: String,
    /// The user name, when the file holds one (an entry may defer to a credential helper).
    pub username: Option<String>,
    /// The file it is in: ours (`registry login`) or docker's.
    pub file: PathBuf,
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    ours: PathBuf,
    docker: Option<PathBuf>,
    /// Where `docker-credential-*` helpers are looked for; `None`: `PATH`.
    helper_dir: Option<PathBuf>,
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
            helper_dir: None,
        }
    }

    /// Only the given files (for tests and embedding).
    pub fn with_files(ours: PathBuf, docker: Option<PathBuf>) -> Self {
        CredentialStore {
            ours,
            docker,
            helper_dir: None,
        }
    }

    /// Looks for credential helpers in `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: PathBuf) -> Self {
        self.helper_dir = Some(dir);
        self
    }

    /// Credentials for a registry host (`docker.io` also matches docker's legacy key).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        for path in std::iter::once(&self.ours).chain(self.docker.iter()) {
            let file = read_file(path)?;
            let helper = host_keys(registry)
                .iter()
                .find_map(|k| file.cred_helpers.get(k))
                .or(file.creds_store.as_ref());
            if let Some(helper) = helper {
                if let Some(c) = self.run_helper(helper, registry)? {
                    return Ok(Some(c));
                }
            }
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

    /// `docker-credential-<helper> get` for `registry`; `None` when the helper is not installed
    /// or has nothing for it.
    fn run_helper(&self, helper: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let fail = |message: String| AuthError::Helper {
            helper: helper.to_string(),
            message,
        };
        if helper.is_empty() || helper.contains('/') {
            return Err(fail("invalid helper name".into()));
        }
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e.to_string())),
        };
        // docker hands Docker Hub's helpers its legacy URL, every other registry by host.
        let server = if registry == crate::reference::DOCKER_HUB {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let said = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(said.trim().lines().next().unwrap_or("").to_string()));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Reply {
            username: String,
            secret: String,
        }
        let reply: Reply =
            serde_json::from_str(&stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
        Ok(Some(Credentials {
            username: reply.username,
            password: reply.secret,
        }))
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

    /// The registries our file and then docker's hold credentials for, by host; a host in
    /// both is listed once, from ours (the one [`CredentialStore::get`] uses). Hosts that only
    /// a `credsStore` helper knows are not listed: helpers are asked per host, not listed.
    pub fn list(&self) -> Result<Vec<Login>, AuthError> {
        let mut out: Vec<Login> = Vec::new();
        for path in std::iter::once(&self.ours).chain(self.docker.iter()) {
            let file = read_file(path)?;
            for (key, entry) in &file.auths {
                let registry = match strip_url(key) {
                    "index.docker.io" | "registry-1.docker.io" => {
                        crate::reference::DOCKER_HUB.to_string()
                    }
                    host => host.to_string(),
                };
                if out.iter().any(|l| l.registry == registry) {
                    continue;
                }
                out.push(Login {
                    registry,
                    username: entry
                        .credentials()
                        .map(|c| c.username)
                        .or_else(|| entry.username.clone()),
                    file: path.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.registry.cmp(&b.registry));
        Ok(out)
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
    // Credentials: exactly 0600 whatever the umask, as docker writes config.json.
    atomic_file::write_atomic_with_mode(path, &bytes, 0o600).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn credential_helpers_come_first_and_fall_through() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let helper = |name: &str, script: &str| {
            let p = bin.join(format!("docker-credential-{name}"));
            fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        // The store answers for reg.example only; `per` answers for one host; `broken` fails.
        helper(
            "store",
            r#"read s; if [ "$s" = reg.example ]; then echo '{"ServerURL":"reg.example","Username":"u","Secret":"s3"}'; else echo "credentials not found in native keychain"; exit 1; fi"#,
        );
        helper(
            "per",
            r#"read s; echo "{\"Username\":\"hub\",\"Secret\":\"$s\"}""#,
        );
        helper("broken", "echo boom >&2; exit 3");
        let docker = tmp.path().join("docker.json");
        fs::write(
            &docker,
            r#"{"auths":{"other.example":{"auth":"YTpi"}},"credsStore":"store",
                "credHelpers":{"docker.io":"per","bad.example":"broken","gone.example":"missing"}}"#,
        )
        .unwrap();
        let store = CredentialStore::with_files(tmp.path().join("auth.json"), Some(docker))
            .with_helper_dir(bin);
        let c = store.get("reg.example").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "s3"));
        // Docker Hub's helper is asked with the legacy URL.
        let c = store.get("docker.io").unwrap().unwrap();
        assert_eq!(c.password, "https://index.docker.io/v1/");
        // Not in the store: the auths entry.
        assert_eq!(store.get("other.example").unwrap().unwrap().username, "a");
        assert!(store.get("nowhere.example").unwrap().is_none());
        // A helper that is not installed is skipped; one that fails is an error naming it.
        assert!(store.get("gone.example").unwrap().is_none());
        let err = store.get("bad.example").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-broken") && err.contains("boom"),
            "{err}"
        );
    }
}
