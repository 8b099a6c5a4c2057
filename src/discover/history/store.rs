//! The history on disk: one redb file in the scanner's `state_dir`. Every
//! sweep is one transaction, so `kill -9` loses at most the sweep being
//! written and never leaves a half-written one. Records are the protobuf
//! `HostHistory` and `SweepSummary`; the schema version lives beside them.
//!
//! A sweep rewrites a host's record only when its stable form changed (an
//! address, a state, a transition, a finished hour...). What changes for
//! every host on every sweep (last seen, round trip, missed sweeps, the
//! current hour) is one `Pulse` value for all hosts, rewritten whole: a
//! sweep where nothing happened writes one value, not every record.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use prost::Message;
use redb::{DatabaseError, ReadableTable, StorageError, TableDefinition};

use super::pulse;
use crate::proto::{HostHistory, HostPulse, Pulse, SweepSummary};

const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
/// Keyed by the sweep's end in milliseconds.
const SWEEPS: TableDefinition<u64, &[u8]> = TableDefinition::new("sweeps");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
/// Schema 2: the pulse of every host, under [`PULSE_KEY`].
const PULSES: TableDefinition<&str, &[u8]> = TableDefinition::new("pulse");
const PULSE_KEY: &str = "current";

/// The schema this build writes. Older stores are migrated in order; a
/// newer one is refused, since this build would drop what it cannot read.
pub const SCHEMA: u64 = 2;
pub const FILE_NAME: &str = "history.redb";
/// Sweep summaries loaded at start and served (a day of 5-minute sweeps).
pub const RECENT_SWEEPS: usize = 288;

/// One migration step: from the schema at its index + 1 to the next.
type Migration = fn(&redb::WriteTransaction) -> Result<(), String>;
/// 1 → 2: the pulse table. Schema 1's records hold their last-seen times
/// themselves, and load as they are.
const MIGRATIONS: &[Migration] =
    &[|tx| tx.open_table(PULSES).map(|_| ()).map_err(|e| e.to_string())];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("history store {path}: schema {found} is newer than this mdb knows ({SCHEMA}); run a newer mdb, or move the file away to start an empty history")]
    Newer { path: PathBuf, found: u64 },
    #[error("history store {path} is open in another process (one scanner per state_dir)")]
    InUse { path: PathBuf },
    #[error("history store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// What opening found.
pub struct Opened {
    pub store: HistoryStore,
    pub records: Vec<HostHistory>,
    /// Newest first.
    pub sweeps: Vec<SweepSummary>,
    /// Where an unreadable file was moved, if one was.
    pub set_aside: Option<PathBuf>,
    /// redb had to walk the whole file to rebuild its free-space map (a
    /// crash before quick repair was on); the data is the last commit.
    pub recovered: bool,
    /// Records that did not decode (skipped, left in the file).
    pub undecodable: usize,
    pub took: Duration,
}

#[derive(Clone)]
pub struct HistoryStore {
    db: Arc<redb::Database>,
    path: PathBuf,
    written: Arc<std::sync::Mutex<Written>>,
}

/// What the file holds, as far as the next write needs to know: each
/// record's stable digest, and every host's pulse.
#[derive(Default)]
struct Written {
    digests: std::collections::HashMap<String, u64>,
    pulses: std::collections::BTreeMap<String, HostPulse>,
}

impl Written {
    fn of(records: &[HostHistory]) -> Written {
        let mut w = Written::default();
        for r in records {
            let key = key_of(r).to_string();
            w.digests.insert(key.clone(), pulse::digest(r));
            w.pulses.insert(key, pulse::of(r));
        }
        w
    }
}

fn key_of(r: &HostHistory) -> &str {
    r.host.as_ref().map(|h| h.key.as_str()).unwrap_or_default()
}

/// One sweep's writes.
#[derive(Default)]
pub struct Batch {
    pub records: Vec<HostHistory>,
    pub removed: Vec<String>,
    pub sweep: SweepSummary,
    /// The sweep's key: when it ended, in milliseconds.
    pub at_ms: u64,
    /// Sweep summaries older than this (unix seconds) are dropped.
    pub keep_sweeps_since: i64,
}

