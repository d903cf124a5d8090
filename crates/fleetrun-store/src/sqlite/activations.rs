//! Hybrid activations and the managed nodes they register: creating, listing and deleting
//! activations, the registration check (code, a repeated attempt, expiry, deletion, limit), node
//! heartbeats and goodbyes.
//!
//! Activation codes arrive here already hashed (`fleetrun_core::node::hash_secret`); the plain
//! activation code of a registration attempt is hashed and compared in constant time. Of a node's
//! credentials only its public key is stored (`nodes.public_key`, empty for nodes registered with
//! agent protocol v1).

use fleetrun_core::clock::Millis;
use fleetrun_core::error::RegistrationRefusal;
use fleetrun_core::ids::{ActivationId, InstanceId};
use fleetrun_core::node::{
    constant_time_eq, hash_secret, registration_refusal, Activation, ActivationState,
    NewActivation, Node, NodeInfo, NodeRegistration, Tag,
};
use fleetrun_core::CoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::commands::{key_page_sql, query_built, BuiltQuery};
use super::{instance_id, Error, Result};

const ACTIVATION_COLUMNS: &str = "activation_id, description, default_instance_name, iam_role, \
     registration_limit, registrations_count, expires_at, created_at, tags_json";

const NODE_COLUMNS: &str =
    "instance_id, activation_id, name, iam_role, registered_at, last_ping_at, \
     public_key, computer_name, ip_address, platform_type, platform_name, platform_version, \
     agent_version, signed_off_at";

fn activation_from_row(row: &Row<'_>) -> Result<Activation> {
    let id: String = row.get(0)?;
    let tags_json: String = row.get(8)?;
    Ok(Activation {
        id: ActivationId::parse(&id)
            .ok_or_else(|| Error::Corrupt(format!("activation id {id:?}")))?,
        description: row.get(1)?,
        default_instance_name: row.get(2)?,
        iam_role: row.get(3)?,
        registration_limit: row.get(4)?,
        registrations_count: row.get(5)?,
        expires_at: row.get(6)?,
        created_at: row.get(7)?,
        tags: serde_json::from_str(&tags_json)?,
    })
}

fn node_from_row(row: &Row<'_>) -> Result<Node> {
    let id: String = row.get(0)?;
    Ok(Node {
        instance_id: instance_id(&id)?,
        activation_id: row.get(1)?,
        name: row.get(2)?,
        iam_role: row.get(3)?,
        registered_at: row.get(4)?,
        last_ping_at: row.get(5)?,
        public_key: row.get(6)?,
        info: NodeInfo {
            computer_name: row.get(7)?,
            ip_address: row.get(8)?,
            platform_type: row.get(9)?,
            platform_name: row.get(10)?,
            platform_version: row.get(11)?,
            agent_version: row.get(12)?,
        },
        signed_off_at: row.get(13)?,
    })
}

pub(crate) fn create(conn: &mut Connection, a: &NewActivation) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO activations (activation_id, code_hash, description, default_instance_name,
             iam_role, registration_limit, expires_at, created_at, tags_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        a.id.as_str(),
        a.code_hash,
        a.description,
        a.default_instance_name,
        a.iam_role,
        a.registration_limit,
        a.expires_at,
        a.created_at,
        serde_json::to_string(&a.tags)?,
    ])?;
    Ok(())
}

/// Activations not deleted, oldest first.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Activation>> {
    let sql = format!(
        "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE deleted = 0 ORDER BY created_at, seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(activation_from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn delete(conn: &mut Connection, id: &ActivationId) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE activations SET deleted = 1 WHERE activation_id = ?1 AND deleted = 0",
        )?
        .execute([id.as_str()])?;
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

