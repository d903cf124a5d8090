//! The PostgreSQL schema and its migrations, versioned in the `schema_version` table (one row per
//! applied migration).
//!
//! Migration N (1-based) brings a database from version N-1 to N; each runs in its own transaction
//! together with the version row, under `pg_advisory_xact_lock`, so two servers starting at once on
//! a fresh database apply each migration exactly once and a crash leaves a consistent version.
//! Never edit a released migration: append a new one. (These versions are this backend's own; the
//! SQLite file counts separately. Version 1 is SQLite's version 7 in PostgreSQL terms.)
//!
//! Types: BIGINT for millisecond times, counts and other integers (PostgreSQL has no unsigned
//! types; the decoders check the range), BOOLEAN for flags, TEXT for ids, states and for the JSON
//! that core's serde writes (the same bytes the SQLite backend stores: no SQL looks inside them).
//! Every ordered or compared text column is `COLLATE "C"`, so ORDER BY, keyset bounds and the
//! server's own comparisons (ListDocuments' name keyset) see plain byte order, as on SQLite,
//! whatever the database's default collation.
//!
//! Index design, as on SQLite: every ListCommands filter has an index whose trailing columns are
//! `(requested_at, seq)`, so one filter plus the newest-first order and the keyset bound is one
//! backward index range read of `limit` entries (`tests/postgres.rs` checks the plans).

use deadpool_postgres::Client;

use super::{col, Error, Result};

/// Version 1: the whole schema.
const V1: &str = r#"
CREATE TABLE commands (
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id       TEXT    COLLATE "C" NOT NULL UNIQUE,
    requested_at     BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    document_name    TEXT    COLLATE "C" NOT NULL,
    document_version TEXT    NOT NULL,
    comment          TEXT    NOT NULL,
    timeout_seconds  BIGINT  NOT NULL,
    max_concurrency  TEXT    NOT NULL,
    max_errors       TEXT    NOT NULL,
    error_budget     BIGINT  NOT NULL,
    echo_json        TEXT    NOT NULL,
    plan_json        TEXT    NOT NULL,
    counts_json      TEXT    NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    status           TEXT    COLLATE "C" NOT NULL,
    status_details   TEXT    COLLATE "C" NOT NULL,
    terminal         BOOLEAN NOT NULL,
    -- The rollout's counters (see rollout.rs), kept in the row every writer locks first.
    released         BIGINT  NOT NULL DEFAULT 0,
    acked            BIGINT  NOT NULL DEFAULT 0,
    settled          BIGINT  NOT NULL DEFAULT 0,
    rendered         TEXT
);
CREATE INDEX commands_by_time     ON commands (requested_at, seq);
CREATE INDEX commands_by_status   ON commands (status, requested_at, seq);
CREATE INDEX commands_by_details  ON commands (status_details, requested_at, seq);
CREATE INDEX commands_by_document ON commands (document_name, requested_at, seq);
CREATE INDEX commands_by_stage    ON commands (terminal, requested_at, seq);
CREATE INDEX commands_by_expiry   ON commands (terminal, expires_at);

CREATE TABLE invocations (
    command_seq       BIGINT  NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    command_id        TEXT    COLLATE "C" NOT NULL,
    instance_id       TEXT    COLLATE "C" NOT NULL,
    requested_at      BIGINT  NOT NULL,
    document_name     TEXT    COLLATE "C" NOT NULL,
    state             TEXT    COLLATE "C" NOT NULL,
    status            TEXT    COLLATE "C" NOT NULL,
    released          BOOLEAN NOT NULL,
    delivered_session TEXT,
    cancel_sent       BOOLEAN NOT NULL DEFAULT FALSE,
    response_code     BIGINT  NOT NULL DEFAULT -1,
    started_at        BIGINT,
    ended_at          BIGINT,
    steps_json        TEXT,
    PRIMARY KEY (command_id, instance_id)
);
CREATE INDEX invocations_by_node     ON invocations (instance_id, requested_at, command_seq);
-- Live invocations only (what a poll, the idle check and deregistration look for): small
-- whatever the history, and of no use to a listing, whose plans it would otherwise compete in.
CREATE INDEX invocations_by_claim    ON invocations (instance_id, state)
    WHERE state IN ('Pending', 'InProgress', 'Delayed', 'Cancelling');
