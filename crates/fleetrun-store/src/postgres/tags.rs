//! Node tags (AddTagsToResource / RemoveTagsFromResource / ListTagsForResource on managed nodes) and
//! target resolution (SendCommand `Targets`, DescribeInstanceInformation tag filters).
//!
//! Resolution is one SQL statement: each target becomes a `SELECT instance_id` and the targets are
//! combined with `INTERSECT` (AND); a tag target reads the `node_tags_by_tag (key, value)` index,
//! an id target the `nodes` primary key. Registration copies activation tags into `node_tags`
//! (see `activations`).

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::ids::InstanceId;
use fleetrun_core::node::Tag;
use fleetrun_core::targets::{tag_limit_exceeded, TargetSpec};
use fleetrun_core::CoreError;

use super::{col, execute, instance_id, query_built, query_one, query_opt, Param, Result};

/// Fails with `UnknownResource` unless the node exists. With `lock`, the node's row is locked, so
/// concurrent tag changes of one node (from any server) apply one after the other and the tag
/// limit is checked against what is really there.
async fn require_node<C: GenericClient>(c: &C, id: &InstanceId, lock: bool) -> Result<()> {
    let sql = if lock {
        "SELECT 1 FROM nodes WHERE instance_id = $1 FOR UPDATE"
    } else {
        "SELECT 1 FROM nodes WHERE instance_id = $1"
    };
    match query_opt(c, sql, &[&id.as_str()]).await? {
        Some(_) => Ok(()),
        None => Err(CoreError::UnknownResource(id.to_string()).into()),
    }
}

async fn count_tags(tx: &Transaction<'_>, id: &InstanceId) -> Result<i64> {
    let row = query_one(
        tx,
        "SELECT COUNT(*) FROM node_tags WHERE instance_id = $1",
        &[&id.as_str()],
    )
    .await?;
    col(&row, 0)
}

/// The node's tags by key; unknown node → `UnknownResource`.
pub(crate) async fn list<C: GenericClient>(c: &C, id: &InstanceId) -> Result<Vec<Tag>> {
    require_node(c, id, false).await?;
    super::activations::node_tags(c, id).await
}

/// Upserts the tags, then checks the limit (the caller's transaction rolls back when exceeded).
pub(crate) async fn add(tx: &Transaction<'_>, id: &InstanceId, tags: &[Tag]) -> Result<()> {
    require_node(tx, id, true).await?;
    let before = count_tags(tx, id).await?;
    for tag in tags {
        execute(
            tx,
            "INSERT INTO node_tags (instance_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value",
            &[&id.as_str(), &tag.key, &tag.value],
        )
        .await?;
    }
    let after = count_tags(tx, id).await?;
    if tag_limit_exceeded(
        usize::try_from(before).unwrap_or(0),
        usize::try_from(after).unwrap_or(usize::MAX),
    ) {
        return Err(CoreError::TooManyTags(id.to_string()).into());
    }
    Ok(())
}

/// Deletes the given keys; absent keys are ignored.
pub(crate) async fn remove(tx: &Transaction<'_>, id: &InstanceId, keys: &[String]) -> Result<()> {
    require_node(tx, id, true).await?;
    execute(
        tx,
        "DELETE FROM node_tags WHERE instance_id = $1 AND key = ANY($2)",
        &[&id.as_str(), &keys],
    )
    .await?;
    Ok(())
}

/// The SQL and parameters that resolve `specs`; `None` when some spec can match nothing (no values).
pub(crate) fn resolve_sql(specs: &[TargetSpec]) -> Option<(String, Vec<Param>)> {
    let mut parts = Vec::with_capacity(specs.len());
    let mut args: Vec<Param> = Vec::new();
    let strings = |v: &[String]| Param::TextArray(v.to_vec());
    for spec in specs {
        let n = args.len();
        match spec {
            TargetSpec::InstanceIds(ids) if !ids.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM nodes WHERE instance_id = ANY(${})",
                    n + 1
                ));
                args.push(Param::TextArray(
                    ids.iter().map(|i| i.to_string()).collect(),
                ));
            }
            TargetSpec::Tag { key, values } if !values.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM node_tags WHERE key = ${} AND value = ANY(${})",
                    n + 1,
                    n + 2
                ));
                args.push(Param::Text(key.clone()));
                args.push(strings(values));
            }
            TargetSpec::TagKeys(keys) if !keys.is_empty() => {
                parts.push(format!(
                    "SELECT instance_id FROM node_tags WHERE key = ANY(${})",
                    n + 1
                ));
                args.push(strings(keys));
            }
            _ => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    // The outer query keeps each node once (a node with two matching tag keys) and only
    // registered nodes, ordered by id.
    let sql = format!(
        "SELECT instance_id FROM nodes WHERE instance_id IN ({}) ORDER BY instance_id",
        parts.join(" INTERSECT ")
    );
    Some((sql, args))
}

/// The registered nodes matching every spec, by id.
pub(crate) async fn resolve(
    c: &tokio_postgres::Client,
    specs: &[TargetSpec],
) -> Result<Vec<InstanceId>> {
    let Some((sql, args)) = resolve_sql(specs) else {
        return Ok(Vec::new());
    };
    query_built(c, &sql, &args)
        .await?
        .iter()
        .map(|r| instance_id(col(r, 0)?))
        .collect()
}
