//! The agent's geo-IP database: loading it (with clear errors) and describing it for the kernel's
//! per-slot `GeoInfo` record, which `ringfence-agent status` reads back.
use ringfence_common::GeoInfo;
use ringfence_policy::{geo::GeoDb, Compiled};
use serde::Serialize;

use crate::config::RunConfig;

/// Loads the databases named by `--geoip-db`, if any.
pub fn load(cfg: &RunConfig) -> Result<Option<GeoDb>, String> {
    if cfg.geoip_db.is_empty() {
        return Ok(None);
    }
    if cfg.geoip_db.len() > 2 {
        return Err(format!(
            "--geoip-db given {} times; give one database, or one per address family",
            cfg.geoip_db.len()
        ));
    }
    GeoDb::open(&cfg.geoip_db, cfg.geoip_field.as_deref()).map(Some).map_err(|e| format!("--geoip-db: {e}"))
}

/// The kernel-side record of which database a compiled policy used.
pub fn info(db: Option<&GeoDb>, compiled: &Compiled) -> GeoInfo {
    let mut info = GeoInfo {
        entries_v4: compiled.geo4.len() as u32,
        entries_v6: compiled.geo6.len() as u32,
        ..GeoInfo::default()
    };
    if let Some(db) = db {
        let i = db.info();
        info.build_epoch = i.build_epoch;
        info.networks = (i.networks_v4 + i.networks_v6) as u32;
        let n = i.database_type.len().min(info.db_type.len());
        info.db_type[..n].copy_from_slice(&i.database_type.as_bytes()[..n]);
    }
    info
}

/// [`GeoInfo`] for people: what `status` prints.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GeoStatus {
    pub database_type: Option<String>,
    pub build_date: Option<String>,
    pub networks: u32,
    pub entries_v4: u32,
    pub entries_v6: u32,
}

impl From<&GeoInfo> for GeoStatus {
    fn from(g: &GeoInfo) -> Self {
        let end = g.db_type.iter().position(|&b| b == 0).unwrap_or(g.db_type.len());
        let db_type = String::from_utf8_lossy(&g.db_type[..end]).into_owned();
        GeoStatus {
            database_type: (!db_type.is_empty()).then_some(db_type),
            build_date: (g.build_epoch != 0).then(|| utc_date(g.build_epoch)),
            networks: g.networks,
            entries_v4: g.entries_v4,
            entries_v6: g.entries_v6,
        }
    }
}

/// "YYYY-MM-DD" (UTC) of a Unix time (the date part of the wire contract's RFC 3339 form).
pub fn utc_date(epoch: u64) -> String {
    let millis = i64::try_from(epoch).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    ringfence_proto::api::rfc3339_ms(millis)[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_000_000), "2026-11-18");
    }

    #[test]
    fn status_of_an_empty_record() {
        let s = GeoStatus::from(&GeoInfo::default());
        assert_eq!((s.database_type, s.build_date, s.networks), (None, None, 0));
    }
}
