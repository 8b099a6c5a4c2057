//! Reading a history store of an older mdb (a redb file, `history.redb`,
//! schema 1 or 2), once, to carry it into the log (`store.rs`).

use std::{collections::HashMap, path::Path};

use prost::Message;
use redb::{ReadableTable, TableDefinition};

use super::pulse;
use crate::proto::{HostHistory, Pulse, SweepSummary};

pub const FILE_NAME: &str = "history.redb";

const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const SWEEPS: TableDefinition<u64, &[u8]> = TableDefinition::new("sweeps");
const PULSES: TableDefinition<&str, &[u8]> = TableDefinition::new("pulse");

/// Every record (with its pulse put back) and the newest `recent` sweeps,
/// newest first.
pub fn read(path: &Path, recent: usize) -> Result<(Vec<HostHistory>, Vec<SweepSummary>), String> {
    let db = redb::Database::open(path).map_err(|e| e.to_string())?;
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let pulses: HashMap<String, crate::proto::HostPulse> = match tx.open_table(PULSES) {
        Ok(t) => t
            .get("current")
            .map_err(|e| e.to_string())?
            .and_then(|v| Pulse::decode(v.value()).ok())
            .map(|p| p.hosts.into_iter().map(|h| (h.key.clone(), h)).collect())
            .unwrap_or_default(),
        // Schema 1 had no pulse: its records hold their own times.
        Err(_) => HashMap::new(),
    };
    let now = crate::db::store::now_unix();
    let mut records = Vec::new();
    let hosts = tx.open_table(HOSTS).map_err(|e| e.to_string())?;
    for row in hosts.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let Ok(mut r) = HostHistory::decode(value.value()) else {
            continue;
        };
        if let Some(h) = r.host.as_mut() {
            h.key = key.value().to_string();
        }
        if let Some(p) = pulses.get(key.value()) {
            pulse::apply(&mut r, p, now);
        }
        records.push(r);
    }
    let mut sweeps = Vec::new();
    let table = tx.open_table(SWEEPS).map_err(|e| e.to_string())?;
    for row in table.iter().map_err(|e| e.to_string())?.rev() {
        let (_, value) = row.map_err(|e| e.to_string())?;
        if let Ok(s) = SweepSummary::decode(value.value()) {
            sweeps.push(s);
        }
        if sweeps.len() >= recent {
            break;
        }
    }
    Ok((records, sweeps))
}
