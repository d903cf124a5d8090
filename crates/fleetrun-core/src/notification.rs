//! Which status changes a command's `NotificationConfig` announces, and the message each one
//! carries — the bodies SSM publishes to SNS (integration fact sheet §3). Pure: the store turns a
//! transaction's [`Effects`](crate::lifecycle::Effects) into notices with these functions, and
//! whatever delivers them (an outbox, webhooks) sends `body` as it is.
//!
//! Choices where AWS documents nothing (ARCHITECTURE.md, "Notifications"):
//! - `Delayed` (an invocation status the `NotificationEvents` enum cannot name) is not announced,
//!   like `Pending` and `Cancelling`, which AWS documents as not captured.
//! - A config with a topic but no `NotificationEvents` announces every event (`All`); one with no
//!   `NotificationType` announces command-level changes (`Command`).
//! - Timestamps are ISO-8601 UTC with trailing zeros of the fraction dropped (`.17Z`, as in AWS's
//!   samples), and no fraction at all on a whole second.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::command::{NewCommand, Notification};
use crate::ids::CommandId;
use crate::lifecycle::Effects;
use crate::status::{CommandState, InvocationState};

/// What a command's notices are built from: its record's fields.
#[derive(Debug, Clone, Copy)]
pub struct NoticeContext<'a> {
    pub command_id: &'a str,
    pub document_name: &'a str,
    /// The node ids the command was sent to *by id* (empty when it targeted tags): AWS puts ids in
    /// the summary only then.
    pub instance_ids: &'a [String],
    pub requested_at: Millis,
    pub expires_at: Millis,
    pub output_s3_bucket: &'a str,
    pub output_s3_key_prefix: &'a str,
    pub config: &'a Notification,
}

/// One message to publish to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub topic_arn: String,
    /// The same for the same event however often it is built (a retried transaction, a
    /// redelivery), so a receiver can drop duplicates.
    pub message_id: String,
    /// The JSON document AWS sends as the SNS `Message`.
    pub body: String,
    pub event_time: Millis,
}

/// A notice waiting in a store's outbox, as leased to a deliverer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message_id: String,
    pub topic_arn: String,
    pub body: String,
    pub event_time: Millis,
    /// Leases so far, this one included.
    pub attempts: u32,
}

/// The announced statuses, as the API names them.
const ANNOUNCED: [&str; 5] = ["InProgress", "Success", "TimedOut", "Cancelled", "Failed"];

fn wanted(config: &Notification, kind: &str, status: &str) -> bool {
    let config_kind = if config.kind.is_empty() {
        "Command"
    } else {
        config.kind.as_str()
    };
    !config.arn.is_empty()
        && config_kind == kind
        && ANNOUNCED.contains(&status)
        && (config.events.is_empty() || config.events.iter().any(|e| e == "All" || e == status))
}

/// The summary message for a command whose status changed from `from` to `to`, if its config
/// asks for it (type `Command`, the status among its events).
pub fn command_notice(
    ctx: &NoticeContext<'_>,
    from: CommandState,
    to: CommandState,
    event_time: Millis,
) -> Option<Notice> {
    let status = to.status().as_str();
    if from.status() == to.status() || !wanted(ctx.config, "Command", status) {
        return None;
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary<'a> {
        command_id: &'a str,
        document_name: &'a str,
        instance_ids: &'a [String],
        requested_date_time: String,
        expires_after: String,
        output_s3_bucket_name: &'a str,
        output_s3_key_prefix: &'a str,
        status: &'a str,
        event_time: String,
    }
    let body = Summary {
        command_id: ctx.command_id,
        document_name: ctx.document_name,
        instance_ids: ctx.instance_ids,
        requested_date_time: sns_time(ctx.requested_at),
        expires_after: sns_time(ctx.expires_at),
        output_s3_bucket_name: ctx.output_s3_bucket,
        output_s3_key_prefix: ctx.output_s3_key_prefix,
        status,
        event_time: sns_time(event_time),
    };
    notice(ctx, "", status, &body, event_time)
}

/// The message for one node's invocation whose status changed from `from` to `to`, if its
/// command's config asks for it (type `Invocation`, the status among its events).
pub fn invocation_notice(
    ctx: &NoticeContext<'_>,
    instance_id: &str,
    from: InvocationState,
    to: InvocationState,
    event_time: Millis,
) -> Option<Notice> {
    let status = to.status().as_str();
    if from.status() == to.status() || !wanted(ctx.config, "Invocation", status) {
        return None;
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PerNode<'a> {
        command_id: &'a str,
        document_name: &'a str,
        instance_id: &'a str,
        requested_date_time: String,
        status: &'a str,
        event_time: String,
    }
    let body = PerNode {
        command_id: ctx.command_id,
        document_name: ctx.document_name,
        instance_id,
        requested_date_time: sns_time(ctx.requested_at),
        status,
        event_time: sns_time(event_time),
    };
    notice(ctx, instance_id, status, &body, event_time)
}

