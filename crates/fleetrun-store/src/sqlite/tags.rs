//! Node tags (AddTagsToResource / RemoveTagsFromResource / ListTagsForResource on managed nodes) and
//! target resolution (SendCommand `Targets`, DescribeInstanceInformation tag filters).
//!
//! Resolution is one SQL statement: each target becomes a `SELECT instance_id` and the targets are
//! combined with `INTERSECT` (AND); a tag target reads the `node_tags_by_tag (key, value)` index,
//! an id target the `nodes` primary key, so the cost follows the number of matching tags, not the
//! size of the fleet. Registration copies activation tags into `node_tags` (see `activations`).

use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::Tag;
use fleetrun_core::targets::{tag_limit_exceeded, TargetSpec};
use fleetrun_core::CoreError;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{instance_id, Result};

fn require_node(conn: &Connection, id: &InstanceId) -> Result<()> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM nodes WHERE instance_id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(CoreError::UnknownResource(id.to_string()).into()),
    }
}

fn count_tags(conn: &Connection, id: &InstanceId) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM node_tags WHERE instance_id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))?)
}

/// The node's tags by key; unknown node → `UnknownResource`.
pub(crate) fn list(conn: &Connection, id: &InstanceId) -> Result<Vec<Tag>> {
    require_node(conn, id)?;
    super::activations::node_tags(conn, id)
}

/// Upserts the tags in one transaction, then checks the limit (rolling back when exceeded).
pub(crate) fn add(conn: &mut Connection, id: &InstanceId, tags: &[Tag]) -> Result<()> {
    let tx = conn.savepoint()?;
    require_node(&tx, id)?;
    let before = count_tags(&tx, id)?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO node_tags (instance_id, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value",
        )?;
        for tag in tags {
            upsert.execute(params![id.as_str(), tag.key, tag.value])?;
        }
    }
    let after = count_tags(&tx, id)?;
    if tag_limit_exceeded(
        usize::try_from(before).unwrap_or(0),
        usize::try_from(after).unwrap_or(usize::MAX),
    ) {
        // Dropping `tx` rolls the upserts back.
        return Err(CoreError::TooManyTags(id.to_string()).into());
    }
    tx.commit()?;
    Ok(())
}

/// Deletes the given keys; absent keys are ignored.
pub(crate) fn remove(conn: &mut Connection, id: &InstanceId, keys: &[String]) -> Result<()> {
    let tx = conn.savepoint()?;
    require_node(&tx, id)?;
    {
        let mut delete =
            tx.prepare_cached("DELETE FROM node_tags WHERE instance_id = ?1 AND key = ?2")?;
        for key in keys {
            delete.execute(params![id.as_str(), key])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// `?, ?, ?` for `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The SQL and parameters that resolve `specs`; `None` when some spec can match nothing (no values).
pub(crate) fn resolve_sql(specs: &[TargetSpec]) -> Option<(String, Vec<Value>)> {
    let mut parts = Vec::with_capacity(specs.len());
    let mut args: Vec<Value> = Vec::new();
    for spec in specs {
        match spec {
            TargetSpec::InstanceIds(ids) if !ids.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM nodes WHERE instance_id IN ({})",
                    placeholders(ids.len())
                ));
                args.extend(ids.iter().map(|i| Value::Text(i.to_string())));
            }
            TargetSpec::Tag { key, values } if !values.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM node_tags WHERE key = ? AND value IN ({})",
                    placeholders(values.len())
                ));
                args.push(Value::Text(key.clone()));
                args.extend(values.iter().map(|v| Value::Text(v.clone())));
            }
            TargetSpec::TagKeys(keys) if !keys.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM node_tags WHERE key IN ({})",
                    placeholders(keys.len())
                ));
                args.extend(keys.iter().map(|k| Value::Text(k.clone())));
            }
            _ => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    // The outer query keeps each node once (a node with two matching tag keys) and only
    // registered nodes, ordered by id; the subquery is evaluated once.
    let sql = format!(
        "SELECT instance_id FROM nodes WHERE instance_id IN ({}) ORDER BY instance_id",
        parts.join(" INTERSECT ")
    );
    Some((sql, args))
}

/// The registered nodes matching every spec, by id.
pub(crate) fn resolve(conn: &Connection, specs: &[TargetSpec]) -> Result<Vec<InstanceId>> {
    let Some((sql, args)) = resolve_sql(specs) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare(&sql)?;
    let ids = stmt
        .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    ids.iter().map(|s| instance_id(s)).collect()
}

/// `EXPLAIN QUERY PLAN` of the resolution SQL (tests check that it reads indexes only).
pub(crate) fn explain(conn: &Connection, specs: &[TargetSpec]) -> Result<String> {
    let Some((sql, args)) = resolve_sql(specs) else {
        return Ok(String::new());
    };
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows.join("\n"))
}
