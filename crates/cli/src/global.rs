//! Options every subcommand shares.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Options that apply to every command.
#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// State directory (content store, containers, kernels).
    /// Default: /var/lib/container for root, $XDG_DATA_HOME/container otherwise.
    #[arg(long, global = true, env = "CONTAINER_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// How much to log to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn, env = "CONTAINER_LOG_LEVEL")]
    pub log_level: LogLevel,

    /// Log at debug level (Apple's flag; as --log-level debug).
    #[arg(long, global = true)]
    pub debug: bool,
}

/// Verbosity of the logs on stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Output format of list and inspect commands.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable table.
    #[default]
    Table,
    /// Machine-readable JSON.
    Json,
}

impl GlobalOptions {
    /// Sets up `tracing` to stderr at the chosen level.
    pub fn init_logging(&self) {
        let level = match self.log_level {
            _ if self.debug => "debug",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        };
        // Monitors are re-executed from this binary: through the environment they log at the
        // level asked for here too (their log is the container's monitor.log).
        // Called once at start-up, before any thread exists (set_var is not thread-safe).
        std::env::set_var("CONTAINER_LOG_LEVEL", level);
        // A monitor's stderr is its monitor.log in the state directory: when that disk is full
        // the subscriber's own report of the failed write (an `eprintln!`) would panic the
        // task that logged, and a monitor must outlive a full disk. The line is lost instead.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_target(false)
            .log_internal_errors(false)
            .try_init();
    }

    /// The state directory this invocation works in.
    /// The runtime of this invocation's state directory; monitors are re-executed from this
    /// binary.
    pub fn runtime(&self) -> anyhow::Result<runtime::Runtime> {
        use anyhow::Context;
        let program = std::env::current_exe().context("find the container executable")?;
        Ok(runtime::Runtime::open(&self.root_dir(), program)?)
    }

    pub fn root_dir(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/container");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("container")
    }
}