impl HistoryStore {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// A write transaction that also saves the allocator state (redb's
    /// quick repair): after `kill -9` the file opens at once, with no walk
    /// over every page to rebuild it.
    fn begin_write(&self) -> Result<redb::WriteTransaction, Error> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_quick_repair(true);
        Ok(tx)
    }

    /// The newest sweep's time and the newest `last_seen` of any host: from
    /// one whole sweep they are equal.
    pub fn newest(&self) -> Result<(i64, i64), Error> {
        let last_sweep = load_sweeps(self)?.first().map_or(0, |s| s.at_unix);
        let (records, _) = load_records(self)?;
        let newest = records
            .iter()
            .filter_map(|r| r.host.as_ref())
            .map(|h| h.last_seen_unix)
            .max()
            .unwrap_or(0);
        Ok((last_sweep, newest))
    }

    /// Writes one sweep in one transaction: the records whose stable form
    /// changed, and the pulse. Returns how long it took.
    pub fn write(&self, batch: &Batch) -> Result<Duration, Error> {
        let started = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Written {
            digests: written.digests.clone(),
            pulses: written.pulses.clone(),
        };
        let tx = self.begin_write()?;
        {
            let mut hosts = tx.open_table(HOSTS).map_err(|e| self.err(e))?;
            for key in &batch.removed {
                hosts.remove(key.as_str()).map_err(|e| self.err(e))?;
                next.digests.remove(key);
                next.pulses.remove(key);
            }
            for r in &batch.records {
                let key = key_of(r);
                next.pulses.insert(key.to_string(), pulse::of(r));
                let digest = pulse::digest(r);
                if next.digests.get(key) == Some(&digest) {
                    continue;
                }
                hosts
                    .insert(key, r.encode_to_vec().as_slice())
                    .map_err(|e| self.err(e))?;
                next.digests.insert(key.to_string(), digest);
            }
            let all = Pulse {
                hosts: next.pulses.values().cloned().collect(),
            };
            let mut pulses = tx.open_table(PULSES).map_err(|e| self.err(e))?;
            pulses
                .insert(PULSE_KEY, all.encode_to_vec().as_slice())
                .map_err(|e| self.err(e))?;
            let mut sweeps = tx.open_table(SWEEPS).map_err(|e| self.err(e))?;
            sweeps
                .insert(batch.at_ms, batch.sweep.encode_to_vec().as_slice())
                .map_err(|e| self.err(e))?;
            let cutoff = (batch.keep_sweeps_since.max(0) as u64).saturating_mul(1000);
            sweeps
                .retain_in(..cutoff, |_, _| false)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        // Only what was committed is known to be in the file.
        *written = next;
        Ok(started.elapsed())
    }
}

/// Opens (or creates) the store in `dir`. A file redb cannot read is moved
/// aside and said so; a newer schema or another process holding the file
/// is an error, never a silent wipe.
pub fn open(dir: &Path) -> Result<Opened, Error> {
    let started = Instant::now();
    let path = dir.join(FILE_NAME);
    let io = |detail: String| Error::Io {
        path: path.clone(),
        detail,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(format!("cannot create its directory: {e}")))?;
    let recovered = Arc::new(AtomicBool::new(false));
    let mut set_aside = None;
    let db = match create(&path, &recovered) {
        Ok(db) => db,
        Err(e) if unreadable(&e) => {
            let aside = dir.join(format!(
                "{FILE_NAME}.unreadable-{}",
                crate::db::store::now_unix()
            ));
            std::fs::rename(&path, &aside)
                .map_err(|r| io(format!("unreadable ({e}) and cannot be moved aside: {r}")))?;
            set_aside = Some(aside);
            create(&path, &recovered).map_err(|e| io(e.to_string()))?
        }
        Err(DatabaseError::DatabaseAlreadyOpen) => return Err(Error::InUse { path }),
        Err(e) => return Err(io(e.to_string())),
    };
    let store = HistoryStore {
        db: Arc::new(db),
        path: path.clone(),
        written: Arc::default(),
    };
    migrate(&store)?;
    let (records, undecodable) = load_records(&store)?;
    *store.written.lock().unwrap_or_else(|e| e.into_inner()) = Written::of(&records);
    let sweeps = load_sweeps(&store)?;
    Ok(Opened {
        store,
        records,
        sweeps,
        set_aside,
        recovered: recovered.load(Ordering::Relaxed),
        undecodable,
        took: started.elapsed(),
    })
}

