//! SendCommand: validate every member, resolve the document (checking `DocumentHash` and the 64 KB
//! limit on content plus parameter values) and the targets (checking named nodes' platforms), store
//! the command with one Pending invocation per node in one transaction, then wake the nodes' long polls.

use fleetrun_core::alarms::AlarmWatch;
use fleetrun_core::clock::now_millis;
use fleetrun_core::command::{CloudWatchOutput, CommandEcho, NewCommand, Notification};
use fleetrun_core::document;
use fleetrun_core::documents::{check_command_size, verify_document_hash};
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::rate::{Limit, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_ERRORS};
use fleetrun_core::status::InvocationState;
use fleetrun_policy::resource_tag_context;
use fleetrun_wire::ssm::{SendCommandRequest, SendCommandResult};
use fleetrun_wire::validate::Violations;

use super::validate::finish;
use crate::audit::audit;
use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
const DOCUMENT_ARN_PATTERN: &str = "^[a-zA-Z0-9_\\-.:/]{3,128}$";
const DOCUMENT_VERSION_PATTERN: &str = "([$]LATEST|[$]DEFAULT|^[1-9][0-9]*$)";
const MAX_CONCURRENCY_PATTERN: &str = "^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$";
const MAX_ERRORS_PATTERN: &str = "^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$";
const NOTIFICATION_EVENTS: [&str; 6] = [
    "All",
    "InProgress",
    "Success",
    "TimedOut",
    "Cancelled",
    "Failed",
];

