//! The schema, as numbered migrations applied in order and recorded in `schema_migrations`.
//! The SQL is common to SQLite and PostgreSQL: BIGINT and TEXT columns only, times as Unix
//! milliseconds, JSON as text, no auto-increment (sequence numbers are taken under the writer
//! lock).

use sqlx::Row;

use super::pool::{Backend, Db, DbError};

/// (version, name, statements). Version 2 forgets what nodes claimed about their WireGuard
/// identity under version 1 (unchecked): they report it again and it is checked then.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial schema",
        r#"
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters (name, value) VALUES ('generation', 0);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT,
    node_id TEXT
);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    labels TEXT NOT NULL,
    hostname TEXT,
    wireguard TEXT,
    agent_version TEXT,
    applied_policy_version BIGINT,
    applied_bundle_version BIGINT,
    geo_db_version TEXT,
    last_seen_ms BIGINT,
    enrolled_ms BIGINT NOT NULL,
    cert_not_after_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    generation BIGINT NOT NULL
);
CREATE TABLE policies (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    selector TEXT NOT NULL,
    yaml TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    author TEXT NOT NULL,
    comment TEXT,
    rollback_of BIGINT,
    created_ms BIGINT NOT NULL,
    generation BIGINT NOT NULL
);
CREATE TABLE events (
    node_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, id)
);
CREATE INDEX events_received ON events (received_ms);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)
"#,
    ),
    (
        2,
        "mesh identity owned by the control plane",
        r#"
ALTER TABLE nodes ADD COLUMN wg_key TEXT;
ALTER TABLE nodes ADD COLUMN tunnel_addresses TEXT NOT NULL DEFAULT '[]';
UPDATE nodes SET wireguard = NULL;
CREATE UNIQUE INDEX nodes_wg_key ON nodes (wg_key)
"#,
    ),
    (3, "workloads reported by nodes", "ALTER TABLE nodes ADD COLUMN workloads TEXT NOT NULL DEFAULT '[]'"),
    (
        5,
        "console accounts, sessions and alert acknowledgements",
        r#"
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE alert_acks (
    node_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    account TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, event_id)
);
CREATE INDEX events_listing ON events (received_ms, node_id, id);
CREATE INDEX events_node_received ON events (node_id, received_ms);
CREATE INDEX events_kind_received ON events (kind, received_ms)
"#,
    ),
    (
        6,
        "node history for evidence: reporting gaps and geo database, policy and agent versions over time",
        r#"
CREATE TABLE node_history (
    node_id TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX node_history_time ON node_history (time_ms)
"#,
    ),
    (
        7,
        "WireGuard peers and their last handshakes as nodes report them",
        "ALTER TABLE nodes ADD COLUMN wireguard_peers TEXT NOT NULL DEFAULT '[]'",
    ),
];

/// Applies the migrations not yet recorded, each in its own transaction (under the writer lock,
/// so replicas starting together apply each once).
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
    )
    .execute(db.pool())
    .await
    .or_else(|e| match (db.backend(), &e) {
        // Two replicas racing on CREATE TABLE IF NOT EXISTS in PostgreSQL: the loser sees a
        // unique violation on the catalog; the table exists either way.
        (Backend::Postgres, sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505") => Ok(Default::default()),
        _ => Err(e),
    })?;
    for (version, name, sql) in MIGRATIONS {
        let mut tx = db.begin().await?;
        let done = sqlx::query("SELECT COUNT(*) FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
        if done > 0 {
            continue;
        }
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(*name)
            .bind(ringfence_proto::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied database migration");
    }
    Ok(())
}