fn create(path: &Path, recovered: &Arc<AtomicBool>) -> Result<redb::Database, DatabaseError> {
    let flag = recovered.clone();
    redb::Builder::new()
        .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
        .create(path)
}

/// Errors that mean the file is not a redb file this build can read.
fn unreadable(e: &DatabaseError) -> bool {
    match e {
        DatabaseError::Storage(StorageError::Corrupted(_)) | DatabaseError::UpgradeRequired(_) => {
            true
        }
        // A file cut short or made of junk reads past its end.
        DatabaseError::Storage(StorageError::Io(io)) => {
            matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            )
        }
        _ => false,
    }
}

/// Brings the schema to [`SCHEMA`], or refuses a newer one.
fn migrate(store: &HistoryStore) -> Result<(), Error> {
    let tx = store.begin_write()?;
    let found = {
        let meta = tx.open_table(META).map_err(|e| store.err(e))?;
        let v = meta.get(SCHEMA_KEY).map_err(|e| store.err(e))?;
        v.map(|v| v.value())
    };
    let found = match found {
        Some(v) => v,
        // A new file: the tables are created empty at the current schema.
        None => SCHEMA,
    };
    if found > SCHEMA {
        return Err(Error::Newer {
            path: store.path.clone(),
            found,
        });
    }
    for step in MIGRATIONS.iter().skip(found.saturating_sub(1) as usize) {
        step(&tx).map_err(|e| store.err(e))?;
    }
    {
        let mut meta = tx.open_table(META).map_err(|e| store.err(e))?;
        meta.insert(SCHEMA_KEY, SCHEMA).map_err(|e| store.err(e))?;
        tx.open_table(HOSTS).map_err(|e| store.err(e))?;
        tx.open_table(SWEEPS).map_err(|e| store.err(e))?;
        tx.open_table(PULSES).map_err(|e| store.err(e))?;
    }
    tx.commit().map_err(|e| store.err(e))
}