fn notice<T: Serialize>(
    ctx: &NoticeContext<'_>,
    instance_id: &str,
    status: &str,
    body: &T,
    event_time: Millis,
) -> Option<Notice> {
    let body = serde_json::to_string(body).ok()?;
    Some(Notice {
        topic_arn: ctx.config.arn.clone(),
        message_id: message_id(ctx.command_id, instance_id, status),
        body,
        event_time,
    })
}

/// A UUID-shaped id derived from what the event is about: a status is entered at most once per
/// command or invocation, so (command, node, status) names the event.
fn message_id(command_id: &str, instance_id: &str, status: &str) -> String {
    let digest = Sha256::new()
        .chain_update(command_id.as_bytes())
        .chain_update([0])
        .chain_update(instance_id.as_bytes())
        .chain_update([0])
        .chain_update(status.as_bytes())
        .finalize();
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What a store keeps with a command whose `NotificationConfig` names a topic: everything its
/// notices are built from, so a transaction that changes the command's status needs no second
/// read of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    pub command_id: String,
    pub document_name: String,
    pub instance_ids: Vec<String>,
    pub requested_at: Millis,
    pub expires_at: Millis,
    pub output_s3_bucket: String,
    pub output_s3_key_prefix: String,
    pub config: Notification,
}

impl NotifySpec {
    /// `None` when the command names no topic (nothing will ever be announced).
    pub fn of(cmd: &NewCommand) -> Option<NotifySpec> {
        if cmd.echo.notification.arn.is_empty() {
            return None;
        }
        Some(NotifySpec {
            command_id: cmd.id.to_string(),
            document_name: cmd.document_name.clone(),
            instance_ids: cmd.echo.instance_ids.clone(),
            requested_at: cmd.requested_at,
            expires_at: cmd.expires_at,
            output_s3_bucket: cmd.echo.output_s3_bucket_name.clone(),
            output_s3_key_prefix: cmd.echo.output_s3_key_prefix.clone(),
            config: cmd.echo.notification.clone(),
        })
    }

    fn context(&self) -> NoticeContext<'_> {
        NoticeContext {
            command_id: &self.command_id,
            document_name: &self.document_name,
            instance_ids: &self.instance_ids,
            requested_at: self.requested_at,
            expires_at: self.expires_at,
            output_s3_bucket: &self.output_s3_bucket,
            output_s3_key_prefix: &self.output_s3_key_prefix,
            config: &self.config,
        }
    }

    /// The notices a transaction's `effects` produce for this command, in the order the changes
    /// happened (invocations first, then the command's own summary).
    pub fn notices(&self, effects: &Effects, event_time: Millis) -> Vec<Notice> {
        let ctx = self.context();
        let mine = |id: &CommandId| id.as_str() == self.command_id;
        let per_node = effects
            .invocations
            .iter()
            .filter(|c| mine(&c.command_id))
            .filter_map(|c| {
                invocation_notice(&ctx, c.instance_id.as_str(), c.from, c.to, event_time)
            });
        let summary = effects
            .commands
            .iter()
            .filter(|c| mine(&c.command_id))
            .filter_map(|c| command_notice(&ctx, c.from, c.to, event_time));
        per_node.chain(summary).collect()
    }
}

