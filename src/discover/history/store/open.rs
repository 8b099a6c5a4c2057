//! Opening the history store: one scanner per `state_dir` (a lock file),
//! a torn last frame cut, a file that is no history log moved aside (never
//! wiped), a newer schema refused, and a store of an older mdb (redb,
//! `history.redb`) carried over once and kept as `history.redb.migrated`.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use super::{
    io_err, write_new, Error, HistoryStore, Inner, Opened, FILE_NAME, LOCK_NAME, RECENT_SWEEPS,
    SCHEMA, TMP_NAME,
};
use crate::{
    discover::history::{
        legacy,
        log::{key_of, replay, HEADER_LEN, MAGIC},
        pulse,
    },
    proto::StoreFrame,
};

/// How long a held lock is waited for before another scanner is said to
/// hold it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes the store's lock file, or says another scanner has it.
fn lock(dir: &Path, path: &Path) -> Result<File, Error> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_NAME))
        .map_err(|e| io_err(path, format!("cannot create its lock file: {e}")))?;
    // A lock is held by an open file, and a child forked just now holds
    // ours until it execs: a lock that frees within a moment was not
    // another scanner's.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let taken = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if taken {
            return Ok(f);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::InUse {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Opens (or creates) the store in `dir`. A file that is not a history log
/// is moved aside and said so; a newer schema or another process holding
/// the store is an error, never a silent wipe.
pub fn open(dir: &Path) -> Result<Opened, Error> {
    let started = Instant::now();
    let path = dir.join(FILE_NAME);
    let io = |detail: String| io_err(&path, detail);
    std::fs::create_dir_all(dir).map_err(|e| io(format!("cannot create its directory: {e}")))?;
    let lock = lock(dir, &path)?;
    let _ = std::fs::remove_file(dir.join(TMP_NAME));
    let mut set_aside = migrate_legacy(dir, &path)?;
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(&path) {
        f.read_to_end(&mut bytes)
            .map_err(|e| io(format!("cannot read it: {e}")))?;
    }
    if !bytes.is_empty() && (bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC) {
        set_aside = Some(move_aside(dir, &path)?);
        bytes.clear();
    }
    if bytes.is_empty() {
        // Marked a snapshot so that its frame is not empty: an empty
        // frame's header is eight zeros, the log's end.
        let empty = StoreFrame {
            snapshot: true,
            ..Default::default()
        };
        write_new(&path, &empty)?;
        bytes = std::fs::read(&path).map_err(|e| io(e.to_string()))?;
    }
    let mut schema = [0u8; 8];
    schema.copy_from_slice(&bytes[8..16]);
    let found = u64::from_le_bytes(schema);
    if found > SCHEMA {
        return Err(Error::Newer { path, found });
    }
    let log = replay(&bytes);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(e.to_string()))?;
    let rest = &bytes[log.good_len as usize..];
    let mut allocated = bytes.len() as u64;
    if rest.iter().any(|b| *b != 0) {
        // A torn last frame: cut, so the next sweep follows the last whole one.
        file.set_len(log.good_len)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(e.to_string()))?;
        allocated = log.good_len;
    }
    let records = log.current(crate::db::store::now_unix());
    let store = HistoryStore {
        path: path.clone(),
        inner: Arc::new(Mutex::new(Inner {
            file,
            compaction: None,
            rename_unsynced: false,
            _lock: lock,
            len: log.good_len,
            allocated,
            snapshot_len: log.good_len,
            digests: records
                .iter()
                .map(|r| (key_of(r).to_string(), pulse::digest(r)))
                .collect(),
            keep_sweeps_since: 0,
        })),
    };
    Ok(Opened {
        store,
        records,
        sweeps: log.sweeps.iter().rev().cloned().collect(),
        set_aside,
        recovered: log.torn,
        undecodable: log.undecodable,
        took: started.elapsed(),
    })
}

fn move_aside(dir: &Path, path: &Path) -> Result<PathBuf, Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("history");
    let aside = dir.join(format!(
        "{name}.unreadable-{}",
        crate::db::store::now_unix()
    ));
    std::fs::rename(path, &aside)
        .map_err(|e| io_err(path, format!("unreadable and cannot be moved aside: {e}")))?;
    Ok(aside)
}

/// Carries an older mdb's redb store into a new log, once. One that
/// cannot be read is moved aside (returned), never deleted.
fn migrate_legacy(dir: &Path, path: &Path) -> Result<Option<PathBuf>, Error> {
    let old = dir.join(legacy::FILE_NAME);
    if path.exists() || !old.exists() {
        return Ok(None);
    }
    match legacy::read(&old, RECENT_SWEEPS) {
        Ok((records, mut sweeps)) => {
            sweeps.reverse();
            let snapshot = StoreFrame {
                snapshot: true,
                pulses: records.iter().map(pulse::of).collect(),
                records,
                removed: Vec::new(),
                sweeps,
            };
            write_new(path, &snapshot)?;
            let kept = dir.join(format!("{}.migrated", legacy::FILE_NAME));
            std::fs::rename(&old, kept).map_err(|e| io_err(&old, e))?;
            Ok(None)
        }
        Err(_) => move_aside(dir, &old).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{
        discover::history::store::{force_schema, tests::record},
        proto::SweepSummary,
    };

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

    #[test]
    fn an_older_redb_store_is_carried_over_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = redb::Database::create(dir.path().join(legacy::FILE_NAME)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let hosts: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("hosts");
                let mut t = tx.open_table(hosts).unwrap();
                let r = record("ip:198.18.0.9", 8);
                t.insert("ip:198.18.0.9", r.encode_to_vec().as_slice())
                    .unwrap();
                let sweeps: redb::TableDefinition<u64, &[u8]> =
                    redb::TableDefinition::new("sweeps");
                let mut s = tx.open_table(sweeps).unwrap();
                let sum = SweepSummary {
                    at_unix: 77,
                    ..Default::default()
                };
                s.insert(77_000, sum.encode_to_vec().as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let opened = open(dir.path()).unwrap();
        assert_eq!(opened.records.len(), 1);
        assert_eq!(opened.sweeps[0].at_unix, 77);
        assert!(dir.path().join("history.redb.migrated").exists());
        drop(opened);
        assert_eq!(open(dir.path()).unwrap().records.len(), 1);
    }
}
