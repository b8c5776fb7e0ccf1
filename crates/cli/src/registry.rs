//! `container registry …` commands: log in (credentials checked against the registry, then
//! stored 0600 in `<state>/auth.json`), log out, and list the registries credentials are held
//! for.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use oci::{Credentials, RegistryClient};

use crate::global::{Format, GlobalOptions};
use crate::image::{open_store, SchemeArg};

/// Subcommands of `container registry`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Check and store credentials for a registry.
    Login(LoginArgs),
    /// Forget the credentials for a registry.
    Logout(LogoutArgs),
    /// List the registries credentials are held for (ours, then docker's config), with the
    /// user name; never the secret.
    #[command(alias = "ls")]
    List(RegistryListArgs),
}

/// Arguments of `registry list`.
#[derive(Debug, Args)]
pub struct RegistryListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only print the registries' hosts.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `registry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host (`host[:port]`).
    pub host: String,
    /// User name (asked on the terminal if missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry protocol.
    #[arg(long, value_enum, default_value_t)]
    pub scheme: SchemeArg,
}

/// Arguments of `registry logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host.
    pub host: String,
}

/// Normalises a host the way references name registries.
fn registry_host(host: &str) -> String {
    let h = host
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match h {
        "index.docker.io" | "registry-1.docker.io" => oci::reference::DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Runs one `container registry` subcommand.
pub fn run(global: &GlobalOptions, cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Login(a) => login(global, a),
        RegistryCommand::List(a) => {
            let logins = open_store(global)?.credentials().list()?;
            let listing = crate::output::Listing {
                header: format!("{:<32} {:<24} FILE", "REGISTRY", "USERNAME"),
                name: &|l: &oci::Login| l.registry.as_str(),
                row: &|l: &oci::Login| {
                    format!(
                        "{:<32} {:<24} {}",
                        l.registry,
                        l.username.as_deref().unwrap_or("-"),
                        l.file.display()
                    )
                },
            };
            listing.print(&logins, a.format, a.quiet)
        }
        RegistryCommand::Logout(a) => {
            let store = open_store(global)?;
            let host = registry_host(&a.host);
            store.credentials().remove(&host)?;
            println!("Removed credentials for {host}");
            Ok(())
        }
    }
}

fn login(global: &GlobalOptions, a: LoginArgs) -> Result<()> {
    let store = open_store(global)?;
    let host = registry_host(&a.host);
    let interactive = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if interactive && !a.password_stdin => prompt("Username: ", true)?,
        None => bail!("registry login: no user name (pass -u USER)"),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if interactive {
        prompt("Password: ", false)?
    } else {
        bail!("registry login: no password (use --password-stdin)");
    };
    if username.is_empty() || password.is_empty() {
        bail!("registry login: user name and password must not be empty");
    }
    let creds = Credentials { username, password };
    let client = RegistryClient::new(&host, a.scheme.into(), Some(creds.clone()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(client.ping())
        .with_context(|| format!("login to {host} failed"))?;
    store.credentials().set(&host, &creds)?;
    println!("Login succeeded");
    Ok(())
}

/// Reads one line from the terminal, with echo off for passwords.
fn prompt(label: &str, echo: bool) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd and we check its result.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is open (stdin is a terminal, checked by the caller); `saved` is writable.
    let have_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if !echo && have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: same fd; `quiet` is a valid termios derived from the current settings.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if !echo && have_tty {
        // SAFETY: restores the settings read above on the same fd.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
