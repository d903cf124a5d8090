//! The storage interface. Backends (embedded SQLite today, PostgreSQL for several replicas) implement
//! it; every state change goes through [`crate::status::transition`] inside the backend's transaction,
//! so the domain's rules hold whichever backend runs them.

use async_trait::async_trait;

use crate::access::{AccessKey, AccessKeyStatus};
use crate::clock::Millis;
use crate::command::{
    Claim, Command, Finished, Invocation, ListedCommand, NewCommand, Report, Sent,
};
use crate::documents::{Document, DocumentVersion, NewDocument, NewDocumentVersion};
use crate::error::CoreResult;
use crate::ids::{ActivationId, CommandId, InstanceId};
use crate::lifecycle::Effects;
use crate::node::{Activation, NewActivation, Node, NodeInfo, NodeRegistration, Tag};
use crate::query::{CommandQuery, PageKey};
use crate::resource_groups::ResourceGroup;
use crate::targets::TargetSpec;

/// What happened to a CancelCommand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelOutcome {
    /// Its wake-ups are the nodes whose agents must be told to stop a running script.
    pub effects: Effects,
}

/// What a replica hears from the others on a [`WakeBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// These nodes have news (work released, a cancel to carry, deregistered).
    Nodes(Vec<InstanceId>),
    /// Wake-ups may have been missed (the bus reconnected): every parked poll should look again.
    Everyone,
}

