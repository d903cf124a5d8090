//! The environment a script starts with. It is built from nothing, never inherited: the agent's
//! own environment (and with `--local-node` the server's) holds secrets such as
//! `FLEETRUN_ACTIVATION_CODE` or `AWS_SECRET_ACCESS_KEY` that a script must not see.
//!
//! A script gets exactly:
//!
//! | variable | value |
//! |---|---|
//! | `PATH` | [`SCRIPT_PATH`], the usual system directories |
//! | `HOME`, `USER`, `LOGNAME` | of the user the agent runs as (its passwd entry; `HOME=/` without one) |
//! | `SHELL` | `/bin/sh`, the shell that runs the script |
//! | `LANG` | the agent's own, when it has one (no `LC_*`: `LANG` alone sets a sane locale) |
//! | `AWS_SSM_INSTANCE_ID`, `AWS_SSM_REGION_NAME`, `SSM_COMMAND_ID` | as amazon-ssm-agent sets them (`commands`) |
//!
//! amazon-ssm-agent passes its own (systemd's) environment on; ours is smaller on purpose, and a
//! script that needs more sets it itself.

use nix::unistd::{geteuid, User};

/// `PATH` of every script.
pub const SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `SHELL` of every script.
pub const SCRIPT_SHELL: &str = "/bin/sh";

/// The variables every script starts with, before the command's own (see the module header).
/// Looks the agent's user up once; call it at start, not per script.
pub fn base_env() -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), SCRIPT_PATH.to_owned()),
        ("SHELL".to_owned(), SCRIPT_SHELL.to_owned()),
    ];
    match User::from_uid(geteuid()) {
        Ok(Some(user)) => {
            env.push(("HOME".to_owned(), user.dir.to_string_lossy().into_owned()));
            env.push(("USER".to_owned(), user.name.clone()));
            env.push(("LOGNAME".to_owned(), user.name));
        }
        Ok(None) | Err(_) => env.push(("HOME".to_owned(), "/".to_owned())),
    }
    if let Some(lang) = std::env::var("LANG").ok().filter(|l| valid_value(l)) {
        env.push(("LANG".to_owned(), lang));
    }
    env
}

/// A name `execve` can carry: not empty, no `=`, no NUL.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

pub(crate) fn valid_value(value: &str) -> bool {
    !value.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_small_and_fixed() {
        let env = base_env();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        for needed in ["PATH", "SHELL", "HOME"] {
            assert!(names.contains(&needed), "{names:?}");
        }
        for (name, _) in &env {
            assert!(
                ["PATH", "SHELL", "HOME", "USER", "LOGNAME", "LANG"].contains(&name.as_str()),
                "{name}"
            );
        }
        assert!(env.contains(&("PATH".into(), SCRIPT_PATH.into())));
    }

    #[test]
    fn names_execve_cannot_carry_are_refused() {
        assert!(valid_name("AWS_SSM_REGION_NAME"));
        for bad in ["", "A=B", "A\0"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_value("a\0b"));
    }
}
