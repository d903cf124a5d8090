//! Which steps of a plan a node does not run, and how they are reported, without changing the agent
//! protocol: the server leaves skipped steps out of the Run message and adds them to the agent's
//! report as `Skipped` results (CommandPlugin Status `Success`, StatusDetails `Skipped`,
//! ResponseCode 0, Output = amazon-ssm-agent's message).
//!
//! A step is skipped when its `StringEquals` precondition is false for the node's platform, when its
//! plugin does not run on that platform (schema 2.2 skips rather than fails), or when an earlier step
//! exited 168 (success, stop) or 169 (failure, stop). The 168/169 step's output gets the agent's
//! trailer, and 168 clears its stderr, as amazon-ssm-agent does.

use crate::command::ReportedStep;
use crate::document::{Plan, PlanStep};
use crate::document_content::action_platforms;
use crate::node::effective_platform_type;

/// The plugin status string stored for a skipped step.
pub const SKIPPED: &str = "Skipped";
/// Exit code: step succeeded, skip the remaining steps.
pub const EXIT_SUCCESS_AND_STOP: i64 = 168;
/// Exit code: step failed, skip the remaining steps.
pub const EXIT_FAILED_AND_STOP: i64 = 169;

/// Why `step` does not run on a node of `platform_type`, as the agent words it; `None` if it runs.
/// A node that never reported its platform counts as Linux.
pub fn skip_reason(step: &PlanStep, platform_type: &str) -> Option<String> {
    let platform_type = effective_platform_type(platform_type);
    if let Some(p) = step
        .precondition
        .as_ref()
        .filter(|p| !p.holds(platform_type))
    {
        return Some(format!(
            "Step execution skipped due to unsatisfied preconditions: '{}'. Step name: {}",
            p.describe(),
            step.name
        ));
    }
    if !action_platforms(&step.action).contains(&platform_type) {
        return Some(format!(
            "Step execution skipped due to unsupported plugin: {}. Step name: {}",
            step.action, step.name
        ));
    }
    None
}

/// The plan a node of `platform_type` is sent: every step that is not skipped, in order.
pub fn for_platform(plan: &Plan, platform_type: &str) -> Plan {
    Plan {
        steps: plan
            .steps
            .iter()
            .filter(|s| skip_reason(s, platform_type).is_none())
            .cloned()
            .collect(),
    }
}

fn skipped(name: &str, message: String) -> ReportedStep {
    ReportedStep {
        name: name.to_string(),
        status: SKIPPED.into(),
        exit_code: 0,
        start_offset_ms: 0,
        duration_ms: 0,
        stdout: message,
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
    }
}

/// Completes an agent's report for a node of `platform_type`: the 168/169 trailers, the steps never
/// sent, and the steps an exit condition skipped. With nothing run at all, the response code is 0.
pub fn complete_report(
    plan: &Plan,
    platform_type: &str,
    steps: &mut Vec<ReportedStep>,
    response_code: &mut i64,
) {
    let mut stopped = false;
    for s in steps.iter_mut() {
        match s.exit_code {
            EXIT_SUCCESS_AND_STOP => {
                s.stdout.push_str("\nStep exited with code 168. Therefore, marking step as succeeded. Further document steps will be skipped.");
                s.stderr.clear();
                s.stderr_truncated = false;
                stopped = true;
            }
            EXIT_FAILED_AND_STOP => {
                let trailer = "\nStep exited with code 169. Therefore, marking step as Failed. Further document steps will be skipped.";
                s.stdout.push_str(trailer);
                s.stderr.push_str(trailer);
                stopped = true;
            }
            _ => {}
        }
    }
    let ran = steps.len();
    for step in &plan.steps {
        if steps.iter().any(|r| r.name == step.name) {
            continue;
        }
        if let Some(reason) = skip_reason(step, platform_type) {
            steps.push(skipped(&step.name, reason));
        } else if stopped {
            steps.push(skipped(
                &step.name,
                format!(
                    "Plugin with name {} and id {} skipped due to prior step with an exit condition",
                    step.action, step.name
                ),
            ));
        }
    }
    if ran == 0 && !steps.is_empty() {
        *response_code = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Precondition;

    fn step(name: &str, action: &str, on: Option<&str>) -> PlanStep {
        PlanStep {
            name: name.into(),
            action: action.into(),
            commands: vec!["true".into()],
            working_directory: String::new(),
            timeout_seconds: 60,
            precondition: on.map(|p| Precondition {
                left: "platformType".into(),
                right: p.into(),
            }),
        }
    }

    fn ran(name: &str, code: i64) -> ReportedStep {
        ReportedStep {
            name: name.into(),
            status: if code == 0 || code == 168 {
                "Success"
            } else {
                "Failed"
            }
            .into(),
            exit_code: code,
            start_offset_ms: 0,
            duration_ms: 5,
            stdout: "out".into(),
            stderr: "err".into(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    #[test]
    fn preconditions_and_platforms() {
        let plan = Plan {
            steps: vec![
                step("linux", "aws:runShellScript", Some("Linux")),
                step("windows", "aws:runPowerShellScript", Some("Windows")),
                step("mac", "aws:runShellScript", Some("MacOS")),
                step("any", "aws:runShellScript", None),
                step("ps", "aws:runPowerShellScript", None),
            ],
        };
        let sent = for_platform(&plan, "Linux");
        let names: Vec<_> = sent.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["linux", "any"]);
        let mut steps = vec![ran("linux", 0), ran("any", 0)];
        let mut code = 0;
        complete_report(&plan, "Linux", &mut steps, &mut code);
        assert_eq!(steps.len(), 5);
        let w = steps.iter().find(|s| s.name == "windows").expect("windows");
        assert_eq!(w.status, SKIPPED);
        assert_eq!(
            w.stdout,
            "Step execution skipped due to unsatisfied preconditions: '\"StringEquals\": [platformType, Windows]'. Step name: windows"
        );
        let ps = steps.iter().find(|s| s.name == "ps").expect("ps");
        assert!(ps
            .stdout
            .contains("unsupported plugin: aws:runPowerShellScript"));
    }

    #[test]
    fn exit_conditions_skip_the_rest() {
        let plan = Plan {
            steps: vec![
                step("a", "aws:runShellScript", None),
                step("b", "aws:runShellScript", None),
                step("c", "aws:runShellScript", None),
            ],
        };
        let mut steps = vec![ran("a", 168)];
        let mut code = 168;
        complete_report(&plan, "Linux", &mut steps, &mut code);
        assert_eq!(steps.len(), 3);
        assert!(steps[0]
            .stdout
            .ends_with("Further document steps will be skipped."));
        assert_eq!(steps[0].stderr, "");
        assert_eq!(steps[1].status, SKIPPED);
        assert!(steps[2]
            .stdout
            .contains("skipped due to prior step with an exit condition"));
        assert_eq!(code, 168);

        // A plain failure does not skip: the agent went on, unreported steps stay unreported.
        let mut steps = vec![ran("a", 169)];
        complete_report(&plan, "Linux", &mut steps, &mut code);
        assert!(steps[0]
            .stderr
            .starts_with("err\nStep exited with code 169"));
        let mut steps = vec![ran("a", 1)];
        complete_report(&plan, "Linux", &mut steps, &mut code);
        assert_eq!(steps.len(), 1);

        // Nothing runs on Windows: every step skipped, response code 0.
        let mut steps = vec![];
        let mut code = -1;
        complete_report(&plan, "Windows", &mut steps, &mut code);
        assert_eq!((steps.len(), code), (3, 0));
    }
}
