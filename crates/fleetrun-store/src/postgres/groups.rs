//! Resource groups (the Resource Groups API's tag-query groups), as SQLite's `groups`: one row per
//! group keyed by name, the query stored as given. Each call is one statement, atomic by itself.

use deadpool_postgres::GenericClient;
use fleetrun_core::resource_groups::ResourceGroup;
use fleetrun_core::CoreError;
use tokio_postgres::Row;

use super::{col, execute, query, query_opt, to_i64, Result};

const COLUMNS: &str = "name, description, query_type, query, created_at";

fn from_row(r: &Row) -> Result<ResourceGroup> {
    Ok(ResourceGroup {
        name: col(r, 0)?,
        description: col(r, 1)?,
        query_type: col(r, 2)?,
        query: col(r, 3)?,
        created_at: col(r, 4)?,
    })
}

fn found(row: Option<Row>, name: &str) -> Result<ResourceGroup> {
    match row {
        Some(r) => from_row(&r),
        None => Err(CoreError::UnknownGroup {
            name: name.to_string(),
        }
        .into()),
    }
}

/// Inserts the group; a taken name is `GroupExists` (the primary key decides, atomically).
pub(crate) async fn create<C: GenericClient>(c: &C, g: &ResourceGroup) -> Result<()> {
    let inserted = execute(
        c,
        "INSERT INTO resource_groups (name, description, query_type, query, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        &[
            &g.name,
            &g.description,
            &g.query_type,
            &g.query,
            &g.created_at,
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(CoreError::GroupExists {
            name: g.name.clone(),
        }
        .into());
    }
    Ok(())
}

pub(crate) async fn get<C: GenericClient>(c: &C, name: &str) -> Result<Option<ResourceGroup>> {
    let sql = format!("SELECT {COLUMNS} FROM resource_groups WHERE name = $1");
    query_opt(c, &sql, &[&name])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub(crate) async fn update_query<C: GenericClient>(
    c: &C,
    name: &str,
    query_type: &str,
    text: &str,
) -> Result<ResourceGroup> {
    let sql = format!(
        "UPDATE resource_groups SET query_type = $2, query = $3 WHERE name = $1
         RETURNING {COLUMNS}"
    );
    found(
        query_opt(c, &sql, &[&name, &query_type, &text]).await?,
        name,
    )
}

pub(crate) async fn delete<C: GenericClient>(c: &C, name: &str) -> Result<ResourceGroup> {
    let sql = format!("DELETE FROM resource_groups WHERE name = $1 RETURNING {COLUMNS}");
    found(query_opt(c, &sql, &[&name]).await?, name)
}

/// Groups by name after `after` (the primary key's byte order, `COLLATE "C"`), at most `limit`.
pub(crate) async fn page<C: GenericClient>(
    c: &C,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ResourceGroup>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM resource_groups WHERE $1::TEXT IS NULL OR name > $1
         ORDER BY name LIMIT $2"
    );
    query(c, &sql, &[&after, &to_i64(limit)])
        .await?
        .iter()
        .map(from_row)
        .collect()
}
