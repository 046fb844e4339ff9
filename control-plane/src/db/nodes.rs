//! The node inventory.

use ringfence_proto::api::{
    Labels, NodeInfo, NodeReport, WireGuardInfo, WireGuardPeerStatus, WorkloadReport,
};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::pool::{json_col, u64_col, DbError, Tx};

/// One enrolled node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// What the API shows.
    pub info: NodeInfo,
    /// The generation of its last change that affects bundles (enrollment, WireGuard, revocation,
    /// reported workloads).
    pub generation: i64,
}

const COLUMNS: &str = "id, region, labels, hostname, wireguard, agent_version, applied_policy_version, \
    applied_bundle_version, geo_db_version, last_seen_ms, enrolled_ms, cert_not_after_ms, revoked_ms, generation, \
    tunnel_addresses, workloads, wireguard_peers";

fn from_row(row: &AnyRow) -> Result<NodeRow, DbError> {
    let wireguard: Option<String> = row.try_get("wireguard")?;
    let wireguard: Option<WireGuardInfo> = wireguard
        .map(|w| serde_json::from_str(&w))
        .transpose()
        .map_err(|e| DbError::Corrupt(format!("nodes.wireguard: {e}")))?;
    Ok(NodeRow {
        info: NodeInfo {
            node_id: row.try_get("id")?,
            region: row.try_get("region")?,
            labels: json_col(row, "labels")?,
            hostname: row.try_get("hostname")?,
            wireguard,
            agent_version: row.try_get("agent_version")?,
            applied_policy_version: u64_col(row, "applied_policy_version")?,
            applied_bundle_version: u64_col(row, "applied_bundle_version")?,
            geo_db_version: row.try_get("geo_db_version")?,
            last_seen_ms: row.try_get("last_seen_ms")?,
            enrolled_ms: row.try_get("enrolled_ms")?,
            cert_not_after_ms: row.try_get("cert_not_after_ms")?,
            revoked_ms: row.try_get("revoked_ms")?,
            tunnel_addresses: json_col(row, "tunnel_addresses")?,
            workloads: json_col(row, "workloads")?,
            wireguard_peers: json_col(row, "wireguard_peers")?,
        },
        generation: row.try_get("generation")?,
    })
}

fn wireguard_json(wg: &Option<WireGuardInfo>) -> Option<String> {
    wg.as_ref().map(|w| serde_json::to_string(w).expect("wireguard info serializes"))
}

/// Every node, in enrollment order.
pub async fn list(pool: &AnyPool) -> Result<Vec<NodeRow>, DbError> {
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM nodes ORDER BY enrolled_ms, id")).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

/// One node.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<NodeRow>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM nodes WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A node to enroll.
pub struct NewNode<'a> {
    /// Node id.
    pub id: &'a str,
    /// From the token.
    pub region: &'a str,
    /// From the token.
    pub labels: &'a Labels,
    /// As the agent says.
    pub hostname: Option<&'a str>,
    /// As the agent says.
    pub agent_version: Option<&'a str>,
    /// The accepted WireGuard identity (its key becomes the bound key).
    pub wireguard: &'a Option<WireGuardInfo>,
    /// Allocated tunnel addresses.
    pub tunnel_addresses: &'a [String],
    /// Certificate expiry.
    pub cert_not_after_ms: i64,
}

