//! The PostgreSQL backend: the connection pool, error mapping, the transaction-and-retry helper,
//! row-decoding helpers, and the [`Store`] implementation that routes each operation to its module.
//!
//! Several fleetrun servers may share one database, so every write runs in a READ COMMITTED
//! transaction that locks what it decides on: a command's row (`SELECT ... FOR UPDATE`, in seq
//! order) before any of its invocations is read for a change, and each state change is a
//! compare-and-set. A transaction that loses a deadlock or a serialization check (SQLSTATE 40P01,
//! 40001) is retried whole (see [`PostgresStore::retrying`]).
//!
//! Owns: pool setup and timeouts, error mapping, decoding helpers. Does not own: SQL for any
//! operation (see `schema`, `access_keys`, `activations`, `commands`, `lifecycle`, `rollout`,
//! `tags`, `documents`).

mod access_keys;
mod activations;
mod alarms;
mod commands;
mod db;
mod documents;
mod groups;
mod lifecycle;
mod listing;
mod outbox;
mod output;
mod polls;
mod rollout;
mod schema;
mod tags;
mod temp;
mod tls;
mod transitions;
mod uploads;
mod wake;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
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
use tokio_postgres::NoTls;

pub use temp::TempDatabase;
pub use wake::PgWakeBus;

pub(crate) use db::{
    col, col_u32, command_id, describe, execute, explain_built, explain_listing, instance_id,
    invocation_state, query, query_built, query_listing, query_one, query_opt, to_i64, Error,
    Param, Result,
};

/// How many times a transaction that lost a deadlock or serialization check is run again.
const MAX_RETRIES: u32 = 8;

