//! ListCommands answers spliced from pre-encoded parts.
//!
//! A listed [`Command`]'s members split in two. The progress members (Status, StatusDetails and
//! the four counts) move while the command runs; every other member is fixed when it is sent.
//! The fixed members are encoded once, at SendCommand, and kept as text beside the command; a
//! page then encodes only the progress members of each command and copies the fixed text after
//! them. Decoding, converting and re-encoding the fixed members was half of the server's CPU for a
//! page (BENCHMARKS.md, "Pre-rendered listings").

use serde::Serialize;

use crate::ssm::Command;

/// The members of a `Command` that change after SendCommand, as [`Command`] names them.
pub const PROGRESS_MEMBERS: [&str; 6] = [
    "Status",
    "StatusDetails",
    "TargetCount",
    "CompletedCount",
    "ErrorCount",
    "DeliveryTimedOutCount",
];

/// The progress members of one command, encoded on every page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommandProgress<'a> {
    pub status: &'a str,
    pub status_details: &'a str,
    pub target_count: u32,
    pub completed_count: u32,
    pub error_count: u32,
    pub delivery_timed_out_count: u32,
}

/// The fixed members of `command`: the JSON text of its object without the progress members and
/// without the enclosing braces, ready to follow other members after a comma.
pub fn encode_fixed_members(command: &Command) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(command)?;
    if let serde_json::Value::Object(members) = &mut value {
        for name in PROGRESS_MEMBERS {
            members.remove(name);
        }
    }
    let text = serde_json::to_string(&value)?;
    Ok(text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_default()
        .to_owned())
}

/// One command of a page: its progress now and its fixed members as [`encode_fixed_members`]
/// made them.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedCommand<'a> {
    pub progress: CommandProgress<'a>,
    pub fixed_members: &'a str,
}

/// The body of a ListCommands answer (`{"Commands":[…],"NextToken":…}`), spliced.
///
/// `fixed_members` must come from [`encode_fixed_members`]: it is copied, not checked.
pub fn encode_list_commands(
    commands: &[ListedCommand<'_>],
    next_token: Option<&str>,
) -> Result<Vec<u8>, serde_json::Error> {
    let size: usize = commands.iter().map(|c| c.fixed_members.len() + 192).sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(b"{\"Commands\":[");
    for (i, command) in commands.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &command.progress)?;
        if !command.fixed_members.is_empty() {
            // Reopen the progress object: its closing brace moves after the fixed members.
            out.pop();
            out.push(b',');
            out.extend_from_slice(command.fixed_members.as_bytes());
            out.push(b'}');
        }
    }
    out.push(b']');
    if let Some(token) = next_token {
        out.extend_from_slice(b",\"NextToken\":");
        serde_json::to_writer(&mut out, token)?;
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::ssm::{CloudWatchOutputConfig, ListCommandsResult, NotificationConfig, Target};

    /// A command with every member set to something distinct, including characters JSON escapes.
    fn command(n: u32) -> Command {
        Command {
            command_id: format!("{n:08}-1111-2222-3333-444444444444"),
            document_name: "AWS-RunShellScript".into(),
            document_version: "$DEFAULT".into(),
            comment: format!("say \"hi\"\n\\ {n} ünïcode"),
            expires_after: 1_700_000_000.5 + f64::from(n),
            parameters: BTreeMap::from([(
                "commands".to_string(),
                vec!["echo \"$HOME\"".to_string(), "ls\t-la".to_string()],
            )]),
            instance_ids: vec!["mi-0123456789abcdef0".into(), "i-0abc".into()],
            targets: vec![Target {
                key: Some("tag:Env".into()),
                values: Some(vec!["prod".into()]),
            }],
            requested_date_time: 1_699_999_000.25,
            status: "InProgress".into(),
            status_details: "InProgress".into(),
            output_s3_region: "eu-west-1".into(),
            output_s3_bucket_name: "bucket".into(),
            output_s3_key_prefix: "prefix/".into(),
            max_concurrency: "50".into(),
            max_errors: "0".into(),
            target_count: 7 + n,
            completed_count: 3,
            error_count: 1,
            delivery_timed_out_count: 2,
            service_role: "arn:aws:iam::1:role/r".into(),
            notification_config: NotificationConfig {
                notification_arn: Some("arn:aws:sns:x".into()),
                notification_events: Some(vec!["All".into()]),
                notification_type: Some("Command".into()),
            },
            cloud_watch_output_config: CloudWatchOutputConfig {
                cloud_watch_log_group_name: Some("group".into()),
                cloud_watch_output_enabled: Some(true),
            },
            timeout_seconds: 3600,
            alarm_configuration: Some(json!({"Alarms": [{"Name": "a"}]})),
            triggered_alarms: Some(vec![]),
            interactive: false,
        }
    }

    fn progress(c: &Command) -> CommandProgress<'_> {
        CommandProgress {
            status: &c.status,
            status_details: &c.status_details,
            target_count: c.target_count,
            completed_count: c.completed_count,
            error_count: c.error_count,
            delivery_timed_out_count: c.delivery_timed_out_count,
        }
    }

    #[test]
    fn a_spliced_page_equals_the_whole_encoding() {
        let commands: Vec<Command> = (0..3).map(command).collect();
        let fixed: Vec<String> = commands
            .iter()
            .map(|c| encode_fixed_members(c).expect("encode"))
            .collect();
        let listed: Vec<ListedCommand<'_>> = commands
            .iter()
            .zip(&fixed)
            .map(|(c, f)| ListedCommand {
                progress: progress(c),
                fixed_members: f,
            })
            .collect();
        for token in [None, Some("tok\"en")] {
            let spliced = encode_list_commands(&listed, token).expect("splice");
            let whole = ListCommandsResult {
                commands: commands.clone(),
                next_token: token.map(str::to_owned),
            };
            let spliced: Value = serde_json::from_slice(&spliced).expect("valid JSON");
            assert_eq!(spliced, serde_json::to_value(&whole).expect("whole"));
        }
    }

    #[test]
    fn fixed_members_leave_out_exactly_the_progress_members() {
        let c = command(1);
        let fixed: Value = serde_json::from_str(&format!(
            "{{{}}}",
            encode_fixed_members(&c).expect("encode")
        ))
        .expect("valid members");
        let whole = serde_json::to_value(&c).expect("whole");
        let (Value::Object(fixed), Value::Object(whole)) = (fixed, whole) else {
            panic!("objects expected");
        };
        for (name, value) in &whole {
            if PROGRESS_MEMBERS.contains(&name.as_str()) {
                assert!(!fixed.contains_key(name), "{name} is progress");
            } else {
                assert_eq!(fixed.get(name), Some(value), "{name}");
            }
        }
        assert_eq!(fixed.len() + PROGRESS_MEMBERS.len(), whole.len());
    }

    #[test]
    fn an_empty_page_and_empty_fixed_members_still_encode_valid_json() {
        let empty = encode_list_commands(&[], None).expect("encode");
        assert_eq!(empty, br#"{"Commands":[]}"#);
        let c = command(0);
        let bare = ListedCommand {
            progress: progress(&c),
            fixed_members: "",
        };
        let page: Value =
            serde_json::from_slice(&encode_list_commands(&[bare], None).expect("encode"))
                .expect("valid JSON");
        assert_eq!(page["Commands"][0]["TargetCount"], 7);
    }
}
