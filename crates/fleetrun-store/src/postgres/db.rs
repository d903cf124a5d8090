//! The driver seam: the backend's error type and its mapping, row decoding, and running
//! statements (cached prepared ones for fixed SQL, typed one-shot ones for SQL built at run time,
//! listings under their planner settings).

use deadpool_postgres::GenericClient;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::status::InvocationState;
use fleetrun_core::CoreError;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Row;

/// Everything that can go wrong inside the backend; converted to [`CoreError`] at the trait
/// boundary, prefixed with the operation and the server (never the password).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A domain outcome (unknown command, refused activation, ...) passed through unchanged.
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{}", describe(.0))]
    Pg(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool (timeout, connection refused, ...).
    #[error("{0}")]
    Pool(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value that does not decode (never expected; reported instead of panicking).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database cannot be used by this build (newer schema, bad URL, ...).
    #[error("{0}")]
    Unusable(String),
}

impl Error {
    fn sql_state(&self) -> Option<&SqlState> {
        match self {
            Error::Pg(e) => e.code(),
            _ => None,
        }
    }

    /// A deadlock or serialization failure: running the whole transaction again can succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self.sql_state(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
        )
    }

    /// The constraint a unique violation (23505) names, if this is one.
    pub(crate) fn unique_violation(&self) -> Option<&str> {
        match self {
            Error::Pg(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                e.as_db_error().and_then(|d| d.constraint())
            }
            _ => None,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError as P;
        Error::Pool(match e {
            P::Timeout(_) => "no database connection within the connect timeout".to_string(),
            P::Backend(e) => format!("cannot connect: {}", describe(&e)),
            other => format!("connection pool: {other}"),
        })
    }
}

/// A driver error with its cause: the server's SQLSTATE and message for a database error, the OS
/// error for a connection failure. tokio-postgres's own Display says only "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(" (");
            s.push_str(detail);
            s.push(')');
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

pub(crate) fn command_id(s: &str) -> Result<CommandId> {
    CommandId::parse(s).ok_or_else(|| Error::Corrupt(format!("command id {s:?}")))
}

pub(crate) fn instance_id(s: &str) -> Result<InstanceId> {
    InstanceId::parse(s).ok_or_else(|| Error::Corrupt(format!("instance id {s:?}")))
}

pub(crate) fn invocation_state(s: &str) -> Result<InvocationState> {
    InvocationState::parse(s).ok_or_else(|| Error::Corrupt(format!("invocation state {s:?}")))
}

/// A non-negative count stored as BIGINT.
pub(crate) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Column `i` of `row`, decoded as `T`.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    Ok(row.try_get(i)?)
}

/// A BIGINT column holding a `u32` (PostgreSQL has no unsigned types).
pub(crate) fn col_u32(row: &Row, i: usize) -> Result<u32> {
    let v: i64 = col(row, i)?;
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("column {i}: {v} is not a u32")))
}

/// Runs `sql` as a cached prepared statement and returns its rows.
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

/// Like [`query`], for at most one row.
pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

/// Like [`query`], for exactly one row.
pub(crate) async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_one(&stmt, params).await?)
}

/// Runs `sql` as a cached prepared statement; returns the rows it changed.
pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// A parameter of a statement built at run time (listings, target resolution). Such statements
/// run with `query_typed`: one round trip and a plan made for the actual values, exactly what
/// the `EXPLAIN` helpers show.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Bool(bool),
    Int(i64),
    Text(String),
    TextArray(Vec<String>),
}

impl Param {
    fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Param::Bool(v) => (v, Type::BOOL),
            Param::Int(v) => (v, Type::INT8),
            Param::Text(v) => (v, Type::TEXT),
            Param::TextArray(v) => (v, Type::TEXT_ARRAY),
        }
    }
}

/// Runs a built statement with its typed parameters.
pub(crate) async fn query_built(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>> {
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params.iter().map(Param::typed).collect();
    Ok(c.query_typed(sql, &typed).await?)
}

/// How a listing is planned: never with a sort, a bitmap scan (which loses the index order) or an
/// incremental sort. The listing SQL (`commands`) always has a plan without them — one backward
/// range read of the index that ends in the page order — but for a set the statistics think
/// small (a freshly sent command with thousands of targets) the planner would rather collect
/// and sort it, on every page. `SET LOCAL`: only this transaction plans so.
const LISTING_PLAN: &str = "BEGIN READ ONLY; SET LOCAL enable_sort = off; \
     SET LOCAL enable_incremental_sort = off; SET LOCAL enable_bitmapscan = off";

/// Runs a built listing statement under [`LISTING_PLAN`], in a read-only transaction of its own.
/// The BEGIN, the statement and the COMMIT are sent at once (tokio-postgres pipelines requests
/// polled together): one round trip, and the connection leaves the transaction even if this
/// future is dropped midway, since all three are queued on the first poll.
pub(crate) async fn query_listing(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
) -> Result<Vec<Row>> {
    let (begin, rows, commit) = tokio::join!(
        c.batch_execute(LISTING_PLAN),
        query_built(c, sql, params),
        c.batch_execute("COMMIT")
    );
    begin?;
    let rows = rows?;
    commit?;
    Ok(rows)
}

/// `EXPLAIN` of a built listing statement as [`query_listing`] plans it, one plan line per line.
pub(crate) async fn explain_listing(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
) -> Result<String> {
    plan_text(query_listing(c, &format!("EXPLAIN {sql}"), params).await?)
}

/// `EXPLAIN` of a built statement run with [`query_built`].
pub(crate) async fn explain_built(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
) -> Result<String> {
    plan_text(query_built(c, &format!("EXPLAIN {sql}"), params).await?)
}

/// The rows of an `EXPLAIN`, one plan line per line.
fn plan_text(rows: Vec<Row>) -> Result<String> {
    let mut out = String::new();
    for row in &rows {
        out.push_str(col::<&str>(row, 0)?);
        out.push('\n');
    }
    Ok(out)
}
