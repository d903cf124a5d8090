//! Hybrid activations and the managed nodes they register: creating, listing and deleting
//! activations, the registration check (code, a repeated attempt, expiry, deletion, limit), node
//! heartbeats and goodbyes.
//!
//! Activation codes arrive here already hashed (`fleetrun_core::node::hash_secret`); the plain
//! activation code of a registration attempt is hashed and compared in constant time. Of a node's
//! credentials only its public key is stored.

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::error::RegistrationRefusal;
use fleetrun_core::ids::{ActivationId, InstanceId};
use fleetrun_core::node::{
    constant_time_eq, hash_secret, registration_refusal, Activation, ActivationState,
    NewActivation, Node, NodeInfo, NodeRegistration, Tag,
};
use fleetrun_core::CoreError;
use tokio_postgres::Row;

use super::listing::{key_page_sql, BuiltQuery};
use super::{col, col_u32, execute, instance_id, query, query_listing, query_opt, Error, Result};

const ACTIVATION_COLUMNS: &str = "activation_id, description, default_instance_name, iam_role, \
     registration_limit, registrations_count, expires_at, created_at, tags_json";

const NODE_COLUMNS: &str =
    "instance_id, activation_id, name, iam_role, registered_at, last_ping_at, \
     public_key, computer_name, ip_address, platform_type, platform_name, platform_version, \
     agent_version, signed_off_at";

fn activation_from_row(row: &Row) -> Result<Activation> {
    let id: &str = col(row, 0)?;
    Ok(Activation {
        id: ActivationId::parse(id)
            .ok_or_else(|| Error::Corrupt(format!("activation id {id:?}")))?,
        description: col(row, 1)?,
        default_instance_name: col(row, 2)?,
        iam_role: col(row, 3)?,
        registration_limit: col_u32(row, 4)?,
        registrations_count: col_u32(row, 5)?,
        expires_at: col(row, 6)?,
        created_at: col(row, 7)?,
        tags: serde_json::from_str(col(row, 8)?)?,
    })
}

fn node_from_row(row: &Row) -> Result<Node> {
    Ok(Node {
        instance_id: instance_id(col(row, 0)?)?,
        activation_id: col(row, 1)?,
        name: col(row, 2)?,
        iam_role: col(row, 3)?,
        registered_at: col(row, 4)?,
        last_ping_at: col(row, 5)?,
        public_key: col(row, 6)?,
        info: NodeInfo {
            computer_name: col(row, 7)?,
            ip_address: col(row, 8)?,
            platform_type: col(row, 9)?,
            platform_name: col(row, 10)?,
            platform_version: col(row, 11)?,
            agent_version: col(row, 12)?,
        },
        signed_off_at: col(row, 13)?,
    })
}

pub(crate) async fn create<C: GenericClient>(c: &C, a: &NewActivation) -> Result<()> {
    execute(
        c,
        "INSERT INTO activations (activation_id, code_hash, description, default_instance_name,
             iam_role, registration_limit, expires_at, created_at, tags_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &a.id.as_str(),
            &a.code_hash,
            &a.description,
            &a.default_instance_name,
            &a.iam_role,
            &i64::from(a.registration_limit),
            &a.expires_at,
            &a.created_at,
            &serde_json::to_string(&a.tags)?,
        ],
    )
    .await?;
    Ok(())
}

/// Activations not deleted, oldest first.
pub(crate) async fn list<C: GenericClient>(c: &C) -> Result<Vec<Activation>> {
    let sql = format!(
        "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE NOT deleted ORDER BY created_at, seq"
    );
    query(c, &sql, &[])
        .await?
        .iter()
        .map(activation_from_row)
        .collect()
}

pub(crate) async fn delete<C: GenericClient>(c: &C, id: &ActivationId) -> Result<()> {
    let changed = execute(
        c,
        "UPDATE activations SET deleted = TRUE WHERE activation_id = $1 AND NOT deleted",
        &[&id.as_str()],
    )
    .await?;
    if changed == 0 {
        return Err(CoreError::UnknownActivation(id.to_string()).into());
    }
    Ok(())
}

fn refused(id: &ActivationId, reason: RegistrationRefusal) -> Error {
    CoreError::ActivationRefused {
        activation_id: id.to_string(),
        reason,
    }
    .into()
}

