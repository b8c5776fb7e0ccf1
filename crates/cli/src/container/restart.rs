//! `--restart` of `run`, `create` and `update` (the policy's rules are
//! `runtime::restart`'s; the container's monitor applies them).

use clap::Args;
use runtime::restart::RestartPolicy;

/// `run`/`create` flag for what happens when the container's process ends or its VM dies.
#[derive(Debug, Args)]
pub struct RestartFlags {
    /// Restart policy: no, always, unless-stopped, or on-failure[:MAX-RETRIES] (not with
    /// --rm). Restarts wait 100 ms, doubling up to 1 min; a stop or kill ends them.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub restart: Option<RestartPolicy>,
}

/// Parses docker's `NAME[:COUNT]`, with docker's errors.
pub fn parse_policy(s: &str) -> Result<RestartPolicy, String> {
    s.parse()
        .map_err(|e: runtime::restart::RestartPolicyError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::ContainerCommand;
    use clap::Parser;
    use runtime::restart::RestartPolicy;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        c: ContainerCommand,
    }

    #[test]
    fn restart_flags() {
        let t = T::try_parse_from(["c", "run", "--restart", "on-failure:2", "img"]).unwrap();
        let ContainerCommand::Run(r) = t.c else {
            panic!()
        };
        assert_eq!(
            r.flags.restart.restart,
            Some(RestartPolicy::OnFailure { max_retries: 2 })
        );
        let e = T::try_parse_from(["c", "create", "--restart", "always:3", "img"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("maximum retry count cannot be used with restart policy 'always'"),
            "{e}"
        );
        let e = T::try_parse_from(["c", "run", "--restart", "on-failure:-1", "img"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("maximum retry count cannot be negative"),
            "{e}"
        );
        assert!(T::try_parse_from(["c", "update", "--restart", "always", "x"]).is_ok());
        assert!(T::try_parse_from(["c", "start", "--all-restartable"]).is_ok());
        assert!(T::try_parse_from(["c", "start", "--all-restartable", "x"]).is_err());
        assert!(T::try_parse_from(["c", "start", "-a", "--all-restartable"]).is_err());
    }
}
