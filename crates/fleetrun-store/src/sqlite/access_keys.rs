//! API access keys (one row per key, looked up by id on every signed request; the server caches) and
//! the secrets every server on this store shares.

use fleetrun_core::access::{AccessKey, AccessKeyStatus};
use fleetrun_core::CoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{Error, Result};

const COLUMNS: &str = "access_key_id, secret, user_name, policy_json, status, created_at";

fn key_from_row(row: &Row<'_>) -> Result<AccessKey> {
    let status: String = row.get(4)?;
    Ok(AccessKey {
        access_key_id: row.get(0)?,
        secret_access_key: row.get(1)?,
        user_name: row.get(2)?,
        policy_json: row.get(3)?,
        status: AccessKeyStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("access key status {status:?}")))?,
        created_at: row.get(5)?,
    })
}

/// Runs an `INSERT INTO access_keys (…) <rest>` whose six parameters are `key`'s columns; returns
/// the rows inserted.
fn insert(conn: &Connection, rest: &str, key: &AccessKey) -> Result<usize> {
    let sql = format!(
        "INSERT INTO access_keys (access_key_id, secret, user_name, policy_json, status, created_at) {rest}"
    );
    Ok(conn.execute(
        &sql,
        params![
            key.access_key_id,
            key.secret_access_key,
            key.user_name,
            key.policy_json,
            key.status.as_str(),
            key.created_at
        ],
    )?)
}

pub(crate) fn create(conn: &mut Connection, key: &AccessKey) -> Result<()> {
    let rest = "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (access_key_id) DO NOTHING";
    if insert(conn, rest, key)? == 0 {
        return Err(CoreError::AccessKeyExists(key.access_key_id.clone()).into());
    }
    Ok(())
}

/// The writer is the only connection that writes, so the check and the insert cannot interleave
/// with another write.
pub(crate) fn create_first(conn: &mut Connection, key: &AccessKey) -> Result<bool> {
    let rest = "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM access_keys)";
    Ok(insert(conn, rest, key)? == 1)
}

pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<AccessKey>> {
    let sql = format!("SELECT {COLUMNS} FROM access_keys WHERE access_key_id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let found = stmt
        .query_row([id], |row| Ok(key_from_row(row)))
        .optional()?;
    found.transpose()
}

pub(crate) fn list(conn: &Connection) -> Result<Vec<AccessKey>> {
    let sql = format!("SELECT {COLUMNS} FROM access_keys ORDER BY created_at, access_key_id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        keys.push(key_from_row(row)?);
    }
    Ok(keys)
}

pub(crate) fn set_status(conn: &mut Connection, id: &str, status: AccessKeyStatus) -> Result<bool> {
    let n = conn.execute(
        "UPDATE access_keys SET status = ?2 WHERE access_key_id = ?1",
        params![id, status.as_str()],
    )?;
    Ok(n > 0)
}

pub(crate) fn delete(conn: &mut Connection, id: &str) -> Result<bool> {
    let n = conn.execute("DELETE FROM access_keys WHERE access_key_id = ?1", [id])?;
    Ok(n > 0)
}

/// The secret stored under `name`, storing `candidate` first when there is none.
pub(crate) fn shared_secret(
    conn: &mut Connection,
    name: &str,
    candidate: &[u8],
) -> Result<Vec<u8>> {
    let tx = conn.savepoint()?;
    tx.prepare_cached("INSERT OR IGNORE INTO server_secrets (name, secret) VALUES (?1, ?2)")?
        .execute(params![name, candidate])?;
    let secret: Vec<u8> = tx
        .prepare_cached("SELECT secret FROM server_secrets WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    tx.commit()?;
    Ok(secret)
}