/// A newly enrolled node.
pub async fn insert(tx: &mut Tx, new: &NewNode<'_>, generation: i64) -> Result<(), DbError> {
    let now = ringfence_proto::now_ms();
    sqlx::query(
        "INSERT INTO nodes (id, region, labels, hostname, wireguard, agent_version, last_seen_ms, enrolled_ms, \
         cert_not_after_ms, generation, wg_key, tunnel_addresses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(new.id)
    .bind(new.region)
    .bind(serde_json::to_string(new.labels).expect("labels serialize"))
    .bind(new.hostname)
    .bind(wireguard_json(new.wireguard))
    .bind(new.agent_version)
    .bind(now)
    .bind(now)
    .bind(new.cert_not_after_ms)
    .bind(generation)
    .bind(new.wireguard.as_ref().map(|w| w.public_key.clone()))
    .bind(serde_json::to_string(new.tunnel_addresses).expect("addresses serialize"))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The node that holds WireGuard key `key` (revoked nodes keep theirs), if any.
pub async fn key_owner(tx: &mut Tx, key: &str) -> Result<Option<String>, DbError> {
    let row =
        sqlx::query("SELECT id FROM nodes WHERE wg_key = $1").bind(key).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Every unrevoked node's tunnel addresses, but `except`'s.
pub async fn taken_addresses(tx: &mut Tx, except: &str) -> Result<Vec<ipnet::IpNet>, DbError> {
    let rows = sqlx::query("SELECT tunnel_addresses FROM nodes WHERE revoked_ms IS NULL AND id <> $1")
        .bind(except)
        .fetch_all(&mut **tx)
        .await?;
    let mut out = Vec::new();
    for row in &rows {
        let list: Vec<String> = json_col(row, "tunnel_addresses")?;
        out.extend(list.iter().filter_map(|a| a.parse::<ipnet::IpNet>().ok()));
    }
    Ok(out)
}

/// Stores the node's accepted WireGuard identity (binding its key) at `generation`.
pub async fn set_wireguard(
    tx: &mut Tx,
    id: &str,
    wireguard: &WireGuardInfo,
    generation: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE nodes SET wireguard = $1, wg_key = $2, generation = $3 WHERE id = $4")
        .bind(wireguard_json(&Some(wireguard.clone())))
        .bind(&wireguard.public_key)
        .bind(generation)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Pins the node's tunnel addresses at `generation` (and in its WireGuard identity).
pub async fn set_addresses(
    tx: &mut Tx,
    node: &NodeRow,
    addresses: &[String],
    generation: i64,
) -> Result<(), DbError> {
    let wireguard =
        node.info.wireguard.clone().map(|w| WireGuardInfo { allowed_ips: addresses.to_vec(), ..w });
    sqlx::query("UPDATE nodes SET tunnel_addresses = $1, wireguard = $2, generation = $3 WHERE id = $4")
        .bind(serde_json::to_string(addresses).expect("addresses serialize"))
        .bind(wireguard_json(&wireguard))
        .bind(generation)
        .bind(&node.info.node_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a renewed certificate's expiry.
pub async fn set_cert_expiry(tx: &mut Tx, id: &str, not_after_ms: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE nodes SET cert_not_after_ms = $1, last_seen_ms = $2 WHERE id = $3")
        .bind(not_after_ms)
        .bind(ringfence_proto::now_ms())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks the node revoked; false if it is unknown or already revoked.
pub async fn revoke(tx: &mut Tx, id: &str, generation: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE nodes SET revoked_ms = $1, generation = $2 WHERE id = $3 AND revoked_ms IS NULL")
            .bind(ringfence_proto::now_ms())
            .bind(generation)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the node was heard from.
pub async fn touch(pool: &AnyPool, id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE nodes SET last_seen_ms = $1 WHERE id = $2")
        .bind(ringfence_proto::now_ms())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Applies a report's state (its WireGuard claim is checked and stored by [`set_wireguard`]).
pub async fn apply_report(tx: &mut Tx, current: &NodeRow, report: &NodeReport) -> Result<(), DbError> {
    let info = &current.info;
    let pick_u64 = |new: Option<u64>, old: Option<u64>| new.or(old).map(|v| v as i64);
    sqlx::query(
        "UPDATE nodes SET agent_version = $1, applied_policy_version = $2, \
         applied_bundle_version = $3, geo_db_version = $4, last_seen_ms = $5 WHERE id = $6",
    )
    .bind(report.agent_version.clone().or_else(|| info.agent_version.clone()))
    .bind(pick_u64(report.applied_policy_version, info.applied_policy_version))
    .bind(pick_u64(report.applied_bundle_version, info.applied_bundle_version))
    .bind(report.geo_db_version.clone().or_else(|| info.geo_db_version.clone()))
    .bind(ringfence_proto::now_ms())
    .bind(&info.node_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the node's WireGuard peers and their handshakes as reported (telemetry: no new
/// generation, bundles do not depend on it).
pub async fn set_wireguard_peers(
    tx: &mut Tx,
    id: &str,
    peers: &[WireGuardPeerStatus],
) -> Result<(), DbError> {
    sqlx::query("UPDATE nodes SET wireguard_peers = $1 WHERE id = $2")
        .bind(serde_json::to_string(peers).expect("peers serialize"))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores the node's reported workloads at `generation` (other nodes' bundles carry them).
pub async fn set_workloads(
    tx: &mut Tx,
    id: &str,
    workloads: &[WorkloadReport],
    generation: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE nodes SET workloads = $1, generation = $2 WHERE id = $3")
        .bind(serde_json::to_string(workloads).expect("workloads serialize"))
        .bind(generation)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records an acknowledged bundle.
pub async fn set_applied(
    tx: &mut Tx,
    id: &str,
    bundle_version: u64,
    policy_version: u64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE nodes SET applied_bundle_version = $1, applied_policy_version = $2, last_seen_ms = $3 WHERE id = $4",
    )
    .bind(bundle_version as i64)
    .bind(policy_version as i64)
    .bind(ringfence_proto::now_ms())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl NodeRow {
    /// The bound WireGuard key.
    pub fn bound_key(&self) -> Option<&str> {
        self.info.wireguard.as_ref().map(|w| w.public_key.as_str())
    }
}
