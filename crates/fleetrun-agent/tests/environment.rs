//! What a script's environment holds: alone in this test binary, because it sets variables in
//! the process environment (as an operator's shell or systemd unit would for the agent) before
//! any thread starts.

use std::collections::BTreeMap;

use fleetrun_agent::executor::{run_command, stop_pair, ExecConfig, SCRIPT_PATH};
use fleetrun_wire::agent::{Outcome, StepSpec};

/// Variables `sh` itself may export to the commands it runs.
const SHELL_OWN: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];

#[test]
fn scripts_see_only_the_documented_variables() {
    // Edition 2021: `set_var` is safe; no other thread exists yet.
    std::env::set_var("FLEETRUN_ACTIVATION_CODE", "leaked-activation-code");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "leaked-secret-key");
    std::env::set_var("FLEETRUN_TEST_SECRET", "leaked-test-secret");
    std::env::set_var("LD_PRELOAD", "");
    std::env::set_var("LANG", "C.UTF-8");
    std::env::set_var("PATH", "/leaked/bin:/usr/bin:/bin");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ExecConfig::new(dir.path().join("work"));
    let step = StepSpec {
        name: "aws:runShellScript".into(),
        action: "aws:runShellScript".into(),
        commands: vec!["env".into()],
        working_directory: String::new(),
        timeout_seconds: 60,
    };
    let env: Vec<(String, String)> = [
        ("AWS_SSM_INSTANCE_ID", "mi-0123456789abcdef0"),
        ("AWS_SSM_REGION_NAME", "eu-west-1"),
        ("SSM_COMMAND_ID", "cmd-env"),
        ("BAD=NAME", "dropped"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let report = runtime.block_on(async {
        let (_stop, signal) = stop_pair();
        run_command(&cfg, "cmd-env", &[step], &env, "AWS-RunShellScript", signal).await
    });
    assert_eq!(report.outcome, Outcome::Success, "{report:?}");
    let printed = &report.steps[0].stdout;
    assert!(!printed.contains("leaked"), "{printed}");
    let vars: BTreeMap<&str, &str> = printed.lines().filter_map(|l| l.split_once('=')).collect();
    for name in vars.keys() {
        assert!(
            ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG"].contains(name)
                || name.starts_with("AWS_SSM_")
                || *name == "SSM_COMMAND_ID"
                || SHELL_OWN.contains(name),
            "unexpected {name} in\n{printed}"
        );
    }
    assert_eq!(vars.get("PATH"), Some(&SCRIPT_PATH));
    assert_eq!(vars.get("SHELL"), Some(&"/bin/sh"));
    assert_eq!(vars.get("LANG"), Some(&"C.UTF-8"));
    assert!(vars.get("HOME").is_some_and(|h| h.starts_with('/')));
    assert_eq!(
        vars.get("AWS_SSM_INSTANCE_ID"),
        Some(&"mi-0123456789abcdef0")
    );
    assert_eq!(vars.get("AWS_SSM_REGION_NAME"), Some(&"eu-west-1"));
    assert_eq!(vars.get("SSM_COMMAND_ID"), Some(&"cmd-env"));
    assert!(!vars.contains_key("LD_PRELOAD") && !vars.contains_key("BAD"));
}