/// Pool size and timeouts of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections kept open at most (each is one PostgreSQL backend process).
    pub max_size: usize,
    /// Limit on establishing one connection (TCP connect, startup, authentication), and on waiting
    /// for a free pooled connection. A server that cannot be reached is an error after this long,
    /// never a hang.
    pub connect_timeout: Duration,
    /// `statement_timeout` of every session: a statement (lock waits included) running longer is
    /// cancelled by the server.
    pub statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout`: a session that holds a transaction open without
    /// running anything (a server that died mid-transaction behind a stuck socket) is ended, so its
    /// row locks do not block the other servers for long.
    pub idle_in_transaction_timeout: Duration,
    /// How long a connection whose server went silent (host gone, network cut) may go
    /// unnoticed: TCP keepalives start after this much idle time, and sent data not acknowledged
    /// for this long ends the connection (`TCP_USER_TIMEOUT`). Without it a query on such a
    /// connection waits for the kernel's retransmissions, many minutes.
    pub dead_connection_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
            dead_connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs `$body` (an expression using the transaction `$tx`) in one READ COMMITTED transaction
/// and commits it; the whole transaction is run again when it loses a deadlock or serialization
/// check. Every value the body uses must be a reference or `Copy`: each attempt starts afresh.
macro_rules! in_transaction {
    ($store:expr, $op:literal, |$tx:ident| $body:expr) => {
        $store.retrying($op, || async move {
            let mut client = $store.client().await?;
            let $tx = client.transaction().await?;
            let out = $body.await?;
            $tx.commit().await?;
            Ok(out)
        })
    };
}

/// Runs `$body` (an expression using the pooled connection `$c`) outside a transaction.
macro_rules! on_connection {
    ($store:expr, $op:literal, |$c:ident| $body:expr) => {
        $store.call($op, async {
            let $c = $store.client().await?;
            $body.await
        })
    };
}

// After the macros above, which it uses.
mod batcher;

struct Inner {
    pool: Pool,
    /// Claims and finishes, gathered into batches (`batcher`, `polls`).
    batcher: batcher::Batcher,
    /// How many batches ran and how many jobs they held.
    batched: batcher::BatchCounts,
    /// The parsed URL and its TLS connector, for the wake bus's own listening connection.
    config: tokio_postgres::Config,
    connector: tls::Connector,
    /// `host:port/dbname`, for messages (never the user or password).
    target: String,
}

/// A [`Store`] in a PostgreSQL database. Cheap to clone; clones share the pool. Any number of
/// stores (in any number of processes) may use the same database at once.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// `host:port/dbname` of a parsed configuration.
fn target_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    format!("{hosts}/{}", config.get_dbname().unwrap_or("(user's)"))
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/dbname?...` or libpq's
    /// `key=value` form) with [`PoolOptions::default`] and brings its schema up to date.
    pub async fn connect(url: &str) -> CoreResult<PostgresStore> {
        Self::connect_with(url, PoolOptions::default()).await
    }

    /// [`PostgresStore::connect`] with explicit pool size and timeouts.
    pub async fn connect_with(url: &str, options: PoolOptions) -> CoreResult<PostgresStore> {
        // The URL may carry a password: no message below quotes it, and the parser's own errors
        // name only the offending option.
        let (url, url_tls) = tls::split_tls_settings(url)?;
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            CoreError::Store(format!("postgres: invalid database URL: {}", describe(&e)))
        })?;
        let target = target_of(&config);
        let connector = url_tls.connector(config.get_ssl_mode())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // Settings the URL gives win; the driver's keepalive default (2 h idle) is no setting.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(options.dead_connection_timeout);
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(options.dead_connection_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("fleetrun");
        }
        // Ours first, so that options given in the URL win.
        let mut session = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            options.statement_timeout.as_millis(),
            options.idle_in_transaction_timeout.as_millis()
        );
        if let Some(theirs) = config.get_options() {
            session.push(' ');
            session.push_str(theirs);
        }
        config.options(session);
        // libpq's convention, so that the password need not be in the URL (nor the command line).
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &connector {
            tls::Connector::Plain => Manager::from_config(config.clone(), NoTls, manager_config()),
            tls::Connector::Tls(rustls) => {
                Manager::from_config(config.clone(), rustls.clone(), manager_config())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(options.max_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| CoreError::Store(format!("postgres {target}: connection pool: {e}")))?;
        let store = PostgresStore {
            inner: Arc::new_cyclic(|inner| Inner {
                pool,
                batcher: batcher::Batcher::start(inner.clone()),
                batched: batcher::BatchCounts::default(),
                config,
                connector,
                target,
            }),
        };
        store
            .call("connect", async {
                let mut client = store.client().await?;
                schema::migrate(&mut client).await
            })
            .await?;
        let tls = store.uses_tls().await?;
        tracing::info!(target = %store.inner.target, tls, "connected to the PostgreSQL store");
        Ok(store)
    }

    /// Whether this store's connections are encrypted (asked of the server, `pg_stat_ssl`).
    pub async fn uses_tls(&self) -> CoreResult<bool> {
        on_connection!(self, "uses_tls", |c| async move {
            let row = query_one(
                &c,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
            col::<bool>(&row, 0)
        })
        .await
    }

    /// How batched the agents' polls and reports have been since this store connected:
    /// (transactions committed, polls and reports they carried). Polls answered without a
    /// transaction (an idle node) are in neither.
    pub fn batch_counts(&self) -> (u64, u64) {
        self.inner.batched.get()
    }

    /// `host:port/dbname` this store uses.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// This server's end of the wake-ups between servers on this database.
    pub fn wake_bus(&self) -> PgWakeBus {
        PgWakeBus::new(
            self.inner.pool.clone(),
            self.inner.config.clone(),
            self.inner.connector.clone(),
        )
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        Ok(self.inner.pool.get().await?)
    }

    /// A backend error as the domain sees it: core outcomes unchanged, everything else a
    /// `CoreError::Store` naming the operation and the server.
    fn fail(&self, op: &str, e: Error) -> CoreError {
        match e {
            Error::Core(core) => core,
            other => CoreError::Store(format!("postgres {} {op}: {other}", self.inner.target)),
        }
    }

    async fn call<T>(&self, op: &str, fut: impl Future<Output = Result<T>>) -> CoreResult<T> {
        fut.await.map_err(|e| self.fail(op, e))
    }

    /// Runs `attempt` until it succeeds, fails for good, or has lost [`MAX_RETRIES`] deadlocks or
    /// serialization checks, backing off a little more (with jitter) after each.
    async fn retrying<T, F, Fut>(&self, op: &str, mut attempt: F) -> CoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && tries < MAX_RETRIES => {
                    tries += 1;
                    tracing::debug!(op, tries, error = %e, "retrying postgres transaction");
                    tokio::time::sleep(backoff(tries)).await;
                }
                Err(e) => return Err(self.fail(op, e)),
            }
        }
    }

    /// Seeds many commands (benchmarks, imports). Each command's invocations all start in the
    /// given state (`None` = Pending), and its counts and status are derived from that as usual.
    /// Commands go in with multi-row INSERTs and invocations with binary COPY, in one transaction.
    pub async fn insert_commands_bulk(
        &self,
        cmds: Vec<(NewCommand, Option<InvocationState>)>,
    ) -> CoreResult<()> {
        let cmds = &cmds;
        in_transaction!(self, "insert_commands_bulk", |tx| commands::insert_bulk(
            &tx, cmds
        ))
        .await
    }

    /// The database's size on disk (`pg_database_size`), for reports.
    pub async fn database_bytes(&self) -> CoreResult<u64> {
        on_connection!(self, "database_bytes", |c| async move {
            let row = db::query_one(&c, "SELECT pg_database_size(current_database())", &[]).await?;
            let bytes: i64 = db::col(&row, 0)?;
            Ok(u64::try_from(bytes).unwrap_or(0))
        })
        .await
    }

    /// `EXPLAIN` of the first-page SQL that [`Store::list_commands`] runs for `q`.
    pub async fn explain_list_commands(&self, q: &CommandQuery) -> CoreResult<String> {
        self.explain_list_commands_after(q, None).await
    }

    /// `EXPLAIN` of the list_commands SQL for the page after `after`.
    pub async fn explain_list_commands_after(
        &self,
        q: &CommandQuery,
        after: Option<&PageKey>,
    ) -> CoreResult<String> {
        let built = listing::list_commands_sql(q, after, 51);
        on_connection!(self, "explain", |c| explain_listing(
            &c,
            &built.sql,
            &built.params
        ))
        .await
    }

    /// `EXPLAIN` of the list_invocations SQL for `q` after `after`.
    pub async fn explain_list_invocations(
        &self,
        q: &CommandQuery,
        after: Option<&PageKey>,
    ) -> CoreResult<String> {
        let built = listing::list_invocations_sql(q, after, 51);
        on_connection!(self, "explain", |c| explain_listing(
            &c,
            &built.sql,
            &built.params
        ))
        .await
    }

    /// `EXPLAIN` of the SQL that [`Store::nodes_page`] runs after `after`.
    pub async fn explain_nodes_page(&self, after: Option<&InstanceId>) -> CoreResult<String> {
        let built = activations::nodes_page_sql(after, 51);
        on_connection!(self, "explain", |c| explain_listing(
            &c,
            &built.sql,
            &built.params
        ))
        .await
    }

    /// `EXPLAIN` of the SQL that [`Store::documents_page`] runs after `after`.
    pub async fn explain_documents_page(&self, after: Option<&str>) -> CoreResult<String> {
        let built = documents::page_sql(after, 51);
        on_connection!(self, "explain", |c| explain_listing(
            &c,
            &built.sql,
            &built.params
        ))
        .await
    }

    /// `EXPLAIN` of the SQL that [`Store::resolve_targets`] runs for `specs`.
    pub async fn explain_resolve_targets(&self, specs: &[TargetSpec]) -> CoreResult<String> {
        let Some(built) = tags::resolve_sql(specs) else {
            return Ok(String::new());
        };
        on_connection!(self, "explain", |c| explain_built(&c, &built.0, &built.1)).await
    }
}

