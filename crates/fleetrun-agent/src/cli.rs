//! What both agent binaries (`fleetrun agent`, clap, and `fleetrun-agent`, hand-parsed) tell their
//! users in the same words: the exit codes, the state directory layout and the environment
//! variables at the end of `--help` ([`HELP_DETAILS`]), and the parser of `--register-timeout`.
//! No I/O.

use std::time::Duration;

/// Process exit codes of `fleetrun agent` and `fleetrun-agent`. Service managers can act on them:
/// with systemd, `RestartPreventExitStatus=3 4` keeps a refused or deregistered agent from being
/// restarted in a loop.
pub mod exit {
    /// Stopped cleanly (SIGTERM / Ctrl-C), or `register` done.
    pub const CLEAN: u8 = 0;
    /// Configuration or start-up error: state dir, identity file, TLS settings or trust, a
    /// server speaking another agent protocol, no identity and no activation, …
    pub const STARTUP: u8 = 1;
    /// Usage error: an unknown flag, a missing or malformed value.
    pub const USAGE: u8 = 2;
    /// The server refused the registration (wrong code; unknown, expired, deleted or used-up
    /// activation): asking again cannot help, a new activation can.
    pub const REGISTRATION_REFUSED: u8 = 3;
    /// The server no longer knows this node (`aws ssm deregister-managed-instance`): remove the
    /// state dir and register again with a new activation.
    pub const DEREGISTERED: u8 = 4;
    /// The server stayed unreachable for the whole `--register-timeout`.
    pub const REGISTRATION_GAVE_UP: u8 = 5;
    /// `register` interrupted (Ctrl-C / SIGTERM) before the server answered; nothing was saved.
    pub const INTERRUPTED: u8 = 130;
}

/// The end of both binaries' `--help`: state dir layout, environment, exit codes.
pub const HELP_DETAILS: &str = "\
Registration: while the server cannot be reached (connection refused or reset, timeouts, HTTP 5xx,
throttling) registering is retried with backoff (1 s doubling to 30 s, jittered; each retry logged
at WARN) until it succeeds, --register-timeout passes, or Ctrl-C/SIGTERM; a refusal that cannot
change (wrong code; unknown, expired, deleted or used-up activation) is not retried.
Shutdown (SIGTERM / Ctrl-C) drains: no new work; running commands get --drain-grace-secs to finish
and be reported; what still runs then is not killed: it keeps running and the next start of the
agent watches it again and reports its real result. A stopped agent tells the server (at most
2 s), which shows the node ConnectionLost at once.

State directory (--state-dir, mode 0700):
  identity.json              the node's mi- id, region and Ed25519 private key (0600)
  outbox/<command-id>.json   results not yet acknowledged by the server, resent on start
  outbox/rejected/           results the server refused (kept 7 days)
  work/<command-id>/job.json a running command's progress (resumed after a restart)
  work/<command-id>/<step>/  _script.sh, the step's full stdout and stderr (0600); kept 7 days
  work/<command-id>/<step>.state/  pid, exit status and start of the step's detached processes

Environment (each flag's fallback; a flag wins):
  FLEETRUN_SERVER              --server
  FLEETRUN_STATE_DIR           --state-dir
  FLEETRUN_ACTIVATION_ID       --activation-id
  FLEETRUN_ACTIVATION_CODE     the activation code when no --activation-code-file is given;
                               removed from the environment once read (scripts never see it)
  FLEETRUN_REGION              --region
  FLEETRUN_MAX_CONCURRENT      --max-concurrent
  FLEETRUN_REGISTER_TIMEOUT    --register-timeout
  FLEETRUN_DRAIN_GRACE         --drain-grace-secs
  FLEETRUN_CA_CERT             --ca-cert
  FLEETRUN_SERVER_FINGERPRINT  --server-fingerprint
  RUST_LOG                     log level (error, warn, info, debug, trace; default info);
                               `fleetrun agent` also takes filter directives and
                               FLEETRUN_LOG_FORMAT=json (--log-format)

Exit codes:
  0    stopped cleanly (SIGTERM / Ctrl-C), or `register` done
  1    configuration or start-up error (state dir, identity file, TLS trust, a server speaking
       another agent protocol, no identity and no activation, ...)
  2    usage error (unknown flag, missing or malformed value)
  3    registration refused by the server (wrong code; unknown, expired, deleted or used-up
       activation): get a new activation
  4    this node was deregistered on the server: remove the state dir and register again with
       a new activation
  5    gave up registering: the server stayed unreachable for --register-timeout
  130  `register` interrupted (Ctrl-C / SIGTERM) before the server answered";

/// Parses a `--register-timeout` value: seconds (`90`), or a number with `s`, `m` or `h` (`30s`,
/// `5m`, `2h`). `0` means a single attempt.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90, 30s, 5m, 2h)"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 90, 30s, 5m, 2h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "5d", "-1", "1.5m", "forever"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_help_names_every_exit_code() {
        for code in [
            exit::CLEAN,
            exit::STARTUP,
            exit::USAGE,
            exit::REGISTRATION_REFUSED,
            exit::DEREGISTERED,
            exit::REGISTRATION_GAVE_UP,
            exit::INTERRUPTED,
        ] {
            assert!(
                HELP_DETAILS.contains(&format!("\n  {code:<4} ")),
                "exit code {code} missing from the help"
            );
        }
    }
}
