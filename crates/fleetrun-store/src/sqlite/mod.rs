//! The embedded SQLite backend: opening the file, the connection pool, shared helpers, and the
//! [`Store`] implementation that routes each operation to its module.
//!
//! One writer connection lives on its own thread and applies queued writes in batches, one commit per
//! batch (see `writer`; SQLite allows one writer at a time anyway). A few read-only connections, each
//! on its own thread, serve queries concurrently thanks to WAL (see `readers`). No SQLite call runs on
//! a runtime thread.
//!
//! Owns: connection setup, error mapping, row-decoding helpers. Does not own: SQL for any operation
//! (see `schema`, `activations`, `commands`, `lifecycle`, `documents`).

mod access_keys;
mod activations;
mod alarms;
mod commands;
mod documents;
mod groups;
mod lifecycle;
mod outbox;
mod output;
mod readers;
mod reply;
mod rollout;
mod schema;
mod tags;
mod uploads;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetrun_core::access::{AccessKey, AccessKeyStatus};
use fleetrun_core::alarms::{
    Alarm, AlarmDefinition, AlarmQuery, AlarmWatch, StateChange, TriggeredAlarm,
};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::{
    Claim, Command, Finished, Invocation, ListedCommand, NewCommand, Report, Sent,
};
use fleetrun_core::documents::{Document, DocumentVersion, NewDocument, NewDocumentVersion};
use fleetrun_core::error::CoreResult;
use fleetrun_core::ids::{ActivationId, CommandId, InstanceId};
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::live_output::{
    ChunkAck, ChunkQuery, CommandChunk, LogChunk, LogGroup, LogStream, NewChunk, StreamQuery,
};
use fleetrun_core::node::{Activation, NewActivation, Node, NodeInfo, NodeRegistration, Tag};
use fleetrun_core::notification::OutboxEntry;
use fleetrun_core::query::{CommandQuery, PageKey};
use fleetrun_core::resource_groups::ResourceGroup;
use fleetrun_core::s3_output::UploadJob;
use fleetrun_core::status::InvocationState;
use fleetrun_core::store::CancelOutcome;
use fleetrun_core::targets::TargetSpec;
use fleetrun_core::{CoreError, Store};
use rusqlite::{Connection, OpenFlags};

/// Read-only connections kept open for queries.
const READERS: usize = 4;
/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements cached per connection (list queries vary with their filters).
const STATEMENT_CACHE: usize = 128;

/// Everything that can go wrong inside the backend; converted to [`CoreError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A domain outcome (unknown command, refused activation, ...) passed through unchanged.
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value that does not decode (never expected; reported instead of panicking).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The file cannot be used as a fleetrun database (wrong journal mode, newer schema, ...).
    #[error("{0}")]
    Unusable(String),
}

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(core) => core,
            other => CoreError::Store(other.to_string()),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