CREATE INDEX invocations_by_command  ON invocations (command_seq, state);
CREATE INDEX invocations_by_release  ON invocations (command_seq, released, instance_id);
CREATE INDEX invocations_by_time     ON invocations (requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_status   ON invocations (status, requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_details  ON invocations (state, requested_at, command_seq, instance_id);
CREATE INDEX invocations_by_document ON invocations (document_name, requested_at, command_seq, instance_id);

CREATE TABLE activations (
    seq                   BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    activation_id         TEXT    COLLATE "C" NOT NULL UNIQUE,
    code_hash             TEXT    NOT NULL,
    description           TEXT    NOT NULL,
    default_instance_name TEXT    NOT NULL,
    iam_role              TEXT    NOT NULL,
    registration_limit    BIGINT  NOT NULL,
    registrations_count   BIGINT  NOT NULL DEFAULT 0,
    expires_at            BIGINT  NOT NULL,
    created_at            BIGINT  NOT NULL,
    deleted               BOOLEAN NOT NULL DEFAULT FALSE,
    tags_json             TEXT    NOT NULL
);

CREATE TABLE nodes (
    instance_id      TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    activation_id    TEXT   COLLATE "C" NOT NULL,
    name             TEXT   NOT NULL,
    iam_role         TEXT   NOT NULL,
    registered_at    BIGINT NOT NULL,
    last_ping_at     BIGINT NOT NULL,
    -- Ed25519 public key (agent protocol v2).
    public_key       TEXT   COLLATE "C" NOT NULL,
    computer_name    TEXT   NOT NULL,
    ip_address       TEXT   NOT NULL,
    platform_type    TEXT   NOT NULL,
    platform_name    TEXT   NOT NULL,
    platform_version TEXT   NOT NULL,
    agent_version    TEXT   NOT NULL,
    -- The agent's goodbye: unreachable from then until its next poll (NULL: connected, or
    -- silent without a goodbye).
    signed_off_at    BIGINT
);
CREATE INDEX nodes_by_public_key ON nodes (public_key);

CREATE TABLE node_tags (
    instance_id TEXT COLLATE "C" NOT NULL REFERENCES nodes (instance_id) ON DELETE CASCADE,
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_id, key)
);
CREATE INDEX node_tags_by_tag ON node_tags (key, value);

CREATE TABLE documents (
    name            TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    document_type   TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    default_version BIGINT NOT NULL,
    latest_version  BIGINT NOT NULL,
    -- The highest version number ever handed out: numbers are never reused.
    last_assigned   BIGINT NOT NULL,
    tags_json       TEXT   NOT NULL
);