/// Wake-ups between server replicas that share one store (PostgreSQL: LISTEN/NOTIFY), so a
/// command sent through one replica reaches an agent long-polling another within milliseconds.
/// A store that only one process can open has none.
#[async_trait]
pub trait WakeBus: Send + Sync + 'static {
    /// Tells the other replicas that these nodes have news. Called after the change committed.
    async fn publish(&self, nodes: &[InstanceId]) -> CoreResult<()>;
    /// Starts delivering the other replicas' wake-ups to `sink` (from a task of the bus's own),
    /// reconnecting by itself; after any gap it delivers [`Wake::Everyone`].
    fn subscribe(&self, sink: std::sync::Arc<dyn Fn(Wake) + Send + Sync>);
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- server secrets shared by every replica ----
    /// The secret stored under `name`; when there is none yet, `candidate` is stored and returned
    /// (atomically: two replicas starting at once end with the same secret). Keys that sign
    /// NextTokens and node session credentials live here, so any replica accepts another's.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> CoreResult<Vec<u8>>;

    // ---- notification outbox (ARCHITECTURE.md, "Notifications") ----
    // Notices are written by the transitions themselves, in the transaction that changes the
    // status, for every command stored with a `NotifySpec`.
    /// Up to `limit` notices due at `now`, soonest due first, each leased until `now + lease_ms`:
    /// no caller (this server or another on the same store) gets it again before then, so a
    /// deliverer that dies mid-delivery only delays it.
    async fn lease_notices(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<crate::notification::OutboxEntry>>;
    /// Removes a delivered notice (a repeat does nothing).
    async fn notice_delivered(&self, message_id: &str) -> CoreResult<()>;
    /// Makes a notice due again at `at` (a failed delivery's next attempt).
    async fn retry_notice_at(&self, message_id: &str, at: Millis) -> CoreResult<()>;
    /// How many notices wait to be delivered.
    async fn notice_backlog(&self) -> CoreResult<u64>;

    // ---- live output (ARCHITECTURE.md, "Live output") ----
    /// Adds what is new of a shipped piece of a stream (`live_output::place`) and answers how
    /// many bytes of the stream the store holds. The invocation must exist
    /// (`CoreError::NoSuchInvocation`); its status does not matter (output may arrive after the
    /// report). The stream is filed under the command's log group when it has one.
    async fn append_output(
        &self,
        chunk: crate::live_output::NewChunk,
    ) -> CoreResult<crate::live_output::ChunkAck>;
    /// A command's stored chunks with ids above `after`, in id order, at most `limit`; only
    /// `instance`'s when given.
    async fn command_output(
        &self,
        command: &CommandId,
        instance: Option<&InstanceId>,
        after: i64,
        limit: usize,
    ) -> CoreResult<Vec<crate::live_output::CommandChunk>>;
    /// Log groups in name order: names starting with `prefix`, after `after`, at most `limit`.
    async fn log_groups(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<crate::live_output::LogGroup>>;
    /// A page of a group's log streams; `None` when the group does not exist.
    async fn log_streams(
        &self,
        query: crate::live_output::StreamQuery,
    ) -> CoreResult<Option<Vec<crate::live_output::LogStream>>>;
    /// A group's chunks as the query says; `None` when the group does not exist.
    async fn log_chunks(
        &self,
        query: crate::live_output::ChunkQuery,
    ) -> CoreResult<Option<Vec<crate::live_output::LogChunk>>>;

    // ---- S3 output uploads (ARCHITECTURE.md, "S3 output") ----
    // A finish of an invocation whose command names an output bucket queues its upload in the
    // same transaction.
    /// Up to `limit` uploads due at `now`, each leased until `now + lease_ms`.
    async fn lease_uploads(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<crate::s3_output::UploadJob>>;
    /// Removes a finished upload (a repeat does nothing).
    async fn upload_done(&self, command: &CommandId, node: &InstanceId) -> CoreResult<()>;
    /// Makes an upload due again at `at`.
    async fn retry_upload_at(
        &self,
        command: &CommandId,
        node: &InstanceId,
        at: Millis,
    ) -> CoreResult<()>;
    /// How many uploads wait.
    async fn upload_backlog(&self) -> CoreResult<u64>;

    // ---- alarms (ARCHITECTURE.md, "Alarms") ----
    /// PutMetricAlarm: creates the alarm in INSUFFICIENT_DATA, or replaces an existing one's
    /// definition keeping its state.
    async fn put_alarm(&self, def: crate::alarms::AlarmDefinition) -> CoreResult<()>;
    /// Sets an alarm's state; false when there is no such alarm (and `change.create` is not set).
    async fn set_alarm_state(&self, change: crate::alarms::StateChange) -> CoreResult<bool>;
    /// Alarms in name order as the query says.
    async fn alarms(
        &self,
        query: crate::alarms::AlarmQuery,
    ) -> CoreResult<Vec<crate::alarms::Alarm>>;
    /// Unfinished commands that watch an alarm and were not stopped by it yet.
    async fn alarm_watchers(&self) -> CoreResult<Vec<(CommandId, crate::alarms::AlarmWatch)>>;
    /// Stops a command for its alarm (`InvocationEvent::AlarmStopped` on every invocation, the
    /// command cancel-requested, `TriggeredAlarms` recorded, its listing rendering replaced when
    /// given). A command finished or already stopped is left alone.
    async fn stop_for_alarm(
        &self,
        command: &CommandId,
        triggered: crate::alarms::TriggeredAlarm,
        rendered: Option<String>,
    ) -> CoreResult<Effects>;

    // ---- API access keys (SECURITY.md) ----
    /// Stores a new access key; an id already taken is `CoreError::AccessKeyExists`.
    async fn create_access_key(&self, key: AccessKey) -> CoreResult<()>;
    /// Stores `key` only when the store holds no access key at all, atomically: of several
    /// replicas starting at once on an empty store, exactly one creates the first (administrator)
    /// key. False when a key existed already.
    async fn create_first_access_key(&self, key: AccessKey) -> CoreResult<bool>;
    async fn access_key(&self, access_key_id: &str) -> CoreResult<Option<AccessKey>>;
    /// Every key, oldest first.
    async fn access_keys(&self) -> CoreResult<Vec<AccessKey>>;
    /// Sets a key's status; false when there is no such key.
    async fn set_access_key_status(
        &self,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> CoreResult<bool>;
    /// Deletes a key; false when there is no such key.
    async fn delete_access_key(&self, access_key_id: &str) -> CoreResult<bool>;

    // ---- activations and nodes ----
    async fn create_activation(&self, activation: NewActivation) -> CoreResult<()>;
    /// All activations (not deleted), oldest first.
    async fn activations(&self) -> CoreResult<Vec<Activation>>;
    /// Marks an activation deleted; registered nodes stay.
    async fn delete_activation(&self, id: &ActivationId) -> CoreResult<()>;
    /// Registers a node if the code matches and the activation is neither expired, deleted nor used up.
    async fn register_node(&self, registration: NodeRegistration, now: Millis) -> CoreResult<Node>;
    async fn node(&self, id: &InstanceId) -> CoreResult<Option<Node>>;
    /// One page of registered nodes ordered by id (byte order), strictly after `after`, at most
    /// `limit` of them (served by the primary key, so a listing never reads every node).
    async fn nodes_page(&self, after: Option<&InstanceId>, limit: usize) -> CoreResult<Vec<Node>>;
    /// Records a heartbeat and, when given, fresh machine facts; a node that had signed off is
    /// reachable again.
    async fn touch_node(
        &self,
        id: &InstanceId,
        now: Millis,
        info: Option<NodeInfo>,
    ) -> CoreResult<()>;

    // ---- commands ----
    /// Stores the command and one Pending invocation per target in one transaction, and releases
    /// the first invocations of its rollout (see [`crate::rate::Rollout`]).
    async fn insert_command(&self, command: NewCommand) -> CoreResult<Sent>;
    async fn command(&self, id: &CommandId) -> CoreResult<Option<Command>>;
    /// One page of commands matching `query`, newest first, strictly after `after`. Each carries
    /// the rendering it was inserted with, or the whole command when it has none.
    async fn list_commands(
        &self,
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<ListedCommand>>;
    /// One page of invocations matching `query`, newest first, strictly after `after`.
    async fn list_invocations(
        &self,
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<Invocation>>;
    async fn invocation(
        &self,
        command: &CommandId,
        node: &InstanceId,
    ) -> CoreResult<Option<Invocation>>;

    // ---- lifecycle ----
    /// One agent poll: reconciles what the agent says it still holds (`known`), hands out pending work
    /// (Pending → InProgress) and cancellations not yet sent.
    async fn claim(
        &self,
        node: &InstanceId,
        session: &str,
        known: &[CommandId],
        now: Millis,
    ) -> CoreResult<Claim>;
    /// Applies an agent's final report (`applied` false when it was already final: a duplicate),
    /// then moves the command's rollout on or, past MaxErrors, terminates what was never sent.
    async fn finish(&self, node: &InstanceId, report: Report, now: Millis) -> CoreResult<Finished>;
    /// CancelCommand, for all nodes or the given ones.
    async fn cancel(
        &self,
        command: &CommandId,
        nodes: Option<&[InstanceId]>,
        now: Millis,
    ) -> CoreResult<CancelOutcome>;
    /// Turns every invocation of an expired command that is still waiting into DeliveryTimedOut.
    /// Returns the transitions (one per invocation that changed).
    async fn expire_due(&self, now: Millis) -> CoreResult<Effects>;
    /// Deletes commands requested before `before` (retention). Returns how many were removed.
    async fn purge_before(&self, before: Millis) -> CoreResult<usize>;
    /// Released invocations still Pending on unreachable nodes ([`crate::node::Node::reachable`]:
    /// silent since `silent_since`, or signed off) become Delayed (they are delivered when the node
    /// is back). Its effects wake nodes that got work as rollouts moved on.
    async fn mark_unreachable(&self, silent_since: Millis, now: Millis) -> CoreResult<Effects>;
    /// Records that the node's agent stopped cleanly (its goodbye): the node is unreachable from
    /// now until its next poll or heartbeat. Nothing else changes; the caller applies
    /// [`Store::mark_unreachable`] to its work. Unknown node → `UnknownInstance`.
    async fn sign_off_node(&self, node: &InstanceId, now: Millis) -> CoreResult<()>;
    /// Removes a node: its undelivered invocations become Undeliverable, its credentials stop
    /// working. Unknown node → `UnknownInstance`. Its effects wake nodes that got work meanwhile.
    async fn deregister_node(&self, node: &InstanceId, now: Millis) -> CoreResult<Effects>;

    // ---- tags and targets ----
    /// A node's tags, ordered by key. An unregistered node is [`crate::CoreError::UnknownResource`].
    async fn node_tags(&self, node: &InstanceId) -> CoreResult<Vec<Tag>>;
    /// Adds tags to a node, overwriting the values of keys it already has (the last of repeated keys
    /// wins), in one transaction. Refused with [`crate::CoreError::TooManyTags`] when the node would
    /// end with more than [`crate::targets::MAX_TAGS_PER_NODE`] tags and more than it had before.
    async fn add_node_tags(&self, node: &InstanceId, tags: &[Tag]) -> CoreResult<()>;
    /// Removes the given tag keys from a node; keys it does not have are ignored.
    async fn remove_node_tags(&self, node: &InstanceId, keys: &[String]) -> CoreResult<()>;
    /// The registered nodes matching every spec (ANDed; each spec's values ORed), ordered by id.
    /// An empty `specs` matches nothing.
    async fn resolve_targets(&self, specs: &[TargetSpec]) -> CoreResult<Vec<InstanceId>>;

    // ---- resource groups (`crate::resource_groups`) ----
    /// Stores a new group. A name already taken is [`crate::CoreError::GroupExists`].
    async fn create_group(&self, group: &ResourceGroup) -> CoreResult<()>;
    async fn group(&self, name: &str) -> CoreResult<Option<ResourceGroup>>;
    /// Replaces a group's query (as one write) and returns the group as it now is. A group that
    /// does not exist is [`crate::CoreError::UnknownGroup`].
    async fn update_group_query(
        &self,
        name: &str,
        query_type: &str,
        query: &str,
    ) -> CoreResult<ResourceGroup>;
    /// Deletes a group and returns what it was; [`crate::CoreError::UnknownGroup`] when missing.
    async fn delete_group(&self, name: &str) -> CoreResult<ResourceGroup>;
    /// One page of groups ordered by name (byte order), strictly after `after`, at most `limit`.
    async fn groups_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<ResourceGroup>>;

    // ---- documents ----
    /// Creates a document with version 1 (default and latest). `DocumentAlreadyExists` if the name
    /// is taken, `DocumentLimitExceeded` when `max_documents` already exist.
    async fn create_document(&self, doc: NewDocument, max_documents: usize)
        -> CoreResult<Document>;
    /// Appends a version, which becomes the latest (the default does not move). `InvalidDocument` if
    /// the document is missing, `InvalidDocumentVersion` unless `expected_latest` is the latest,
    /// `DuplicateDocumentContent` if the latest has the same hash, `DuplicateDocumentVersionName`,
    /// `DocumentVersionLimitExceeded` at `max_versions`.
    async fn add_document_version(
        &self,
        name: &str,
        expected_latest: u32,
        version: NewDocumentVersion,
        max_versions: u32,
    ) -> CoreResult<Document>;
    async fn document(&self, name: &str) -> CoreResult<Option<Document>>;
    async fn document_version(
        &self,
        name: &str,
        version: u32,
    ) -> CoreResult<Option<DocumentVersion>>;
    /// Every version of a document, oldest first.
    async fn document_versions(&self, name: &str) -> CoreResult<Vec<DocumentVersion>>;
    /// `InvalidDocument` / `InvalidDocumentVersion` when either does not exist.
    async fn set_default_document_version(&self, name: &str, version: u32) -> CoreResult<Document>;
    /// Deletes one version (`Some`) or the whole document (`None`). Deleting the default version of
    /// a document that has others is `InvalidDocumentOperation`; deleting its only version deletes
    /// the document.
    async fn delete_document(&self, name: &str, version: Option<u32>) -> CoreResult<()>;
    /// One page of documents with their default versions, ordered by name (byte order, as Rust
    /// compares strings: ListDocuments merges the built-ins in), strictly after `after`, at most
    /// `limit` of them.
    async fn documents_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<(Document, DocumentVersion)>>;
}
