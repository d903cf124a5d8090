//! Resource groups (the Resource Groups API's tag-query groups): one row per group, keyed by
//! name. The query is stored as given; its meaning (`fleetrun_core::resource_groups`) is applied
//! when a group is resolved, so an update takes effect at the next send.

use fleetrun_core::resource_groups::ResourceGroup;
use fleetrun_core::CoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Result;

const COLUMNS: &str = "name, description, query_type, query, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ResourceGroup> {
    Ok(ResourceGroup {
        name: r.get(0)?,
        description: r.get(1)?,
        query_type: r.get(2)?,
        query: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn unknown(name: &str) -> super::Error {
    CoreError::UnknownGroup {
        name: name.to_string(),
    }
    .into()
}

/// Inserts the group; a taken name is `GroupExists` (the primary key decides, atomically).
pub(crate) fn create(conn: &mut Connection, g: &ResourceGroup) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO resource_groups (name, description, query_type, query, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![
            g.name,
            g.description,
            g.query_type,
            g.query,
            g.created_at
        ])?;
    if inserted == 0 {
        return Err(CoreError::GroupExists {
            name: g.name.clone(),
        }
        .into());
    }
    Ok(())
}

pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<ResourceGroup>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM resource_groups WHERE name = ?1"
        ))?
        .query_row([name], from_row)
        .optional()?)
}

pub(crate) fn update_query(
    conn: &mut Connection,
    name: &str,
    query_type: &str,
    query: &str,
) -> Result<ResourceGroup> {
    conn.prepare_cached(&format!(
        "UPDATE resource_groups SET query_type = ?2, query = ?3 WHERE name = ?1
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![name, query_type, query], from_row)
    .optional()?
    .ok_or_else(|| unknown(name))
}

pub(crate) fn delete(conn: &mut Connection, name: &str) -> Result<ResourceGroup> {
    conn.prepare_cached(&format!(
        "DELETE FROM resource_groups WHERE name = ?1 RETURNING {COLUMNS}"
    ))?
    .query_row([name], from_row)
    .optional()?
    .ok_or_else(|| unknown(name))
}

/// Groups by name after `after` (the primary key's order), at most `limit`.
pub(crate) fn page(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ResourceGroup>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM resource_groups WHERE ?1 IS NULL OR name > ?1
         ORDER BY name LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![after, super::to_i64(limit)], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