/// Registers a node against an activation, checking everything in one write transaction so two
/// concurrent registrations cannot both take the last slot.
pub(crate) fn register(conn: &mut Connection, reg: NodeRegistration, now: Millis) -> Result<Node> {
    let tx = conn.savepoint()?;
    type ActivationRow = (String, bool, Millis, u32, u32, String, String, String);
    let found: Option<ActivationRow> = tx
        .prepare_cached(
            "SELECT code_hash, deleted, expires_at, registration_limit, registrations_count,
                    default_instance_name, iam_role, tags_json
             FROM activations WHERE activation_id = ?1",
        )?
        .query_row([reg.activation_id.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    let Some((code_hash, deleted, expires_at, limit, count, default_name, iam_role, tags_json)) =
        found
    else {
        return Err(CoreError::UnknownActivation(reg.activation_id.to_string()).into());
    };
    let id = &reg.activation_id;
    // The code is checked first so that a caller without it learns nothing about the activation.
    if !constant_time_eq(&hash_secret(&reg.activation_code), &code_hash) {
        return Err(refused(id, RegistrationRefusal::WrongCode));
    }
    // The same fresh public key on the same activation is the same agent trying again after an
    // answer it never got (a timeout): it gets the node it created, whatever the activation's
    // limit, expiry or deletion say now, and nothing is counted twice. A key is generated per
    // registration attempt, so no other node can present it.
    let existing: Option<String> = tx
        .prepare_cached(
            "SELECT instance_id FROM nodes INDEXED BY nodes_by_public_key
             WHERE public_key = ?1 AND activation_id = ?2",
        )?
        .query_row(params![reg.public_key, id.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(existing) = existing.filter(|_| !reg.public_key.is_empty()) {
        let node = node(&tx, &instance_id(&existing)?)?
            .ok_or_else(|| Error::Corrupt(format!("node {existing} vanished")))?;
        tx.commit()?;
        return Ok(node);
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
    tx.prepare_cached(
        "UPDATE activations SET registrations_count = registrations_count + 1 WHERE activation_id = ?1",
    )?
    .execute([id.as_str()])?;
    let node = Node {
        instance_id: reg.instance_id,
        activation_id: id.to_string(),
        name: default_name,
        iam_role,
        registered_at: now,
        last_ping_at: now,
        public_key: reg.public_key,
        info: reg.info,
        signed_off_at: None,
    };
    tx.prepare_cached(
        "INSERT INTO nodes (instance_id, activation_id, name, iam_role, registered_at, last_ping_at,
             public_key, computer_name, ip_address, platform_type, platform_name, platform_version,
             agent_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        node.instance_id.as_str(),
        node.activation_id,
        node.name,
        node.iam_role,
        node.registered_at,
        node.last_ping_at,
        node.public_key,
        node.info.computer_name,
        node.info.ip_address,
        node.info.platform_type,
        node.info.platform_name,
        node.info.platform_version,
        node.info.agent_version,
    ])?;
    let tags: Vec<Tag> = serde_json::from_str(&tags_json)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO node_tags (instance_id, key, value) VALUES (?1, ?2, ?3)",
        )?;
        for tag in &tags {
            insert.execute(params![node.instance_id.as_str(), tag.key, tag.value])?;
        }
    }
    tx.commit()?;
    Ok(node)
}

pub(crate) fn node(conn: &Connection, id: &InstanceId) -> Result<Option<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE instance_id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(node_from_row(row)?)),
        None => Ok(None),
    }
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

pub(crate) fn nodes_page(conn: &Connection, q: &BuiltQuery) -> Result<Vec<Node>> {
    query_built(conn, q, node_from_row)
}

/// A heartbeat, optionally with fresh machine facts. An unknown node is `UnknownInstance`.
pub(crate) fn touch(
    conn: &mut Connection,
    id: &InstanceId,
    now: Millis,
    info: Option<&NodeInfo>,
) -> Result<()> {
    let changed = match info {
        None => conn
            .prepare_cached(
                "UPDATE nodes SET last_ping_at = ?2, signed_off_at = NULL WHERE instance_id = ?1",
            )?
            .execute(params![id.as_str(), now])?,
        Some(info) => conn
            .prepare_cached(
                "UPDATE nodes SET last_ping_at = ?2, signed_off_at = NULL, computer_name = ?3, ip_address = ?4,
                     platform_type = ?5, platform_name = ?6, platform_version = ?7, agent_version = ?8
                 WHERE instance_id = ?1",
            )?
            .execute(params![
                id.as_str(),
                now,
                info.computer_name,
                info.ip_address,
                info.platform_type,
                info.platform_name,
                info.platform_version,
                info.agent_version,
            ])?,
    };
    if changed == 0 {
        return Err(CoreError::UnknownInstance(id.to_string()).into());
    }
    Ok(())
}

/// A goodbye from the node's agent: unreachable until its next heartbeat. An unknown node is
/// `UnknownInstance`.
pub(crate) fn sign_off(conn: &mut Connection, id: &InstanceId, now: Millis) -> Result<()> {
    let changed = conn
        .prepare_cached("UPDATE nodes SET signed_off_at = ?2 WHERE instance_id = ?1")?
        .execute(params![id.as_str(), now])?;
    if changed == 0 {
        return Err(CoreError::UnknownInstance(id.to_string()).into());
    }
    Ok(())
}

/// The node's tags, by key.
pub(crate) fn node_tags(conn: &Connection, id: &InstanceId) -> Result<Vec<Tag>> {
    let mut stmt = conn
        .prepare_cached("SELECT key, value FROM node_tags WHERE instance_id = ?1 ORDER BY key")?;
    let rows = stmt.query_map([id.as_str()], |r| {
        Ok(Tag {
            key: r.get(0)?,
            value: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
