//! API access keys (one row per key, looked up by id on every signed request; the server caches)
//! and the secrets every server on this database shares.

use deadpool_postgres::GenericClient;
use fleetrun_core::access::{AccessKey, AccessKeyStatus};
use fleetrun_core::CoreError;
use tokio_postgres::Row;

use super::{col, execute, query, query_opt, Error, Result};

const COLUMNS: &str = "access_key_id, secret, user_name, policy_json, status, created_at";

fn key_from_row(row: &Row) -> Result<AccessKey> {
    let status: &str = col(row, 4)?;
    Ok(AccessKey {
        access_key_id: col(row, 0)?,
        secret_access_key: col(row, 1)?,
        user_name: col(row, 2)?,
        policy_json: col(row, 3)?,
        status: AccessKeyStatus::parse(status)
            .ok_or_else(|| Error::Corrupt(format!("access key status {status:?}")))?,
        created_at: col(row, 5)?,
    })
}

/// Runs an `INSERT INTO access_keys (…) <rest>` whose six parameters are `key`'s columns; returns
/// the rows inserted.
async fn insert<C: GenericClient>(c: &C, rest: &str, key: &AccessKey) -> Result<u64> {
    let sql = format!(
        "INSERT INTO access_keys (access_key_id, secret, user_name, policy_json, status, created_at) {rest}"
    );
    execute(
        c,
        &sql,
        &[
            &key.access_key_id,
            &key.secret_access_key,
            &key.user_name,
            &key.policy_json,
            &key.status.as_str(),
            &key.created_at,
        ],
    )
    .await
}

/// One statement: a concurrent create of the same id conflicts on the primary key and is told
/// apart by `ON CONFLICT DO NOTHING` changing no row.
pub(crate) async fn create<C: GenericClient>(c: &C, key: &AccessKey) -> Result<()> {
    let rest = "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (access_key_id) DO NOTHING";
    if insert(c, rest, key).await? == 0 {
        return Err(CoreError::AccessKeyExists(key.access_key_id.clone()).into());
    }
    Ok(())
}

/// The advisory lock that serialises first-key creation ("firstkey" in ASCII). Under READ
/// COMMITTED two concurrent `INSERT … WHERE NOT EXISTS` would both see an empty table; the lock
/// makes the second wait until the first has committed, and then see its row.
const FIRST_KEY_LOCK: i64 = 0x6669_7273_746b_6579;

/// Run inside a transaction: the lock is transaction-scoped.
pub(crate) async fn create_first<C: GenericClient>(c: &C, key: &AccessKey) -> Result<bool> {
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&FIRST_KEY_LOCK]).await?;
    let rest = "SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM access_keys)";
    Ok(insert(c, rest, key).await? == 1)
}

pub(crate) async fn get<C: GenericClient>(c: &C, id: &str) -> Result<Option<AccessKey>> {
    let sql = format!("SELECT {COLUMNS} FROM access_keys WHERE access_key_id = $1");
    query_opt(c, &sql, &[&id])
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
}

pub(crate) async fn list<C: GenericClient>(c: &C) -> Result<Vec<AccessKey>> {
    let sql = format!("SELECT {COLUMNS} FROM access_keys ORDER BY created_at, access_key_id");
    query(c, &sql, &[])
        .await?
        .iter()
        .map(key_from_row)
        .collect()
}

pub(crate) async fn set_status<C: GenericClient>(
    c: &C,
    id: &str,
    status: AccessKeyStatus,
) -> Result<bool> {
    let n = execute(
        c,
        "UPDATE access_keys SET status = $2 WHERE access_key_id = $1",
        &[&id, &status.as_str()],
    )
    .await?;
    Ok(n > 0)
}

pub(crate) async fn delete<C: GenericClient>(c: &C, id: &str) -> Result<bool> {
    let n = execute(
        c,
        "DELETE FROM access_keys WHERE access_key_id = $1",
        &[&id],
    )
    .await?;
    Ok(n > 0)
}

/// The secret stored under `name`, storing `candidate` first when there is none. Two servers
/// starting at once: one insert wins, both read the winner.
pub(crate) async fn shared_secret<C: GenericClient>(
    c: &C,
    name: &str,
    candidate: &[u8],
) -> Result<Vec<u8>> {
    execute(
        c,
        "INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &candidate],
    )
    .await?;
    let row = query_opt(
        c,
        "SELECT secret FROM server_secrets WHERE name = $1",
        &[&name],
    )
    .await?
    .ok_or_else(|| Error::Corrupt(format!("server secret {name} vanished")))?;
    col(&row, 0)
}