fn document_arn_ok(s: &str) -> bool {
    (3..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
}

pub fn document_version_ok(s: &str) -> bool {
    s == "$LATEST"
        || s == "$DEFAULT"
        || (!s.is_empty() && !s.starts_with('0') && s.chars().all(|c| c.is_ascii_digit()))
}

/// `^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$`, or with `allow_zero` the MaxErrors variant.
fn limit_ok(s: &str, allow_zero: bool) -> bool {
    let (num, pct) = match s.strip_suffix('%') {
        Some(n) => (n, true),
        None => (s, false),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    if num == "0" {
        return allow_zero;
    }
    if num.starts_with('0') {
        return false;
    }
    !pct || num.len() <= 2 || num == "100"
}

fn validate_scalars(v: &mut Violations, req: &SendCommandRequest) {
    match req.document_name.as_deref() {
        None => v.required("DocumentName", false),
        Some(name) => v.pattern(
            "DocumentName",
            name,
            document_arn_ok(name),
            DOCUMENT_ARN_PATTERN,
        ),
    }
    if let Some(ver) = req.document_version.as_deref() {
        v.pattern(
            "DocumentVersion",
            ver,
            document_version_ok(ver),
            DOCUMENT_VERSION_PATTERN,
        );
    }
    if let Some(h) = req.document_hash.as_deref() {
        v.length("DocumentHash", h, 0, Some(256));
    }
    if let Some(t) = req.document_hash_type.as_deref() {
        v.one_of("DocumentHashType", t, &["Sha256", "Sha1"]);
    }
    if let Some(t) = req.timeout_seconds {
        v.range("TimeoutSeconds", t, 30, 2_592_000);
    }
    if let Some(c) = req.comment.as_deref() {
        v.length("Comment", c, 0, Some(100));
    }
    if let Some(s) = req.output_s3_region.as_deref() {
        v.length("OutputS3Region", s, 3, Some(20));
    }
    if let Some(s) = req.output_s3_bucket_name.as_deref() {
        v.length("OutputS3BucketName", s, 3, Some(63));
    }
    if let Some(s) = req.output_s3_key_prefix.as_deref() {
        v.length("OutputS3KeyPrefix", s, 0, Some(500));
    }
    if let Some(s) = req.max_concurrency.as_deref() {
        v.length("MaxConcurrency", s, 1, Some(7));
        v.pattern(
            "MaxConcurrency",
            s,
            limit_ok(s, false),
            MAX_CONCURRENCY_PATTERN,
        );
    }
    if let Some(s) = req.max_errors.as_deref() {
        v.length("MaxErrors", s, 1, Some(7));
        v.pattern("MaxErrors", s, limit_ok(s, true), MAX_ERRORS_PATTERN);
    }
    if let Some(n) = &req.notification_config {
        for e in n.notification_events.as_deref().unwrap_or_default() {
            v.one_of(
                "NotificationConfig.NotificationEvents.member",
                e,
                &NOTIFICATION_EVENTS,
            );
        }
        if let Some(t) = n.notification_type.as_deref() {
            v.one_of(
                "NotificationConfig.NotificationType",
                t,
                &["Command", "Invocation"],
            );
        }
    }
    if let Some(name) = req
        .cloud_watch_output_config
        .as_ref()
        .and_then(|c| c.cloud_watch_log_group_name.as_deref())
    {
        v.length(
            "CloudWatchOutputConfig.CloudWatchLogGroupName",
            name,
            1,
            Some(512),
        );
    }
}

/// Checks the caller may run the command on each node (`ssm:SendCommand` on the node's ARN, with
/// its tags as `ssm:resourceTag/…`). Nodes named in `InstanceIds` refuse the whole call with
/// AccessDeniedException; nodes found through `Targets` are returned, to end `AccessDenied`.
async fn denied_nodes(
    st: &AppState,
    caller: &Caller,
    targets: &[InstanceId],
    named: bool,
) -> ApiResult<Vec<InstanceId>> {
    let region = &st.config.region;
    let with_tags = caller.needs_resource_tags();
    let mut denied = Vec::new();
    for node in targets {
        let context = if with_tags {
            let tags = st.store.node_tags(node).await?;
            resource_tag_context(tags.iter().map(|t| (&t.key, &t.value)))
        } else {
            Vec::new()
        };
        let resource = super::authorize::node_resource(region, node.as_str());
        if named {
            caller.authorize("ssm:SendCommand", &resource, &context)?;
        } else if !caller
            .decide("ssm:SendCommand", &resource, &context)
            .is_allowed()
        {
            denied.push(node.clone());
        }
    }
    Ok(denied)
}

pub async fn send_command(
    st: AppState,
    caller: Caller,
    req: SendCommandRequest,
) -> ApiResult<SendCommandResult> {
    let mut v = Violations::new();
    validate_scalars(&mut v, &req);
    super::targets::check(&mut v, &req);
    finish(v)?;
    let (targeting, echo_ids, echo_targets) = super::targets::interpret(&req)?;
    if let Some(arn) = req
        .notification_config
        .as_ref()
        .and_then(|n| n.notification_arn.as_deref())
        .filter(|a| !a.is_empty())
    {
        if !st.config.webhooks.iter().any(|w| w.topic_arn == arn) {
            return Err(ApiError::InvalidNotificationConfig {
                topic_arn: arn.to_string(),
            });
        }
    }

    if let Some(bucket) = req
        .output_s3_bucket_name
        .as_deref()
        .filter(|b| !b.is_empty())
    {
        crate::s3_output::check_bucket(&st, bucket).await?;
    }

    let name = req.document_name.clone().unwrap_or_default();
    let version = req.document_version.clone().unwrap_or_default();
    let loaded = super::documents::resolve(&st, &name, &version).await?;
    // An empty hash is no hash (the model allows length 0; AWS echoes unset strings as "").
    if let Some(hash) = req.document_hash.as_deref().filter(|h| !h.is_empty()) {
        verify_document_hash(&loaded.ver.hash, hash, req.document_hash_type.as_deref())?;
    }
    let parameters = req.parameters.clone().unwrap_or_default();
    check_command_size(&loaded.ver.content, &parameters)?;
    let plan = document::plan(&loaded.spec, &parameters)?;

    // The PlatformTypes DescribeDocument reports for this version.
    let named = matches!(targeting, super::targets::Targeting::Ids(_));
    let targets = super::targets::resolve(&st, targeting, &loaded.ver.platform_types).await?;
    let access_denied = denied_nodes(&st, &caller, &targets, named).await?;
    let doc = loaded.spec;

    let timeout_seconds = req.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS) as u32;
    let max_concurrency = req
        .max_concurrency
        .clone()
        .unwrap_or_else(|| DEFAULT_MAX_CONCURRENCY.into());
    let max_errors = req
        .max_errors
        .clone()
        .unwrap_or_else(|| DEFAULT_MAX_ERRORS.into());
    let error_budget = Limit::parse(&max_errors)
        .map(|l| l.error_budget(targets.len() as u32))
        .unwrap_or(0);
    let requested_at = now_millis();
    let expires_at = requested_at
        + (i64::from(timeout_seconds) + plan.execution_timeout_seconds() as i64) * 1000;
    let notification = req.notification_config.clone().unwrap_or_default();
    let cloudwatch = req.cloud_watch_output_config.clone().unwrap_or_default();
    let mut new = NewCommand {
        id: CommandId::generate(),
        requested_at,
        expires_at,
        document_name: doc.name.clone(),
        document_version: version,
        comment: req.comment.clone().unwrap_or_default(),
        timeout_seconds,
        max_concurrency,
        max_errors,
        error_budget,
        echo: CommandEcho {
            parameters,
            instance_ids: echo_ids,
            targets: echo_targets,
            output_s3_region: req.output_s3_region.clone().unwrap_or_default(),
            output_s3_bucket_name: req.output_s3_bucket_name.clone().unwrap_or_default(),
            output_s3_key_prefix: req.output_s3_key_prefix.clone().unwrap_or_default(),
            service_role: req.service_role_arn.clone().unwrap_or_default(),
            notification: Notification {
                arn: notification.notification_arn.unwrap_or_default(),
                events: notification.notification_events.unwrap_or_default(),
                kind: notification.notification_type.unwrap_or_default(),
            },
            cloudwatch: CloudWatchOutput {
                log_group_name: cloudwatch.cloud_watch_log_group_name.unwrap_or_default(),
                enabled: cloudwatch.cloud_watch_output_enabled.unwrap_or(false),
            },
            alarm_configuration: req.alarm_configuration.clone(),
        },
        plan,
        targets: targets.clone(),
        rendered: None,
        access_denied,
    };
    new.rendered = Some(convert::rendering(&new).map_err(|e| ApiError::Internal(e.to_string()))?);
    let denied = new.access_denied.len();
    let sent = st.store.insert_command(new).await?;
    // Created Pending (not a transition, so not in the effects): counted here, once per invocation.
    st.metrics
        .invocations_entered(InvocationState::Pending, targets.len() as u64);
    let mut command = sent.command;
    // An alarm in ALARM now stops the command before its first node is woken for it.
    if let Some(watch) = AlarmWatch::of(command.echo.alarm_configuration.as_ref()) {
        if crate::alarms::check_command(&st, &command.id, &watch).await? {
            if let Some(stopped) = st.store.command(&command.id).await? {
                command = stopped;
            }
        }
    }
    st.apply(&sent.effects);
    // `targets`: the nodes resolved (TargetCount); `access_denied`: those of them the caller may not
    // touch, whose invocations end AccessDenied.
    audit!(caller, "SendCommand", command_id = %command.id, document = %command.document_name, targets = targets.len(), access_denied = denied, "command sent");
    Ok(SendCommandResult {
        command: convert::command(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_patterns() {
        for ok in ["1", "50", "10%", "1%", "100%", "1000000"] {
            assert!(limit_ok(ok, false), "{ok}");
        }
        for bad in ["0", "0%", "101%", "05", "x", "", "%", "1000%"] {
            assert!(!limit_ok(bad, false), "{bad}");
        }
        assert!(limit_ok("0", true));
        assert!(limit_ok("0%", true));
        assert!(limit_ok("5%", true));
    }

    #[test]
    fn document_patterns() {
        assert!(document_arn_ok("AWS-RunShellScript"));
        assert!(document_arn_ok(
            "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
        ));
        assert!(!document_arn_ok("ab"));
        assert!(!document_arn_ok("bad name"));
        assert!(document_version_ok("$LATEST") && document_version_ok("12"));
        assert!(
            !document_version_ok("0")
                && !document_version_ok("01")
                && !document_version_ok("latest")
        );
    }
}