/// ISO-8601 UTC as in AWS's notification samples: milliseconds with trailing zeros dropped.
pub fn sns_time(ms: Millis) -> String {
    let full = crate::clock::iso8601(ms); // …:SS.mmmZ
    let Some(stem) = full.strip_suffix('Z') else {
        return full;
    };
    let trimmed = stem.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str, events: &[&str]) -> Notification {
        Notification {
            arn: "arn:aws:sns:us-east-1:123456789012:ops".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            kind: kind.into(),
        }
    }

    fn ctx<'a>(config: &'a Notification, ids: &'a [String]) -> NoticeContext<'a> {
        NoticeContext {
            command_id: "a8c7e76f-15f1-4c33-9052-0123456789ab",
            document_name: "AWS-RunShellScript",
            instance_ids: ids,
            requested_at: 1_556_215_029_170,
            expires_at: 1_556_219_229_170,
            output_s3_bucket: "",
            output_s3_key_prefix: "",
            config,
        }
    }

    #[test]
    fn timestamps_drop_trailing_zeros_as_in_the_samples() {
        assert_eq!(sns_time(1_556_215_029_170), "2019-04-25T17:57:09.17Z");
        assert_eq!(sns_time(1_556_215_029_236), "2019-04-25T17:57:09.236Z");
        assert_eq!(sns_time(1_556_215_029_000), "2019-04-25T17:57:09Z");
    }

    #[test]
    fn the_summary_has_the_documented_fields_in_order() {
        let cfg = config("Command", &["All"]);
        let ids = vec!["mi-00000000000000001".to_string()];
        let n = command_notice(
            &ctx(&cfg, &ids),
            CommandState::Pending,
            CommandState::InProgress,
            1_556_215_029_236,
        )
        .expect("announced");
        assert_eq!(
            n.body,
            r#"{"commandId":"a8c7e76f-15f1-4c33-9052-0123456789ab","documentName":"AWS-RunShellScript","instanceIds":["mi-00000000000000001"],"requestedDateTime":"2019-04-25T17:57:09.17Z","expiresAfter":"2019-04-25T19:07:09.17Z","outputS3BucketName":"","outputS3KeyPrefix":"","status":"InProgress","eventTime":"2019-04-25T17:57:09.236Z"}"#
        );
        assert_eq!(n.topic_arn, cfg.arn);
        assert_eq!(n.message_id.len(), 36);
    }

    #[test]
    fn an_invocation_message_names_its_node() {
        let cfg = config("Invocation", &["Success", "Failed"]);
        let n = invocation_notice(
            &ctx(&cfg, &[]),
            "mi-00000000000000002",
            InvocationState::InProgress,
            InvocationState::Success,
            1_556_215_030_000,
        )
        .expect("announced");
        assert_eq!(
            n.body,
            r#"{"commandId":"a8c7e76f-15f1-4c33-9052-0123456789ab","documentName":"AWS-RunShellScript","instanceId":"mi-00000000000000002","requestedDateTime":"2019-04-25T17:57:09.17Z","status":"Success","eventTime":"2019-04-25T17:57:10Z"}"#
        );
    }

    #[test]
    fn the_type_and_the_events_filter_choose_what_is_announced() {
        let id = "mi-00000000000000003";
        let inv = |cfg: &Notification, from, to| {
            invocation_notice(&ctx(cfg, &[]), id, from, to, 0).is_some()
        };
        let cmd =
            |cfg: &Notification, from, to| command_notice(&ctx(cfg, &[]), from, to, 0).is_some();
        use CommandState as C;
        use InvocationState as I;
        let per_node = config("Invocation", &["All"]);
        assert!(inv(&per_node, I::Pending, I::InProgress));
        assert!(
            !cmd(&per_node, C::Pending, C::InProgress),
            "one type per command"
        );
        let summary = config("Command", &["All"]);
        assert!(!inv(&summary, I::Pending, I::InProgress));
        assert!(cmd(&summary, C::Pending, C::InProgress));
        // Never announced: Pending, Cancelling, Delayed.
        assert!(!inv(&per_node, I::Delayed, I::Pending));
        assert!(!inv(&per_node, I::InProgress, I::Cancelling));
        assert!(!inv(&per_node, I::Pending, I::Delayed));
        // The filter.
        let failures = config("Invocation", &["Failed", "TimedOut"]);
        assert!(!inv(&failures, I::InProgress, I::Success));
        assert!(inv(&failures, I::InProgress, I::Failed));
        // No topic, no notice; no events listed means all; no type means Command.
        let off = Notification::default();
        assert!(!cmd(&off, C::Pending, C::InProgress));
        let bare = config("", &[]);
        assert!(cmd(&bare, C::Pending, C::InProgress));
        assert!(!inv(&bare, I::Pending, I::InProgress));
    }

    #[test]
    fn a_transactions_effects_become_this_commands_notices() {
        use crate::ids::InstanceId;
        use crate::lifecycle::{CommandChange, InvocationChange};
        let id = CommandId::generate();
        let other = CommandId::generate();
        let node = InstanceId::parse("mi-00000000000000001").expect("id");
        let spec = |kind: &str| NotifySpec {
            command_id: id.to_string(),
            document_name: "AWS-RunShellScript".into(),
            instance_ids: vec![],
            requested_at: 0,
            expires_at: 1,
            output_s3_bucket: String::new(),
            output_s3_key_prefix: String::new(),
            config: config(kind, &["All"]),
        };
        let change = |c: &CommandId, from, to| InvocationChange {
            command_id: c.clone(),
            instance_id: node.clone(),
            from,
            to,
        };
        let effects = Effects {
            wake: vec![],
            invocations: vec![
                change(&id, InvocationState::Pending, InvocationState::InProgress),
                change(
                    &other,
                    InvocationState::Pending,
                    InvocationState::InProgress,
                ),
            ],
            commands: vec![CommandChange {
                command_id: id.clone(),
                from: CommandState::Pending,
                to: CommandState::InProgress,
            }],
        };
        let per_node = spec("Invocation").notices(&effects, 5);
        assert_eq!(per_node.len(), 1, "only this command's invocation");
        assert!(per_node[0]
            .body
            .contains(r#""instanceId":"mi-00000000000000001""#));
        let summary = spec("Command").notices(&effects, 5);
        assert_eq!(summary.len(), 1);
        assert!(summary[0].body.contains(r#""status":"InProgress""#));
    }

    #[test]
    fn message_ids_are_stable_and_differ_per_event() {
        let cfg = config("Invocation", &["All"]);
        let build = |node: &str, to| {
            invocation_notice(&ctx(&cfg, &[]), node, InvocationState::Pending, to, 7)
                .expect("announced")
                .message_id
        };
        let a = build("mi-00000000000000001", InvocationState::InProgress);
        assert_eq!(
            a,
            build("mi-00000000000000001", InvocationState::InProgress)
        );
        assert_ne!(
            a,
            build("mi-00000000000000002", InvocationState::InProgress)
        );
        assert_ne!(a, build("mi-00000000000000001", InvocationState::Success));
    }
}