/// Registers a node against an activation. The activation row is locked first (`FOR UPDATE`), so
/// concurrent registrations on one activation, from any server, are checked one after the
/// other: two cannot both take the last slot, and a retried attempt finds the node its first
/// attempt created.
pub(crate) async fn register(
    tx: &Transaction<'_>,
    reg: &NodeRegistration,
    now: Millis,
) -> Result<Node> {
    let found = query_opt(
        tx,
        "SELECT code_hash, deleted, expires_at, registration_limit, registrations_count,
                default_instance_name, iam_role, tags_json
         FROM activations WHERE activation_id = $1 FOR UPDATE",
        &[&reg.activation_id.as_str()],
    )
    .await?;
    let Some(row) = found else {
        return Err(CoreError::UnknownActivation(reg.activation_id.to_string()).into());
    };
    let code_hash: &str = col(&row, 0)?;
    let deleted: bool = col(&row, 1)?;
    let expires_at: Millis = col(&row, 2)?;
    let limit = col_u32(&row, 3)?;
    let count = col_u32(&row, 4)?;
    let id = &reg.activation_id;
    // The code is checked first so that a caller without it learns nothing about the activation.
    if !constant_time_eq(&hash_secret(&reg.activation_code), code_hash) {
        return Err(refused(id, RegistrationRefusal::WrongCode));
    }
    // The same fresh public key on the same activation is the same agent trying again after an
    // answer it never got (a timeout): it gets the node it created, whatever the activation's
    // limit, expiry or deletion say now, and nothing is counted twice.
    if !reg.public_key.is_empty() {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE public_key = $1 AND activation_id = $2"
        );
        if let Some(existing) = query_opt(tx, &sql, &[&reg.public_key, &id.as_str()]).await? {
            return node_from_row(&existing);
        }
    }
    let state = ActivationState {
        deleted,
        expires_at,
        registration_limit: limit,
        registrations: count,
    };
    if let Some(reason) = registration_refusal(&state, now) {
        return Err(refused(id, reason));
    }
    execute(
        tx,
        "UPDATE activations SET registrations_count = registrations_count + 1
         WHERE activation_id = $1",
        &[&id.as_str()],
    )
    .await?;
    let node = Node {
        instance_id: reg.instance_id.clone(),
        activation_id: id.to_string(),
        name: col(&row, 5)?,
        iam_role: col(&row, 6)?,
        registered_at: now,
        last_ping_at: now,
        public_key: reg.public_key.clone(),
        info: reg.info.clone(),
        signed_off_at: None,
    };
    execute(
        tx,
        "INSERT INTO nodes (instance_id, activation_id, name, iam_role, registered_at, last_ping_at,
             public_key, computer_name, ip_address, platform_type, platform_name, platform_version,
             agent_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &node.instance_id.as_str(),
            &node.activation_id,
            &node.name,
            &node.iam_role,
            &node.registered_at,
            &node.last_ping_at,
            &node.public_key,
            &node.info.computer_name,
            &node.info.ip_address,
            &node.info.platform_type,
            &node.info.platform_name,
            &node.info.platform_version,
            &node.info.agent_version,
        ],
    )
    .await?;
    let tags: Vec<Tag> = serde_json::from_str(col(&row, 7)?)?;
    if !tags.is_empty() {
        // The last of repeated keys wins, as SQLite's INSERT OR REPLACE does row by row.
        let (keys, values): (Vec<&str>, Vec<&str>) = tags
            .iter()
            .rev()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .unzip();
        execute(
            tx,
            "INSERT INTO node_tags (instance_id, key, value)
             SELECT DISTINCT ON (t.key) $1, t.key, t.value
             FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS t (key, value, n)
             ORDER BY t.key, t.n",
            &[&node.instance_id.as_str(), &keys, &values],
        )
        .await?;
    }
    Ok(node)
}

pub(crate) async fn node<C: GenericClient>(c: &C, id: &InstanceId) -> Result<Option<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE instance_id = $1");
    query_opt(c, &sql, &[&id.as_str()])
        .await?
        .map(|row| node_from_row(&row))
        .transpose()
}

/// The query of one page of nodes by id, strictly after `after` (read through the primary key).
pub(crate) fn nodes_page_sql(after: Option<&InstanceId>, limit: usize) -> BuiltQuery {
    key_page_sql(
        &format!("SELECT {NODE_COLUMNS} FROM nodes"),
        "instance_id",
        after.map(InstanceId::as_str),
        limit,
    )
}

pub(crate) async fn nodes_page(c: &tokio_postgres::Client, q: &BuiltQuery) -> Result<Vec<Node>> {
    query_listing(c, &q.sql, &q.params)
        .await?
        .iter()
        .map(node_from_row)
        .collect()
}

/// A heartbeat, optionally with fresh machine facts. An unknown node is `UnknownInstance`.
pub(crate) async fn touch<C: GenericClient>(
    c: &C,
    id: &InstanceId,
    now: Millis,
    info: Option<&NodeInfo>,
) -> Result<()> {
    let changed =
        match info {
            None => execute(
                c,
                "UPDATE nodes SET last_ping_at = $2, signed_off_at = NULL WHERE instance_id = $1",
                &[&id.as_str(), &now],
            )
            .await?,
            Some(info) => {
                execute(
                    c,
                    "UPDATE nodes SET last_ping_at = $2, signed_off_at = NULL, computer_name = $3,
                     ip_address = $4, platform_type = $5, platform_name = $6,
                     platform_version = $7, agent_version = $8
                 WHERE instance_id = $1",
                    &[
                        &id.as_str(),
                        &now,
                        &info.computer_name,
                        &info.ip_address,
                        &info.platform_type,
                        &info.platform_name,
                        &info.platform_version,
                        &info.agent_version,
                    ],
                )
                .await?
            }
        };
    if changed == 0 {
        return Err(CoreError::UnknownInstance(id.to_string()).into());
    }
    Ok(())
}

/// A goodbye from the node's agent: unreachable until its next heartbeat. An unknown node is
/// `UnknownInstance`.
pub(crate) async fn sign_off<C: GenericClient>(c: &C, id: &InstanceId, now: Millis) -> Result<()> {
    let changed = execute(
        c,
        "UPDATE nodes SET signed_off_at = $2 WHERE instance_id = $1",
        &[&id.as_str(), &now],
    )
    .await?;
    if changed == 0 {
        return Err(CoreError::UnknownInstance(id.to_string()).into());
    }
    Ok(())
}

/// The node's tags, by key.
pub(crate) async fn node_tags<C: GenericClient>(c: &C, id: &InstanceId) -> Result<Vec<Tag>> {
    query(
        c,
        "SELECT key, value FROM node_tags WHERE instance_id = $1 ORDER BY key",
        &[&id.as_str()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Tag {
            key: col(r, 0)?,
            value: col(r, 1)?,
        })
    })
    .collect()
}
