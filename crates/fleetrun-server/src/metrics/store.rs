//! [`TimedStore`]: a [`Store`] that times every call of the store it wraps, by method, for
//! `fleetrun_store_call_duration_seconds`. Pure delegation (the macro below writes one forwarding
//! method per trait method), so the domain crate knows nothing of metrics and a new `Store`
//! method fails to compile here until it is listed.

use std::sync::Arc;

use async_trait::async_trait;
use fleetrun_core::access::{AccessKey, AccessKeyStatus};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Claim, Command, Finished, Invocation, ListedCommand, NewCommand, Report, Sent,
};
use fleetrun_core::documents::{Document, DocumentVersion, NewDocument, NewDocumentVersion};
use fleetrun_core::error::CoreResult;
use fleetrun_core::ids::{ActivationId, CommandId, InstanceId};
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::node::{Activation, NewActivation, Node, NodeInfo, NodeRegistration, Tag};
use fleetrun_core::query::{CommandQuery, PageKey};
use fleetrun_core::resource_groups::ResourceGroup;
use fleetrun_core::store::CancelOutcome;
use fleetrun_core::targets::TargetSpec;
use fleetrun_core::{alarms, live_output, notification, s3_output, Store};
use tokio::time::Instant;

use super::Metrics;

/// Times each call of `inner` into `metrics`. A call's time is recorded whether it succeeds or
/// fails (a slow failure is as much a symptom), and not when its caller gives up on it.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

/// Writes `impl Store for TimedStore`, each method forwarding to `inner` under a timer.
macro_rules! timed {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for TimedStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    let start = Instant::now();
                    let out = self.inner.$name($($arg),*).await;
                    self.metrics.store_call(stringify!($name), start.elapsed());
                    out
                }
            )*
        }
    };
}

timed! {
    fn shared_secret(name: &str, candidate: &[u8]) -> CoreResult<Vec<u8>>;
    fn lease_notices(
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<notification::OutboxEntry>>;
    fn notice_delivered(message_id: &str) -> CoreResult<()>;
    fn retry_notice_at(message_id: &str, at: Millis) -> CoreResult<()>;
    fn notice_backlog() -> CoreResult<u64>;
    fn append_output(chunk: live_output::NewChunk) -> CoreResult<live_output::ChunkAck>;
    fn command_output(
        command: &CommandId,
        instance: Option<&InstanceId>,
        after: i64,
        limit: usize,
    ) -> CoreResult<Vec<live_output::CommandChunk>>;
    fn log_groups(
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<live_output::LogGroup>>;
    fn log_streams(
        query: live_output::StreamQuery,
    ) -> CoreResult<Option<Vec<live_output::LogStream>>>;
    fn log_chunks(query: live_output::ChunkQuery) -> CoreResult<Option<Vec<live_output::LogChunk>>>;
    fn lease_uploads(
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<s3_output::UploadJob>>;
    fn upload_done(command: &CommandId, node: &InstanceId) -> CoreResult<()>;
    fn retry_upload_at(command: &CommandId, node: &InstanceId, at: Millis) -> CoreResult<()>;
    fn upload_backlog() -> CoreResult<u64>;
    fn put_alarm(def: alarms::AlarmDefinition) -> CoreResult<()>;
    fn set_alarm_state(change: alarms::StateChange) -> CoreResult<bool>;
    fn alarms(query: alarms::AlarmQuery) -> CoreResult<Vec<alarms::Alarm>>;
    fn alarm_watchers() -> CoreResult<Vec<(CommandId, alarms::AlarmWatch)>>;
    fn stop_for_alarm(
        command: &CommandId,
        triggered: alarms::TriggeredAlarm,
        rendered: Option<String>,
    ) -> CoreResult<Effects>;
    fn create_access_key(key: AccessKey) -> CoreResult<()>;
    fn create_first_access_key(key: AccessKey) -> CoreResult<bool>;
    fn access_key(access_key_id: &str) -> CoreResult<Option<AccessKey>>;
    fn access_keys() -> CoreResult<Vec<AccessKey>>;
    fn set_access_key_status(access_key_id: &str, status: AccessKeyStatus) -> CoreResult<bool>;
    fn delete_access_key(access_key_id: &str) -> CoreResult<bool>;
    fn create_activation(activation: NewActivation) -> CoreResult<()>;
    fn activations() -> CoreResult<Vec<Activation>>;
    fn delete_activation(id: &ActivationId) -> CoreResult<()>;
    fn register_node(registration: NodeRegistration, now: Millis) -> CoreResult<Node>;
    fn node(id: &InstanceId) -> CoreResult<Option<Node>>;
    fn nodes_page(after: Option<&InstanceId>, limit: usize) -> CoreResult<Vec<Node>>;
    fn touch_node(id: &InstanceId, now: Millis, info: Option<NodeInfo>) -> CoreResult<()>;
    fn insert_command(command: NewCommand) -> CoreResult<Sent>;
    fn command(id: &CommandId) -> CoreResult<Option<Command>>;
    fn list_commands(
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<ListedCommand>>;
    fn list_invocations(
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<Invocation>>;
    fn invocation(command: &CommandId, node: &InstanceId) -> CoreResult<Option<Invocation>>;
    fn claim(
        node: &InstanceId,
        session: &str,
        known: &[CommandId],
        now: Millis,
    ) -> CoreResult<Claim>;
    fn finish(node: &InstanceId, report: Report, now: Millis) -> CoreResult<Finished>;
    fn cancel(
        command: &CommandId,
        nodes: Option<&[InstanceId]>,
        now: Millis,
    ) -> CoreResult<CancelOutcome>;
    fn expire_due(now: Millis) -> CoreResult<Effects>;
    fn purge_before(before: Millis) -> CoreResult<usize>;
    fn mark_unreachable(silent_since: Millis, now: Millis) -> CoreResult<Effects>;
    fn sign_off_node(node: &InstanceId, now: Millis) -> CoreResult<()>;
    fn deregister_node(node: &InstanceId, now: Millis) -> CoreResult<Effects>;
    fn node_tags(node: &InstanceId) -> CoreResult<Vec<Tag>>;
    fn add_node_tags(node: &InstanceId, tags: &[Tag]) -> CoreResult<()>;
    fn remove_node_tags(node: &InstanceId, keys: &[String]) -> CoreResult<()>;
    fn resolve_targets(specs: &[TargetSpec]) -> CoreResult<Vec<InstanceId>>;
    fn create_group(group: &ResourceGroup) -> CoreResult<()>;
    fn group(name: &str) -> CoreResult<Option<ResourceGroup>>;
    fn update_group_query(name: &str, query_type: &str, query: &str) -> CoreResult<ResourceGroup>;
    fn delete_group(name: &str) -> CoreResult<ResourceGroup>;
    fn groups_page(after: Option<&str>, limit: usize) -> CoreResult<Vec<ResourceGroup>>;
    fn create_document(doc: NewDocument, max_documents: usize) -> CoreResult<Document>;
    fn add_document_version(
        name: &str,
        expected_latest: u32,
        version: NewDocumentVersion,
        max_versions: u32,
    ) -> CoreResult<Document>;
    fn document(name: &str) -> CoreResult<Option<Document>>;
    fn document_version(name: &str, version: u32) -> CoreResult<Option<DocumentVersion>>;
    fn document_versions(name: &str) -> CoreResult<Vec<DocumentVersion>>;
    fn set_default_document_version(name: &str, version: u32) -> CoreResult<Document>;
    fn delete_document(name: &str, version: Option<u32>) -> CoreResult<()>;
    fn documents_page(
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<(Document, DocumentVersion)>>;
}
