//! The history on disk: one redb file in the scanner's `state_dir`. Every
//! sweep is one transaction, so `kill -9` loses at most the sweep being
//! written and never leaves a half-written one. Records are the protobuf
//! `HostHistory` and `SweepSummary`; the schema version lives beside them.

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

use crate::proto::{HostHistory, SweepSummary};

const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
/// Keyed by the sweep's end in milliseconds.
const SWEEPS: TableDefinition<u64, &[u8]> = TableDefinition::new("sweeps");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";

/// The schema this build writes. Older stores are migrated in order; a
/// newer one is refused, since this build would drop what it cannot read.
pub const SCHEMA: u64 = 1;
pub const FILE_NAME: &str = "history.redb";
/// Sweep summaries loaded at start and served (a day of 5-minute sweeps).
pub const RECENT_SWEEPS: usize = 288;

/// One migration step: from the schema at its index + 1 to the next.
type Migration = fn(&redb::WriteTransaction) -> Result<(), redb::Error>;
/// Schema 1 is the first; a schema 2 adds its step here.
const MIGRATIONS: &[Migration] = &[];

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

    /// Writes one sweep in one transaction; returns how long it took.
    pub fn write(&self, batch: &Batch) -> Result<Duration, Error> {
        let started = Instant::now();
        let tx = self.begin_write()?;
        {
            let mut hosts = tx.open_table(HOSTS).map_err(|e| self.err(e))?;
            for key in &batch.removed {
                hosts.remove(key.as_str()).map_err(|e| self.err(e))?;
            }
            for r in &batch.records {
                let key = r.host.as_ref().map(|h| h.key.as_str()).unwrap_or_default();
                hosts
                    .insert(key, r.encode_to_vec().as_slice())
                    .map_err(|e| self.err(e))?;
            }
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
    };
    migrate(&store)?;
    let (records, undecodable) = load_records(&store)?;
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
    }
    tx.commit().map_err(|e| store.err(e))
}

fn load_records(store: &HistoryStore) -> Result<(Vec<HostHistory>, usize), Error> {
    let tx = store.db.begin_read().map_err(|e| store.err(e))?;
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
        assert!(e.contains("schema 2 is newer"), "{e}");
        assert!(dir.path().join(FILE_NAME).exists());
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
