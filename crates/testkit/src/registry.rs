//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`, killed and its storage removed when dropped.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1 (bound then released; the race with other users is tolerated).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// A registry that requires HTTP basic auth for `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Self::launch(Some((user, password)))
    }

    fn launch(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let mut last_err = String::new();
        // A port grabbed by someone else between probe and bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            if let Some((user, password)) = auth {
                let htpasswd = dir.path().join("htpasswd");
                let line = crate::tool("htpasswd", &["-Bbn", user, password]);
                std::fs::write(&htpasswd, line.trim()).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("docker-registry must be installed (scripts/setup.sh)");
            let mut child = child;
            if wait_ready(&mut child, &addr, Duration::from_secs(15)) {
                return Registry { addr, child, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_err = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last_err}");
    }

    /// `127.0.0.1:<port>/<name>` — a reference into this registry.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{}", self.addr, name)
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

fn wait_ready(child: &mut Child, addr: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_status(addr, "/v2/").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a plain `GET path` to `addr`, or `None` if nothing answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}