CREATE TABLE document_versions (
    name            TEXT   COLLATE "C" NOT NULL REFERENCES documents (name) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    content         TEXT   NOT NULL,
    format          TEXT   NOT NULL,
    hash            TEXT   NOT NULL,
    schema_version  TEXT   NOT NULL,
    description     TEXT   NOT NULL,
    platform_types  TEXT   NOT NULL,
    version_name    TEXT   COLLATE "C",
    display_name    TEXT   NOT NULL,
    target_type     TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX document_version_names ON document_versions (name, version_name)
    WHERE version_name IS NOT NULL;

CREATE TABLE access_keys (
    access_key_id TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    secret        TEXT   NOT NULL,
    user_name     TEXT   NOT NULL,
    policy_json   TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
"#;

/// Version 2: secrets every server on this database shares (the NextToken and node-session keys).
const V2_SERVER_SECRETS: &str = r#"
CREATE TABLE server_secrets (
    name   TEXT COLLATE "C" PRIMARY KEY,
    secret BYTEA NOT NULL
);
"#;

/// Version 3: notifications (SQLite's version 10): what a command's notices are built from, and
/// the outbox the transitions write them into.
const V3_NOTIFICATIONS: &str = r#"
ALTER TABLE commands ADD COLUMN notify_json TEXT;
CREATE TABLE notification_outbox (
    message_id      TEXT COLLATE "C" PRIMARY KEY,
    topic_arn       TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    event_time      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at, event_time);
"#;

/// Version 4: live output, S3 uploads and alarms, as SQLite's version 11 (`sqlite/schema.rs`).
const V4_LIVE_OUTPUT: &str = r#"
ALTER TABLE commands ADD COLUMN log_group TEXT COLLATE "C";
ALTER TABLE commands ADD COLUMN s3_bucket TEXT COLLATE "C";
CREATE TABLE s3_uploads (
    command_seq     BIGINT  NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    instance_id     TEXT    COLLATE "C" NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    PRIMARY KEY (command_seq, instance_id)
);
CREATE INDEX s3_uploads_due ON s3_uploads (next_attempt_at);
ALTER TABLE commands ADD COLUMN alarm_name TEXT COLLATE "C";
ALTER TABLE commands ADD COLUMN triggered_json TEXT;
CREATE INDEX commands_watching_alarms ON commands (seq)
    WHERE alarm_name IS NOT NULL AND terminal = FALSE AND triggered_json IS NULL;
CREATE TABLE alarms (
    name             TEXT   COLLATE "C" PRIMARY KEY,
    state            TEXT   NOT NULL,
    reason           TEXT   NOT NULL,
    reason_data      TEXT,
    state_updated_at BIGINT NOT NULL,
    definition_json  TEXT   NOT NULL
);
CREATE TABLE output_streams (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_seq    BIGINT NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    instance_id    TEXT   COLLATE "C" NOT NULL,
    step           TEXT   COLLATE "C" NOT NULL,
    stream         TEXT   COLLATE "C" NOT NULL,
    log_group      TEXT   COLLATE "C",
    log_stream     TEXT   COLLATE "C" NOT NULL,
    committed      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    first_event_at BIGINT NOT NULL,
    last_event_at  BIGINT NOT NULL,
    UNIQUE (command_seq, instance_id, step, stream)
);
CREATE INDEX output_streams_by_name ON output_streams (log_group, log_stream)
    WHERE log_group IS NOT NULL;
CREATE INDEX output_streams_by_last_event ON output_streams (log_group, last_event_at, log_stream)
    WHERE log_group IS NOT NULL;
CREATE TABLE output_chunks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   BIGINT NOT NULL,
    command_seq BIGINT NOT NULL REFERENCES commands (seq) ON DELETE CASCADE,
    log_group   TEXT   COLLATE "C",
    at          BIGINT NOT NULL,
    byte_offset BIGINT NOT NULL,
    data        BYTEA  NOT NULL
);
CREATE INDEX output_chunks_by_command ON output_chunks (command_seq, id);
CREATE INDEX output_chunks_by_group ON output_chunks (log_group, at, id) WHERE log_group IS NOT NULL;
"#;

/// Version 5: resource groups, as SQLite's version 12.
const V5_RESOURCE_GROUPS: &str = r#"
CREATE TABLE resource_groups (
    name        TEXT   COLLATE "C" PRIMARY KEY,
    description TEXT,
    query_type  TEXT   NOT NULL,
    query       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
"#;

const MIGRATIONS: &[&str] = &[
    V1,
    V2_SERVER_SECRETS,
    V3_NOTIFICATIONS,
    V4_LIVE_OUTPUT,
    V5_RESOURCE_GROUPS,
];

/// The advisory lock every migration transaction takes ("fleetrun" in ASCII); advisory locks are
/// per database, so servers on other databases of the same cluster do not wait for each other.
const MIGRATION_LOCK: i64 = 0x666c_6565_7472_756e;

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    super::to_i64(MIGRATIONS.len())
}

/// Brings the database to [`latest_version`]; refuses a database written by a newer build.
pub(crate) async fn migrate(client: &mut Client) -> Result<()> {
    let latest = latest_version();
    loop {
        let tx = client.transaction().await?;
        // A migration may rewrite big tables: no statement timeout for it (the lock wait below
        // included: the holder is another server migrating, which finishes or dies).
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    BIGINT      NOT NULL PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let row = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?;
        let current: i64 = col(&row, 0)?;
        if current > latest {
            return Err(Error::Unusable(format!(
                "database schema version {current} is newer than this build supports ({latest})"
            )));
        }
        let Some(sql) = usize::try_from(current)
            .ok()
            .and_then(|done| MIGRATIONS.get(done))
        else {
            tx.commit().await?;
            return Ok(());
        };
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(current + 1)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = current + 1, "applied postgres schema migration");
    }
}
