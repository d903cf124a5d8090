//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Migration N (1-based) brings a database from version N-1 to N; each runs in its own transaction
//! together with the version bump, so a crash leaves the file at a consistent version. Never edit a
//! released migration: append a new one.
//!
//! Index design: every ListCommands filter has an index whose trailing columns are
//! `(requested_at, seq)`, so one filter plus the newest-first order and the keyset bound is a single
//! index range read of `limit` entries (see the `EXPLAIN QUERY PLAN` test in `commands`).

use rusqlite::{Connection, TransactionBehavior};

use super::{Error, Result};

/// Version 1: commands, invocations, activations, nodes and node tags.
const V1: &str = r#"
CREATE TABLE commands (
    seq              INTEGER PRIMARY KEY,
    command_id       TEXT    NOT NULL UNIQUE,
    requested_at     INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    document_name    TEXT    NOT NULL,
    document_version TEXT    NOT NULL,
    comment          TEXT    NOT NULL,
    timeout_seconds  INTEGER NOT NULL,
    max_concurrency  TEXT    NOT NULL,
    max_errors       TEXT    NOT NULL,
    error_budget     INTEGER NOT NULL,
    echo_json        TEXT    NOT NULL,
    plan_json        TEXT    NOT NULL,
    counts_json      TEXT    NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL,
    status_details   TEXT    NOT NULL,
    terminal         INTEGER NOT NULL
);
CREATE INDEX commands_by_time     ON commands (requested_at, seq);
CREATE INDEX commands_by_status   ON commands (status, requested_at, seq);
CREATE INDEX commands_by_details  ON commands (status_details, requested_at, seq);
CREATE INDEX commands_by_document ON commands (document_name, requested_at, seq);
CREATE INDEX commands_by_stage    ON commands (terminal, requested_at, seq);
CREATE INDEX commands_by_expiry   ON commands (terminal, expires_at);