/// Every record, with its pulse put back.
fn load_records(store: &HistoryStore) -> Result<(Vec<HostHistory>, usize), Error> {
    let tx = store.db.begin_read().map_err(|e| store.err(e))?;
    let pulses: std::collections::HashMap<String, HostPulse> = {
        let table = tx.open_table(PULSES).map_err(|e| store.err(e))?;
        let value = table.get(PULSE_KEY).map_err(|e| store.err(e))?;
        value
            .and_then(|v| Pulse::decode(v.value()).ok())
            .map(|p| p.hosts.into_iter().map(|h| (h.key.clone(), h)).collect())
            .unwrap_or_default()
    };
    let now = crate::db::store::now_unix();
    let hosts = tx.open_table(HOSTS).map_err(|e| store.err(e))?;
    let mut out = Vec::new();
    let mut bad = 0;
    for row in hosts.iter().map_err(|e| store.err(e))? {
        let (key, value) = row.map_err(|e| store.err(e))?;
        match HostHistory::decode(value.value()) {
            Ok(mut r) => {
                if let Some(h) = r.host.as_mut() {
                    h.key = key.value().to_string();
                }
                if let Some(p) = pulses.get(key.value()) {
                    pulse::apply(&mut r, p, now);
                }
                out.push(r);
            }
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

fn load_sweeps(store: &HistoryStore) -> Result<Vec<SweepSummary>, Error> {
    let tx = store.db.begin_read().map_err(|e| store.err(e))?;
    let sweeps = tx.open_table(SWEEPS).map_err(|e| store.err(e))?;
    let mut out = Vec::new();
    for row in sweeps.iter().map_err(|e| store.err(e))?.rev() {
        let (_, value) = row.map_err(|e| store.err(e))?;
        if let Ok(s) = SweepSummary::decode(value.value()) {
            out.push(s);
        }
        if out.len() >= RECENT_SWEEPS {
            break;
        }
    }
    Ok(out)
}

/// Writes `schema` into the store at `dir`: for tests of a store left by a
/// newer mdb.
pub fn force_schema(dir: &Path, schema: u64) -> Result<(), Error> {
    let opened = open(dir)?;
    let s = opened.store;
    let tx = s.db.begin_write().map_err(|e| s.err(e))?;
    {
        let mut meta = tx.open_table(META).map_err(|e| s.err(e))?;
        meta.insert(SCHEMA_KEY, schema).map_err(|e| s.err(e))?;
    }
    tx.commit().map_err(|e| s.err(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DiscoveredHost;

    fn record(key: &str, first: i64) -> HostHistory {
        HostHistory {
            host: Some(DiscoveredHost {
                key: key.into(),
                first_seen_unix: first,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_sweep_written_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        assert!(opened.records.is_empty() && opened.set_aside.is_none());
        let batch = Batch {
            records: vec![
                record("mac:00:16:3e:00:00:01", 7),
                record("ip:198.18.0.9", 8),
            ],
            sweep: SweepSummary {
                at_unix: 100,
                answered: 2,
                ..Default::default()
            },
            at_ms: 100_000,
            ..Default::default()
        };
        opened.store.write(&batch).unwrap();
        opened
            .store
            .write(&Batch {
                removed: vec!["ip:198.18.0.9".into()],
                at_ms: 200_000,
                keep_sweeps_since: 150,
                ..Default::default()
            })
            .unwrap();
        drop(opened);
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records.len(), 1);
        assert_eq!(again.records[0].host.as_ref().unwrap().first_seen_unix, 7);
        assert_eq!(again.sweeps.len(), 1, "the sweep before 150 s is gone");
        assert!(!again.recovered);
    }

    #[test]
    fn a_newer_schema_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        force_schema(dir.path(), SCHEMA + 1).unwrap();
        let e = open(dir.path()).err().expect("refused").to_string();
        assert!(
            e.contains(&format!("schema {} is newer", SCHEMA + 1)),
            "{e}"
        );
        assert!(dir.path().join(FILE_NAME).exists());
    }

    /// A sweep where nothing but the pulse changed writes no record; after
    /// reopening, the pulse is back in every record.
    #[test]
    fn unchanged_records_are_not_rewritten_and_the_pulse_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        let mut r = record("mac:00:16:3e:00:00:01", 7);
        opened
            .store
            .write(&Batch {
                records: vec![r.clone()],
                at_ms: 1,
                ..Default::default()
            })
            .unwrap();
        let before = opened.store.written.lock().unwrap().digests.clone();
        r.host.as_mut().unwrap().last_seen_unix = 500;
        opened
            .store
            .write(&Batch {
                records: vec![r.clone()],
                at_ms: 2,
                ..Default::default()
            })
            .unwrap();
        // The stored record is still the first one: only the pulse moved.
        let tx = opened.store.db.begin_read().unwrap();
        let raw = tx.open_table(HOSTS).unwrap();
        let stored =
            HostHistory::decode(raw.get("mac:00:16:3e:00:00:01").unwrap().unwrap().value())
                .unwrap();
        assert_eq!(stored.host.unwrap().last_seen_unix, 0);
        assert_eq!(opened.store.written.lock().unwrap().digests, before);
        drop((raw, tx, opened));
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records[0].host.as_ref().unwrap().last_seen_unix, 500);
    }

    #[test]
    fn a_schema_1_store_is_migrated_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        opened
            .store
            .write(&Batch {
                records: vec![record("ip:198.18.0.9", 8)],
                at_ms: 1,
                ..Default::default()
            })
            .unwrap();
        drop(opened);
        force_schema(dir.path(), 1).unwrap();
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records.len(), 1);
        let tx = again.store.db.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        assert_eq!(meta.get(SCHEMA_KEY).unwrap().unwrap().value(), SCHEMA);
    }

    #[test]
    fn junk_is_moved_aside_not_wiped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 40_000]).unwrap();
        let opened = open(dir.path()).unwrap();
        let aside = opened.set_aside.expect("moved aside");
        assert_eq!(std::fs::read(&aside).unwrap(), vec![0x5a; 40_000]);
        assert!(opened.records.is_empty());
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path()).unwrap();
        let e = open(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("open in another process"), "{e}");
    }
}