/// The database holds access-key secrets and every command's output: only its owner may read it,
/// whatever the umask. SQLite gives the `-wal` and `-shm` files the database file's mode, so the
/// file is created 0600 before SQLite opens it; existing files are tightened.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| Error::Unusable(format!("{}: {e}", path.display()));
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if let Ok(meta) = std::fs::metadata(file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn command_id(s: &str) -> Result<CommandId> {
    CommandId::parse(s).ok_or_else(|| Error::Corrupt(format!("command id {s:?}")))
}

pub(crate) fn instance_id(s: &str) -> Result<InstanceId> {
    InstanceId::parse(s).ok_or_else(|| Error::Corrupt(format!("instance id {s:?}")))
}

pub(crate) fn invocation_state(s: &str) -> Result<InvocationState> {
    InvocationState::parse(s).ok_or_else(|| Error::Corrupt(format!("invocation state {s:?}")))
}

/// A non-negative count stored as INTEGER.
pub(crate) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct Inner {
    path: PathBuf,
    writer: writer::Writer,
    readers: readers::Readers,
}

/// A [`Store`] in one SQLite file. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unusable(format!(
            "could not switch {} to WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;
         PRAGMA mmap_size = 268435456;",
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// How much of the file a reader maps: SQLite's compile-time ceiling on Linux (`SQLITE_MAX_MMAP_SIZE`,
/// 0x7fff0000; larger requests are clamped to it). Pages inside the map are read in place from the
/// OS page cache, shared by every reader; pages past it are copied by `pread` into each reader's
/// own `cache_size` cache. A million commands make a ~2.8 GB file, so 256 MB left most of a
/// pagination walk on the copying path. The map costs address space, not memory: touched pages
/// show in RSS as file-backed pages the kernel can reclaim.
const READER_MMAP_SIZE: i64 = 0x7fff_0000;

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA query_only = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;",
    )?;
    conn.pragma_update(None, "mmap_size", READER_MMAP_SIZE)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> CoreResult<SqliteStore> {
        Ok(Self::open_inner(path)?)
    }

    fn open_inner(path: &Path) -> Result<SqliteStore> {
        make_private(path)?;
        let mut conn = open_writer(path)?;
        schema::migrate(&mut conn)?;
        let writer = writer::Writer::start(conn).map_err(|e| {
            Error::Unusable(format!("could not start the storage writer thread: {e}"))
        })?;
        let readers = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>>>()?;
        let readers = readers::Readers::start(readers).map_err(|e| {
            Error::Unusable(format!("could not start the storage reader threads: {e}"))
        })?;
        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer,
                readers,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a free read-only connection (or waits for one), blocking the calling thread.
    fn read_blocking<T, F>(&self, f: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.readers.read_blocking(f)
    }

    async fn write<T, F>(&self, f: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    async fn read<T, F>(&self, f: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.readers.read(f).await
    }

    /// Seeds many commands in one transaction (benchmarks, imports). Blocking: call it outside the
    /// async runtime or from `spawn_blocking`. Each command's invocations all start in the given state
    /// (`None` = Pending), and its counts and status are derived from that as usual.
    pub fn insert_commands_bulk(
        &self,
        cmds: Vec<(NewCommand, Option<InvocationState>)>,
    ) -> CoreResult<()> {
        self.inner
            .writer
            .write_blocking(move |c| commands::insert_bulk(c, cmds))
    }

    /// `EXPLAIN QUERY PLAN` of the first-page SQL that [`Store::list_commands`] runs for `q`.
    pub fn explain_list_commands(&self, q: &CommandQuery) -> CoreResult<String> {
        self.explain_list_commands_after(q, None)
    }

    /// `EXPLAIN QUERY PLAN` of the list_commands SQL for the page after `after`.
    pub fn explain_list_commands_after(
        &self,
        q: &CommandQuery,
        after: Option<&PageKey>,
    ) -> CoreResult<String> {
        let built = commands::list_commands_sql(q, after, 50);
        self.read_blocking(move |c| commands::explain(c, &built))
    }

    /// `EXPLAIN QUERY PLAN` of the list_invocations SQL for `q` after `after`.
    pub fn explain_list_invocations(
        &self,
        q: &CommandQuery,
        after: Option<&PageKey>,
    ) -> CoreResult<String> {
        let built = commands::list_invocations_sql(q, after, 50);
        self.read_blocking(move |c| commands::explain(c, &built))
    }

    /// `EXPLAIN QUERY PLAN` of the SQL that [`Store::nodes_page`] runs after `after`.
    pub fn explain_nodes_page(&self, after: Option<&InstanceId>) -> CoreResult<String> {
        let built = activations::nodes_page_sql(after, 51);
        self.read_blocking(move |c| commands::explain(c, &built))
    }

    /// `EXPLAIN QUERY PLAN` of the SQL that [`Store::documents_page`] runs after `after`.
    pub fn explain_documents_page(&self, after: Option<&str>) -> CoreResult<String> {
        let built = documents::page_sql(after, 51);
        self.read_blocking(move |c| commands::explain(c, &built))
    }

    /// `EXPLAIN QUERY PLAN` of the SQL that [`Store::resolve_targets`] runs for `specs`.
    pub fn explain_resolve_targets(&self, specs: &[TargetSpec]) -> CoreResult<String> {
        let specs = specs.to_vec();
        self.read_blocking(move |c| tags::explain(c, &specs))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> CoreResult<Vec<u8>> {
        let (name, candidate) = (name.to_owned(), candidate.to_vec());
        self.write(move |c| access_keys::shared_secret(c, &name, &candidate))
            .await
    }

    async fn lease_notices(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<OutboxEntry>> {
        self.write(move |c| outbox::lease(c, now, lease_ms, limit))
            .await
    }

    async fn notice_delivered(&self, message_id: &str) -> CoreResult<()> {
        let id = message_id.to_owned();
        self.write(move |c| outbox::delivered(c, &id)).await
    }

    async fn retry_notice_at(&self, message_id: &str, at: Millis) -> CoreResult<()> {
        let id = message_id.to_owned();
        self.write(move |c| outbox::retry_at(c, &id, at)).await
    }

    async fn notice_backlog(&self) -> CoreResult<u64> {
        self.read(outbox::backlog).await
    }

    async fn append_output(&self, chunk: NewChunk) -> CoreResult<ChunkAck> {
        self.write(move |c| output::append(c, &chunk)).await
    }

    async fn command_output(
        &self,
        command: &CommandId,
        instance: Option<&InstanceId>,
        after: i64,
        limit: usize,
    ) -> CoreResult<Vec<CommandChunk>> {
        let command = command.clone();
        let instance = instance.map(|i| i.as_str().to_owned());
        self.read(move |c| output::command_chunks(c, &command, instance.as_deref(), after, limit))
            .await
    }

    async fn log_groups(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<LogGroup>> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        self.read(move |c| output::log_groups(c, &prefix, after.as_deref(), limit))
            .await
    }

    async fn log_streams(&self, query: StreamQuery) -> CoreResult<Option<Vec<LogStream>>> {
        self.read(move |c| output::log_streams(c, &query)).await
    }

    async fn log_chunks(&self, query: ChunkQuery) -> CoreResult<Option<Vec<LogChunk>>> {
        self.read(move |c| output::log_chunks(c, &query)).await
    }

    async fn lease_uploads(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<UploadJob>> {
        self.write(move |c| uploads::lease(c, now, lease_ms, limit))
            .await
    }

    async fn upload_done(&self, command: &CommandId, node: &InstanceId) -> CoreResult<()> {
        let (command, node) = (command.clone(), node.clone());
        self.write(move |c| uploads::done(c, &command, &node)).await
    }

    async fn retry_upload_at(
        &self,
        command: &CommandId,
        node: &InstanceId,
        at: Millis,
    ) -> CoreResult<()> {
        let (command, node) = (command.clone(), node.clone());
        self.write(move |c| uploads::retry_at(c, &command, &node, at))
            .await
    }

    async fn upload_backlog(&self) -> CoreResult<u64> {
        self.read(uploads::backlog).await
    }

    async fn put_alarm(&self, def: AlarmDefinition) -> CoreResult<()> {
        self.write(move |c| alarms::put(c, &def)).await
    }

    async fn set_alarm_state(&self, change: StateChange) -> CoreResult<bool> {
        self.write(move |c| alarms::set_state(c, &change)).await
    }

    async fn alarms(&self, query: AlarmQuery) -> CoreResult<Vec<Alarm>> {
        self.read(move |c| alarms::query(c, &query)).await
    }

    async fn alarm_watchers(&self) -> CoreResult<Vec<(CommandId, AlarmWatch)>> {
        self.read(alarms::watching).await
    }

    async fn stop_for_alarm(
        &self,
        command: &CommandId,
        triggered: TriggeredAlarm,
        rendered: Option<String>,
    ) -> CoreResult<Effects> {
        let command = command.clone();
        self.write(move |c| alarms::stop(c, &command, &triggered, rendered.as_deref()))
            .await
    }

    async fn create_access_key(&self, key: AccessKey) -> CoreResult<()> {
        self.write(move |c| access_keys::create(c, &key)).await
    }

    async fn create_first_access_key(&self, key: AccessKey) -> CoreResult<bool> {
        self.write(move |c| access_keys::create_first(c, &key))
            .await
    }

    async fn access_key(&self, access_key_id: &str) -> CoreResult<Option<AccessKey>> {
        let id = access_key_id.to_owned();
        self.read(move |c| access_keys::get(c, &id)).await
    }

    async fn access_keys(&self) -> CoreResult<Vec<AccessKey>> {
        self.read(access_keys::list).await
    }

    async fn set_access_key_status(
        &self,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> CoreResult<bool> {
        let id = access_key_id.to_owned();
        self.write(move |c| access_keys::set_status(c, &id, status))
            .await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> CoreResult<bool> {
        let id = access_key_id.to_owned();
        self.write(move |c| access_keys::delete(c, &id)).await
    }

    async fn create_activation(&self, activation: NewActivation) -> CoreResult<()> {
        self.write(move |c| activations::create(c, &activation))
            .await
    }

    async fn activations(&self) -> CoreResult<Vec<Activation>> {
        self.read(activations::list).await
    }

    async fn delete_activation(&self, id: &ActivationId) -> CoreResult<()> {
        let id = id.clone();
        self.write(move |c| activations::delete(c, &id)).await
    }

    async fn register_node(&self, registration: NodeRegistration, now: Millis) -> CoreResult<Node> {
        self.write(move |c| activations::register(c, registration, now))
            .await
    }

    async fn node(&self, id: &InstanceId) -> CoreResult<Option<Node>> {
        let id = id.clone();
        self.read(move |c| activations::node(c, &id)).await
    }

    async fn nodes_page(&self, after: Option<&InstanceId>, limit: usize) -> CoreResult<Vec<Node>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let built = activations::nodes_page_sql(after, limit);
        self.read(move |c| activations::nodes_page(c, &built)).await
    }

    async fn touch_node(
        &self,
        id: &InstanceId,
        now: Millis,
        info: Option<NodeInfo>,
    ) -> CoreResult<()> {
        let id = id.clone();
        self.write(move |c| activations::touch(c, &id, now, info.as_ref()))
            .await
    }

    async fn insert_command(&self, command: NewCommand) -> CoreResult<Sent> {
        let (command, effects) = self.write(move |c| commands::insert(c, command)).await?;
        Ok(Sent { command, effects })
    }

    async fn command(&self, id: &CommandId) -> CoreResult<Option<Command>> {
        let id = id.clone();
        self.read(move |c| commands::get(c, &id)).await
    }

    async fn list_commands(
        &self,
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<ListedCommand>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let built = commands::list_commands_sql(query, after, limit);
        self.read(move |c| commands::list_commands(c, &built)).await
    }

    async fn list_invocations(
        &self,
        query: &CommandQuery,
        after: Option<&PageKey>,
        limit: usize,
    ) -> CoreResult<Vec<Invocation>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let built = commands::list_invocations_sql(query, after, limit);
        self.read(move |c| commands::list_invocations(c, &built))
            .await
    }

    async fn invocation(
        &self,
        command: &CommandId,
        node: &InstanceId,
    ) -> CoreResult<Option<Invocation>> {
        let (command, node) = (command.clone(), node.clone());
        self.read(move |c| commands::get_invocation(c, &command, &node))
            .await
    }

    async fn claim(
        &self,
        node: &InstanceId,
        session: &str,
        known: &[CommandId],
        now: Millis,
    ) -> CoreResult<Claim> {
        // Most polls find nothing to do: answer those from a reader, without queueing on the writer.
        let probe = node.clone();
        if self
            .read(move |c| lifecycle::idle_poll(c, &probe, now))
            .await?
        {
            return Ok(Claim::default());
        }
        let (node, session, known) = (node.clone(), session.to_string(), known.to_vec());
        self.write(move |c| lifecycle::claim(c, &node, &session, &known, now))
            .await
    }

    async fn finish(&self, node: &InstanceId, report: Report, now: Millis) -> CoreResult<Finished> {
        let node = node.clone();
        self.write(move |c| lifecycle::finish(c, &node, &report, now))
            .await
    }

    async fn cancel(
        &self,
        command: &CommandId,
        nodes: Option<&[InstanceId]>,
        now: Millis,
    ) -> CoreResult<CancelOutcome> {
        let command = command.clone();
        let nodes = nodes.map(<[InstanceId]>::to_vec);
        self.write(move |c| lifecycle::cancel(c, &command, nodes.as_deref(), now))
            .await
    }

    async fn expire_due(&self, now: Millis) -> CoreResult<Effects> {
        self.write(move |c| lifecycle::expire_due(c, now)).await
    }

    async fn purge_before(&self, before: Millis) -> CoreResult<usize> {
        self.write(move |c| lifecycle::purge_before(c, before))
            .await
    }

    async fn mark_unreachable(&self, silent_since: Millis, _now: Millis) -> CoreResult<Effects> {
        self.write(move |c| rollout::mark_unreachable(c, silent_since))
            .await
    }

    async fn sign_off_node(&self, node: &InstanceId, now: Millis) -> CoreResult<()> {
        let node = node.clone();
        self.write(move |c| activations::sign_off(c, &node, now))
            .await
    }

    async fn deregister_node(&self, node: &InstanceId, _now: Millis) -> CoreResult<Effects> {
        let node = node.clone();
        self.write(move |c| rollout::deregister(c, &node)).await
    }

    async fn node_tags(&self, node: &InstanceId) -> CoreResult<Vec<Tag>> {
        let node = node.clone();
        self.read(move |c| tags::list(c, &node)).await
    }

    async fn add_node_tags(&self, node: &InstanceId, tags: &[Tag]) -> CoreResult<()> {
        let (node, new_tags) = (node.clone(), tags.to_vec());
        self.write(move |c| tags::add(c, &node, &new_tags)).await
    }

    async fn remove_node_tags(&self, node: &InstanceId, keys: &[String]) -> CoreResult<()> {
        let (node, keys) = (node.clone(), keys.to_vec());
        self.write(move |c| tags::remove(c, &node, &keys)).await
    }

    async fn resolve_targets(&self, specs: &[TargetSpec]) -> CoreResult<Vec<InstanceId>> {
        let specs = specs.to_vec();
        self.read(move |c| tags::resolve(c, &specs)).await
    }

    async fn create_group(&self, group: &ResourceGroup) -> CoreResult<()> {
        let group = group.clone();
        self.write(move |c| groups::create(c, &group)).await
    }

    async fn group(&self, name: &str) -> CoreResult<Option<ResourceGroup>> {
        let name = name.to_string();
        self.read(move |c| groups::get(c, &name)).await
    }

    async fn update_group_query(
        &self,
        name: &str,
        query_type: &str,
        query: &str,
    ) -> CoreResult<ResourceGroup> {
        let (name, query_type, query) =
            (name.to_string(), query_type.to_string(), query.to_string());
        self.write(move |c| groups::update_query(c, &name, &query_type, &query))
            .await
    }

    async fn delete_group(&self, name: &str) -> CoreResult<ResourceGroup> {
        let name = name.to_string();
        self.write(move |c| groups::delete(c, &name)).await
    }

    async fn groups_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<ResourceGroup>> {
        let after = after.map(str::to_string);
        self.read(move |c| groups::page(c, after.as_deref(), limit))
            .await
    }

    async fn create_document(
        &self,
        doc: NewDocument,
        max_documents: usize,
    ) -> CoreResult<Document> {
        self.write(move |c| documents::create(c, &doc, max_documents))
            .await
    }

    async fn add_document_version(
        &self,
        name: &str,
        expected_latest: u32,
        version: NewDocumentVersion,
        max_versions: u32,
    ) -> CoreResult<Document> {
        let name = name.to_string();
        self.write(move |c| {
            documents::add_version(c, &name, expected_latest, &version, max_versions)
        })
        .await
    }

    async fn document(&self, name: &str) -> CoreResult<Option<Document>> {
        let name = name.to_string();
        self.read(move |c| documents::document(c, &name)).await
    }

    async fn document_version(
        &self,
        name: &str,
        version: u32,
    ) -> CoreResult<Option<DocumentVersion>> {
        let name = name.to_string();
        self.read(move |c| documents::version(c, &name, version))
            .await
    }

    async fn document_versions(&self, name: &str) -> CoreResult<Vec<DocumentVersion>> {
        let name = name.to_string();
        self.read(move |c| documents::versions(c, &name)).await
    }

    async fn set_default_document_version(&self, name: &str, version: u32) -> CoreResult<Document> {
        let name = name.to_string();
        self.write(move |c| documents::set_default(c, &name, version))
            .await
    }

    async fn delete_document(&self, name: &str, version: Option<u32>) -> CoreResult<()> {
        let name = name.to_string();
        self.write(move |c| documents::delete(c, &name, version))
            .await
    }

    async fn documents_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<(Document, DocumentVersion)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let built = documents::page_sql(after, limit);
        self.read(move |c| documents::page(c, &built)).await
    }
}