/// 2, 4, 8 … ms (at most ~0.5 s) plus up to as much again of jitter, so transactions that
/// deadlocked on each other do not collide again in step.
fn backoff(tries: u32) -> Duration {
    let base = 1u64 << tries.min(8);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base + nanos % (base + 1))
}

#[async_trait]
impl Store for PostgresStore {
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> CoreResult<Vec<u8>> {
        in_transaction!(self, "shared_secret", |tx| access_keys::shared_secret(
            &tx, name, candidate
        ))
        .await
    }

    async fn lease_notices(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<OutboxEntry>> {
        on_connection!(self, "lease_notices", |c| outbox::lease(
            &c, now, lease_ms, limit
        ))
        .await
    }

    async fn notice_delivered(&self, message_id: &str) -> CoreResult<()> {
        on_connection!(self, "notice_delivered", |c| outbox::delivered(
            &c, message_id
        ))
        .await
    }

    async fn retry_notice_at(&self, message_id: &str, at: Millis) -> CoreResult<()> {
        on_connection!(self, "retry_notice_at", |c| outbox::retry_at(
            &c, message_id, at
        ))
        .await
    }

    async fn notice_backlog(&self) -> CoreResult<u64> {
        on_connection!(self, "notice_backlog", |c| outbox::backlog(&c)).await
    }

    async fn append_output(&self, chunk: NewChunk) -> CoreResult<ChunkAck> {
        let chunk = &chunk;
        in_transaction!(self, "append_output", |tx| output::append(&tx, chunk)).await
    }

    async fn command_output(
        &self,
        command: &CommandId,
        instance: Option<&InstanceId>,
        after: i64,
        limit: usize,
    ) -> CoreResult<Vec<CommandChunk>> {
        let instance = instance.map(InstanceId::as_str);
        on_connection!(self, "command_output", |c| output::command_chunks(
            &c, command, instance, after, limit
        ))
        .await
    }

    async fn log_groups(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<LogGroup>> {
        on_connection!(self, "log_groups", |c| output::log_groups(
            &c, prefix, after, limit
        ))
        .await
    }

    async fn log_streams(&self, query: StreamQuery) -> CoreResult<Option<Vec<LogStream>>> {
        let query = &query;
        on_connection!(self, "log_streams", |c| output::log_streams(&c, query)).await
    }

    async fn log_chunks(&self, query: ChunkQuery) -> CoreResult<Option<Vec<LogChunk>>> {
        let query = &query;
        on_connection!(self, "log_chunks", |c| output::log_chunks(&c, query)).await
    }

    async fn lease_uploads(
        &self,
        now: Millis,
        lease_ms: Millis,
        limit: usize,
    ) -> CoreResult<Vec<UploadJob>> {
        in_transaction!(self, "lease_uploads", |tx| uploads::lease(
            &tx, now, lease_ms, limit
        ))
        .await
    }

    async fn upload_done(&self, command: &CommandId, node: &InstanceId) -> CoreResult<()> {
        on_connection!(self, "upload_done", |c| uploads::done(&c, command, node)).await
    }

    async fn retry_upload_at(
        &self,
        command: &CommandId,
        node: &InstanceId,
        at: Millis,
    ) -> CoreResult<()> {
        on_connection!(self, "retry_upload_at", |c| uploads::retry_at(
            &c, command, node, at
        ))
        .await
    }

    async fn upload_backlog(&self) -> CoreResult<u64> {
        on_connection!(self, "upload_backlog", |c| uploads::backlog(&c)).await
    }

    async fn put_alarm(&self, def: AlarmDefinition) -> CoreResult<()> {
        let def = &def;
        on_connection!(self, "put_alarm", |c| alarms::put(&c, def)).await
    }

    async fn set_alarm_state(&self, change: StateChange) -> CoreResult<bool> {
        let change = &change;
        on_connection!(self, "set_alarm_state", |c| alarms::set_state(&c, change)).await
    }

    async fn alarms(&self, query: AlarmQuery) -> CoreResult<Vec<Alarm>> {
        let query = &query;
        on_connection!(self, "alarms", |c| alarms::query_alarms(&c, query)).await
    }

    async fn alarm_watchers(&self) -> CoreResult<Vec<(CommandId, AlarmWatch)>> {
        on_connection!(self, "alarm_watchers", |c| alarms::watching(&c)).await
    }

    async fn stop_for_alarm(
        &self,
        command: &CommandId,
        triggered: TriggeredAlarm,
        rendered: Option<String>,
    ) -> CoreResult<Effects> {
        let (triggered, rendered) = (&triggered, rendered.as_deref());
        in_transaction!(self, "stop_for_alarm", |tx| alarms::stop(
            &tx, command, triggered, rendered
        ))
        .await
    }

    async fn create_access_key(&self, key: AccessKey) -> CoreResult<()> {
        let key = &key;
        on_connection!(self, "create_access_key", |c| access_keys::create(&c, key)).await
    }

    async fn create_first_access_key(&self, key: AccessKey) -> CoreResult<bool> {
        let key = &key;
        in_transaction!(self, "create_first_access_key", |tx| {
            access_keys::create_first(&tx, key)
        })
        .await
    }

    async fn access_key(&self, access_key_id: &str) -> CoreResult<Option<AccessKey>> {
        on_connection!(self, "access_key", |c| access_keys::get(&c, access_key_id)).await
    }

    async fn access_keys(&self) -> CoreResult<Vec<AccessKey>> {
        on_connection!(self, "access_keys", |c| access_keys::list(&c)).await
    }

    async fn set_access_key_status(
        &self,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> CoreResult<bool> {
        on_connection!(self, "set_access_key_status", |c| access_keys::set_status(
            &c,
            access_key_id,
            status
        ))
        .await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> CoreResult<bool> {
        on_connection!(self, "delete_access_key", |c| access_keys::delete(
            &c,
            access_key_id
        ))
        .await
    }

    async fn create_activation(&self, activation: NewActivation) -> CoreResult<()> {
        let activation = &activation;
        on_connection!(self, "create_activation", |c| activations::create(
            &c, activation
        ))
        .await
    }

    async fn activations(&self) -> CoreResult<Vec<Activation>> {
        on_connection!(self, "activations", |c| activations::list(&c)).await
    }

    async fn delete_activation(&self, id: &ActivationId) -> CoreResult<()> {
        on_connection!(self, "delete_activation", |c| activations::delete(&c, id)).await
    }

    async fn register_node(&self, registration: NodeRegistration, now: Millis) -> CoreResult<Node> {
        let registration = &registration;
        in_transaction!(self, "register_node", |tx| activations::register(
            &tx,
            registration,
            now
        ))
        .await
    }

    async fn node(&self, id: &InstanceId) -> CoreResult<Option<Node>> {
        on_connection!(self, "node", |c| activations::node(&c, id)).await
    }

    async fn nodes_page(&self, after: Option<&InstanceId>, limit: usize) -> CoreResult<Vec<Node>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let built = activations::nodes_page_sql(after, limit);
        on_connection!(self, "nodes_page", |c| activations::nodes_page(&c, &built)).await
    }

    async fn touch_node(
        &self,
        id: &InstanceId,
        now: Millis,
        info: Option<NodeInfo>,
    ) -> CoreResult<()> {
        on_connection!(self, "touch_node", |c| activations::touch(
            &c,
            id,
            now,
            info.as_ref()
        ))
        .await
    }

    async fn insert_command(&self, command: NewCommand) -> CoreResult<Sent> {
        let cmd = &command;
        let (seq, counts, cancel_requested, effects) =
            in_transaction!(self, "insert_command", |tx| commands::insert(&tx, cmd)).await?;
        Ok(Sent {
            command: command.into_command(seq, counts, cancel_requested),
            effects,
        })
    }

    async fn command(&self, id: &CommandId) -> CoreResult<Option<Command>> {
        on_connection!(self, "command", |c| commands::get(&c, id)).await
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
        let built = listing::list_commands_sql(query, after, limit);
        on_connection!(self, "list_commands", |c| listing::list_commands(
            &c, &built
        ))
        .await
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
        let built = listing::list_invocations_sql(query, after, limit);
        on_connection!(self, "list_invocations", |c| listing::list_invocations(
            &c, &built
        ))
        .await
    }

    async fn invocation(
        &self,
        command: &CommandId,
        node: &InstanceId,
    ) -> CoreResult<Option<Invocation>> {
        on_connection!(self, "invocation", |c| commands::get_invocation(
            &c, command, node
        ))
        .await
    }

    async fn claim(
        &self,
        node: &InstanceId,
        session: &str,
        known: &[CommandId],
        now: Millis,
    ) -> CoreResult<Claim> {
        // Most polls find nothing to do: answer those with two reads, no transaction, no lock.
        if on_connection!(self, "claim", |c| polls::idle_poll(&c, node, now)).await? {
            return Ok(Claim::default());
        }
        self.inner
            .batcher
            .claim(polls::ClaimJob {
                node: node.clone(),
                session: session.to_string(),
                known: known.to_vec(),
                now,
            })
            .await
    }

    async fn finish(&self, node: &InstanceId, report: Report, now: Millis) -> CoreResult<Finished> {
        self.inner
            .batcher
            .finish(polls::FinishJob {
                node: node.clone(),
                report,
                now,
            })
            .await
    }

    async fn cancel(
        &self,
        command: &CommandId,
        nodes: Option<&[InstanceId]>,
        now: Millis,
    ) -> CoreResult<CancelOutcome> {
        in_transaction!(self, "cancel", |tx| lifecycle::cancel(
            &tx, command, nodes, now
        ))
        .await
    }

    async fn expire_due(&self, now: Millis) -> CoreResult<Effects> {
        in_transaction!(self, "expire_due", |tx| lifecycle::expire_due(&tx, now)).await
    }

    async fn purge_before(&self, before: Millis) -> CoreResult<usize> {
        in_transaction!(self, "purge_before", |tx| lifecycle::purge_before(
            &tx, before
        ))
        .await
    }

    async fn mark_unreachable(&self, silent_since: Millis, _now: Millis) -> CoreResult<Effects> {
        in_transaction!(self, "mark_unreachable", |tx| rollout::mark_unreachable(
            &tx,
            silent_since
        ))
        .await
    }

    async fn sign_off_node(&self, node: &InstanceId, now: Millis) -> CoreResult<()> {
        on_connection!(self, "sign_off_node", |c| activations::sign_off(
            &c, node, now
        ))
        .await
    }

    async fn deregister_node(&self, node: &InstanceId, _now: Millis) -> CoreResult<Effects> {
        in_transaction!(self, "deregister_node", |tx| rollout::deregister(&tx, node)).await
    }

    async fn node_tags(&self, node: &InstanceId) -> CoreResult<Vec<Tag>> {
        on_connection!(self, "node_tags", |c| tags::list(&c, node)).await
    }

    async fn add_node_tags(&self, node: &InstanceId, tags: &[Tag]) -> CoreResult<()> {
        in_transaction!(self, "add_node_tags", |tx| tags::add(&tx, node, tags)).await
    }

    async fn remove_node_tags(&self, node: &InstanceId, keys: &[String]) -> CoreResult<()> {
        in_transaction!(self, "remove_node_tags", |tx| tags::remove(&tx, node, keys)).await
    }

    async fn resolve_targets(&self, specs: &[TargetSpec]) -> CoreResult<Vec<InstanceId>> {
        on_connection!(self, "resolve_targets", |c| tags::resolve(&c, specs)).await
    }

    async fn create_group(&self, group: &ResourceGroup) -> CoreResult<()> {
        on_connection!(self, "create_group", |c| groups::create(&c, group)).await
    }

    async fn group(&self, name: &str) -> CoreResult<Option<ResourceGroup>> {
        on_connection!(self, "group", |c| groups::get(&c, name)).await
    }

    async fn update_group_query(
        &self,
        name: &str,
        query_type: &str,
        query: &str,
    ) -> CoreResult<ResourceGroup> {
        on_connection!(self, "update_group_query", |c| groups::update_query(
            &c, name, query_type, query
        ))
        .await
    }

    async fn delete_group(&self, name: &str) -> CoreResult<ResourceGroup> {
        on_connection!(self, "delete_group", |c| groups::delete(&c, name)).await
    }

    async fn groups_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<ResourceGroup>> {
        on_connection!(self, "groups_page", |c| groups::page(&c, after, limit)).await
    }

    async fn create_document(
        &self,
        doc: NewDocument,
        max_documents: usize,
    ) -> CoreResult<Document> {
        let doc = &doc;
        in_transaction!(self, "create_document", |tx| documents::create(
            &tx,
            doc,
            max_documents
        ))
        .await
    }

    async fn add_document_version(
        &self,
        name: &str,
        expected_latest: u32,
        version: NewDocumentVersion,
        max_versions: u32,
    ) -> CoreResult<Document> {
        let version = &version;
        in_transaction!(self, "add_document_version", |tx| documents::add_version(
            &tx,
            name,
            expected_latest,
            version,
            max_versions
        ))
        .await
    }

    async fn document(&self, name: &str) -> CoreResult<Option<Document>> {
        on_connection!(self, "document", |c| documents::document(&c, name)).await
    }

    async fn document_version(
        &self,
        name: &str,
        version: u32,
    ) -> CoreResult<Option<DocumentVersion>> {
        on_connection!(self, "document_version", |c| documents::version(
            &c, name, version
        ))
        .await
    }

    async fn document_versions(&self, name: &str) -> CoreResult<Vec<DocumentVersion>> {
        on_connection!(self, "document_versions", |c| documents::versions(&c, name)).await
    }

    async fn set_default_document_version(&self, name: &str, version: u32) -> CoreResult<Document> {
        in_transaction!(self, "set_default_document_version", |tx| {
            documents::set_default(&tx, name, version)
        })
        .await
    }

    async fn delete_document(&self, name: &str, version: Option<u32>) -> CoreResult<()> {
        in_transaction!(self, "delete_document", |tx| documents::delete(
            &tx, name, version
        ))
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
        on_connection!(self, "documents_page", |c| documents::page(&c, &built)).await
    }
}