CREATE TABLE invocations (
    command_seq       INTEGER NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    command_id        TEXT    NOT NULL,
    instance_id       TEXT    NOT NULL,
    requested_at      INTEGER NOT NULL,
    document_name     TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    delivered_session TEXT,
    cancel_sent       INTEGER NOT NULL DEFAULT 0,
    response_code     INTEGER NOT NULL DEFAULT -1,
    started_at        INTEGER,
    ended_at          INTEGER,
    steps_json        TEXT,
    PRIMARY KEY (command_id, instance_id)
);
CREATE INDEX invocations_by_node     ON invocations (instance_id, requested_at, command_seq);
CREATE INDEX invocations_by_claim    ON invocations (instance_id, state);
CREATE INDEX invocations_by_command  ON invocations (command_seq, state);
CREATE INDEX invocations_by_time     ON invocations (requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_status   ON invocations (status, requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_details  ON invocations (state, requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_document ON invocations (document_name, requested_at, command_seq, instance_id);

CREATE TABLE activations (
    seq                   INTEGER PRIMARY KEY,
    activation_id         TEXT    NOT NULL UNIQUE,
    code_hash             TEXT    NOT NULL,
    description           TEXT    NOT NULL,
    default_instance_name TEXT    NOT NULL,
    iam_role              TEXT    NOT NULL,
    registration_limit    INTEGER NOT NULL,
    registrations_count   INTEGER NOT NULL DEFAULT 0,
    expires_at            INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    deleted               INTEGER NOT NULL DEFAULT 0,
    tags_json             TEXT    NOT NULL
);

CREATE TABLE nodes (
    instance_id      TEXT    NOT NULL PRIMARY KEY,
    activation_id    TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    iam_role         TEXT    NOT NULL,
    registered_at    INTEGER NOT NULL,
    last_ping_at     INTEGER NOT NULL,
    secret_hash      TEXT    NOT NULL,
    computer_name    TEXT    NOT NULL,
    ip_address       TEXT    NOT NULL,
    platform_type    TEXT    NOT NULL,
    platform_name    TEXT    NOT NULL,
    platform_version TEXT    NOT NULL,
    agent_version    TEXT    NOT NULL
);

CREATE TABLE node_tags (
    instance_id TEXT NOT NULL REFERENCES nodes (instance_id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;
CREATE INDEX node_tags_by_tag ON node_tags (key, value);
"#;

/// Version 2: rate control. Invocations are released to their nodes by the rollout (MaxConcurrency
/// ramp); the command row keeps the rollout's counters. Rows from version 1 count as released.
const V2: &str = r#"
ALTER TABLE invocations ADD COLUMN released INTEGER NOT NULL DEFAULT 1;
ALTER TABLE commands ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN acked    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN settled  INTEGER NOT NULL DEFAULT 0;
UPDATE commands SET
    released = (SELECT count(*) FROM invocations i WHERE i.command_seq = commands.seq),
    acked    = (SELECT count(*) FROM invocations i WHERE i.command_seq = commands.seq
                AND i.state <> 'Pending'),
    settled  = (SELECT count(*) FROM invocations i WHERE i.command_seq = commands.seq
                AND i.state NOT IN ('Pending', 'InProgress', 'Delayed', 'Cancelling'));
CREATE INDEX invocations_by_release ON invocations (command_seq, released, instance_id);
"#;

/// Version 3: custom Command documents and their versions (see `documents`).
const V3_DOCUMENTS: &str = r#"
CREATE TABLE documents (
    name            TEXT    NOT NULL PRIMARY KEY,
    document_type   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    default_version INTEGER NOT NULL,
    latest_version  INTEGER NOT NULL,
    last_assigned   INTEGER NOT NULL,
    tags_json       TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE document_versions (
    name            TEXT    NOT NULL REFERENCES documents (name) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    content         TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    schema_version  TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    platform_types  TEXT    NOT NULL,
    version_name    TEXT,
    display_name    TEXT    NOT NULL,
    target_type     TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX document_version_names ON document_versions (name, version_name)
    WHERE version_name IS NOT NULL;
"#;

/// Version 4: each command's rendering for listings (`NewCommand::rendered`). Commands from
/// earlier versions have none and are listed whole.
const V4_RENDERED: &str = r#"
ALTER TABLE commands ADD COLUMN rendered TEXT;
"#;

/// Version 5: API access keys (SigV4 secrets and their identity policies, SECURITY.md).
const V5_ACCESS_KEYS: &str = r#"
CREATE TABLE access_keys (
    access_key_id TEXT    NOT NULL PRIMARY KEY,
    secret        TEXT    NOT NULL,
    user_name     TEXT    NOT NULL,
    policy_json   TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 6: agent protocol v2. A node's credentials are its Ed25519 public key; the v1 secret
/// hashes are dropped (such nodes keep their records, tags and history, and authenticate again
/// once they register anew).
const V6_NODE_KEYS: &str = r#"
ALTER TABLE nodes RENAME COLUMN secret_hash TO public_key;
UPDATE nodes SET public_key = '';
"#;

/// Version 7: agents that stop cleanly say goodbye; the node is unreachable (ConnectionLost) from
/// then until it polls again. NULL: connected, or silent without a goodbye. The index serves the
/// lookup that makes a repeated registration (same activation, same fresh public key: a retry
/// after a lost answer) return the node it already created.
const V7_SIGN_OFF: &str = r#"
ALTER TABLE nodes ADD COLUMN signed_off_at INTEGER;
CREATE INDEX nodes_by_public_key ON nodes (public_key);
"#;

/// Version 8: per-state counts keyed by state name instead of by position (a state added or
/// reordered later cannot change what an old row means). The positions are those of
/// `InvocationState::ALL` up to version 7.
const V8_COUNTS_BY_NAME: &str = r#"
UPDATE commands SET counts_json = (
    SELECT COALESCE(json_group_object(state.name, j.value), '{}')
    FROM json_each(commands.counts_json) AS j
    JOIN (
        SELECT 0 AS position, 'Pending' AS name
        UNION ALL SELECT 1, 'InProgress'
        UNION ALL SELECT 2, 'Delayed'
        UNION ALL SELECT 3, 'Cancelling'
        UNION ALL SELECT 4, 'Success'
        UNION ALL SELECT 5, 'Failed'
        UNION ALL SELECT 6, 'ExecutionTimedOut'
        UNION ALL SELECT 7, 'DeliveryTimedOut'
        UNION ALL SELECT 8, 'Cancelled'
        UNION ALL SELECT 9, 'Undeliverable'
        UNION ALL SELECT 10, 'Terminated'
        UNION ALL SELECT 11, 'InvalidPlatform'
        UNION ALL SELECT 12, 'AccessDenied'
    ) AS state ON state.position = j.key
    WHERE j.value > 0
)
WHERE json_type(counts_json) = 'array';
"#;

/// Version 9: secrets every server on this store shares (the NextToken and node-session keys),
/// kept with the data they protect instead of in files beside it.
const V9_SERVER_SECRETS: &str = r#"
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    secret BLOB NOT NULL
);
"#;

/// Version 10: notifications. A command whose NotificationConfig names a topic keeps what its
/// notices are built from (`fleetrun_core::notification::NotifySpec`, JSON; NULL: none); the
/// transitions write each notice into the outbox in the same transaction as the change.
const V10_NOTIFICATIONS: &str = r#"
ALTER TABLE commands ADD COLUMN notify_json TEXT;
CREATE TABLE notification_outbox (
    message_id      TEXT    NOT NULL PRIMARY KEY,
    topic_arn       TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    event_time      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at, event_time);
"#;

/// Version 11: live output. Each step stream that received output has a row (its log group and
/// stream names for the CloudWatch Logs reads, how many bytes are held); its chunks keep the bytes
/// at their offsets. Both go with their command (`ON DELETE CASCADE`, the retention purge).
/// `commands.log_group` is the group of a command with CloudWatch output enabled (NULL: none).
/// S3 output: `commands.s3_bucket` (NULL: none) and the uploads a finish queues. Alarms: their
/// states, and on each command the alarm it watches and what stopped it (`TriggeredAlarms`).
const V11_LIVE_OUTPUT: &str = r#"
ALTER TABLE commands ADD COLUMN log_group TEXT;
ALTER TABLE commands ADD COLUMN s3_bucket TEXT;
CREATE TABLE s3_uploads (
    command_seq     INTEGER NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    instance_id     TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (command_seq, instance_id)
) WITHOUT ROWID;
CREATE INDEX s3_uploads_due ON s3_uploads (next_attempt_at);
ALTER TABLE commands ADD COLUMN alarm_name TEXT;
ALTER TABLE commands ADD COLUMN triggered_json TEXT;
CREATE INDEX commands_watching_alarms ON commands (seq)
    WHERE alarm_name IS NOT NULL AND terminal = 0 AND triggered_json IS NULL;
CREATE TABLE alarms (
    name             TEXT    NOT NULL PRIMARY KEY,
    state            TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    reason_data      TEXT,
    state_updated_at INTEGER NOT NULL,
    definition_json  TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE output_streams (
    id             INTEGER PRIMARY KEY,
    command_seq    INTEGER NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    instance_id    TEXT    NOT NULL,
    step           TEXT    NOT NULL,
    stream         TEXT    NOT NULL,
    log_group      TEXT,
    log_stream     TEXT    NOT NULL,
    committed      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    first_event_at INTEGER NOT NULL,
    last_event_at  INTEGER NOT NULL,
    UNIQUE (command_seq, instance_id, step, stream)
);
CREATE INDEX output_streams_by_name ON output_streams (log_group, log_stream)
    WHERE log_group IS NOT NULL;
CREATE INDEX output_streams_by_last_event ON output_streams (log_group, last_event_at, log_stream)
    WHERE log_group IS NOT NULL;
CREATE TABLE output_chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id   INTEGER NOT NULL,
    command_seq INTEGER NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    log_group   TEXT,
    at          INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    data        BLOB    NOT NULL
);
CREATE INDEX output_chunks_by_command ON output_chunks (command_seq, id);
CREATE INDEX output_chunks_by_group ON output_chunks (log_group, at, id) WHERE log_group IS NOT NULL;
"#;

/// Version 12: resource groups (tag queries saved under a name, `groups`).
const V12_RESOURCE_GROUPS: &str = r#"
CREATE TABLE resource_groups (
    name        TEXT    PRIMARY KEY,
    description TEXT,
    query_type  TEXT    NOT NULL,
    query       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
"#;

const MIGRATIONS: &[&str] = &[
    V1,
    V2,
    V3_DOCUMENTS,
    V4_RENDERED,
    V5_ACCESS_KEYS,
    V6_NODE_KEYS,
    V7_SIGN_OFF,
    V8_COUNTS_BY_NAME,
    V9_SERVER_SECRETS,
    V10_NOTIFICATIONS,
    V11_LIVE_OUTPUT,
    V12_RESOURCE_GROUPS,
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    super::to_i64(MIGRATIONS.len())
}

/// Brings the database to [`latest_version`]; refuses a database written by a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest_version();
    if current > latest {
        return Err(Error::Unusable(format!(
            "database schema version {current} is newer than this build supports ({latest})"
        )));
    }
    let done = usize::try_from(current).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", super::to_i64(i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied sqlite schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node stored before version 6 keeps its record; its v1 secret hash is gone, so it has no
    /// key to authenticate with until it registers again.
    #[test]
    fn v6_turns_node_secrets_into_empty_public_keys() {
        let mut conn = Connection::open_in_memory().expect("open");
        let before = 5;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", super::super::to_i64(before))
            .expect("version");
        conn.execute(
            "INSERT INTO nodes (instance_id, activation_id, name, iam_role, registered_at,
                 last_ping_at, secret_hash, computer_name, ip_address, platform_type,
                 platform_name, platform_version, agent_version)
             VALUES ('mi-0123456789abcdef0', 'a', 'n', 'r', 1, 2, 'abc123', 'host', '10.0.0.1',
                 'Linux', 'Debian', '12', '0.1.0')",
            [],
        )
        .expect("v1 node");
        migrate(&mut conn).expect("migrate");
        let (key, host): (String, String) = conn
            .query_row(
                "SELECT public_key, computer_name FROM nodes WHERE instance_id = 'mi-0123456789abcdef0'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("node kept");
        assert_eq!((key.as_str(), host.as_str()), ("", "host"));
    }

    /// Nodes stored before version 7 are connected (no goodbye recorded).
    #[test]
    fn v7_leaves_existing_nodes_connected() {
        let mut conn = Connection::open_in_memory().expect("open");
        let before = 6;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", super::super::to_i64(before))
            .expect("version");
        conn.execute(
            "INSERT INTO nodes (instance_id, activation_id, name, iam_role, registered_at,
                 last_ping_at, public_key, computer_name, ip_address, platform_type,
                 platform_name, platform_version, agent_version)
             VALUES ('mi-0123456789abcdef0', 'a', 'n', 'r', 1, 2, 'key', 'host', '10.0.0.1',
                 'Linux', 'Debian', '12', '0.1.0')",
            [],
        )
        .expect("v6 node");
        migrate(&mut conn).expect("migrate");
        let signed_off: Option<i64> = conn
            .query_row(
                "SELECT signed_off_at FROM nodes WHERE instance_id = 'mi-0123456789abcdef0'",
                [],
                |r| r.get(0),
            )
            .expect("node kept");
        assert_eq!(signed_off, None);
    }

    /// Counts stored by position before version 8 are rewritten keyed by name, zeros left out.
    #[test]
    fn v8_keys_counts_by_state_name() {
        let mut conn = Connection::open_in_memory().expect("open");
        let before = 7;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", super::super::to_i64(before))
            .expect("version");
        for (id, counts) in [
            ("a", "[2,0,0,0,1,0,0,0,0,0,0,0,3]"),
            ("b", "[0,0,0,0,0,0,0,0,0,0,0,0,0]"),
        ] {
            conn.execute(
                "INSERT INTO commands (command_id, requested_at, expires_at, document_name,
                     document_version, comment, timeout_seconds, max_concurrency, max_errors,
                     error_budget, echo_json, plan_json, counts_json, status, status_details,
                     terminal)
                 VALUES (?1, 1, 2, 'd', '1', '', 60, '50', '0', 0, '{}', '{}', ?2, 'Pending',
                     'Pending', 0)",
                rusqlite::params![id, counts],
            )
            .expect("v7 command");
        }
        migrate(&mut conn).expect("migrate");
        let stored = |id: &str| -> String {
            conn.query_row(
                "SELECT counts_json FROM commands WHERE command_id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("command kept")
        };
        assert_eq!(stored("a"), r#"{"Pending":2,"Success":1,"AccessDenied":3}"#);
        assert_eq!(stored("b"), "{}");
    }
}
