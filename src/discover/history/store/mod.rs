//! The history on disk: one append-only log, `history.log`, in the
//! scanner's `state_dir`. Each sweep appends one frame (length, CRC-32,
//! protobuf `StoreFrame`) and syncs it: the records whose stable form
//! changed, the keys removed, the pulse of every host it touched (last
//! seen, round trip, missed sweeps, the current hour) and its summary. A
//! sweep where nothing happened writes a few bytes per host, not every
//! record.
//!
//! `kill -9` or a power cut mid-write leaves at most a torn last frame: its
//! checksum fails, it is cut off at the next start and nothing before it is
//! lost; there is no repair walk. The file grows by zeros written ahead
//! (`GROW`), which frames overwrite; eight zeros where a frame would start,
//! and nothing but zeros after, are the log's end. When the log has grown past half again
//! its last snapshot, it is compacted off the sweep's path, in a thread:
//! one snapshot frame of what the log held is written to a new file; then,
//! briefly holding the store, the frames appended meanwhile are copied
//! after it, and it is synced and renamed over the log. Opening one (and
//! carrying an older mdb's over) is `open`.

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod open;

pub use open::open;

use super::{
    log::{framed, header, key_of, replay, HEADER_LEN},
    pulse,
};
use crate::proto::{HostHistory, StoreFrame, SweepSummary};

/// The schema this build writes; a newer one is refused, since this build
/// would drop what it cannot read. 1 and 2 were redb files (`legacy.rs`).
pub const SCHEMA: u64 = 3;
pub const FILE_NAME: &str = "history.log";
/// Held (flock) while a scanner uses the store: one scanner per state_dir.
const LOCK_NAME: &str = "history.lock";
const TMP_NAME: &str = "history.log.tmp";
pub use super::log::RECENT_SWEEPS;
/// The log is compacted when it passes its last snapshot by half, and by
/// at least this much.
const COMPACT_SLACK: u64 = 64 * 1024;
/// The log grows by this much of zeros at a time, so that most sweeps
/// overwrite blocks the file already has and their sync carries data
/// alone, as SQLite's reused WAL does; growing the file costs a journal
/// commit on every sync. Zeros are written, not `fallocate`d: a first
/// write into an unwritten extent costs the same commit.
const GROW: u64 = 64 * 1024;

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
    /// A torn last frame (a crash mid-write) was cut off.
    pub recovered: bool,
    /// Frames that passed their checksum but did not decode (the log is
    /// cut there).
    pub undecodable: usize,
    pub took: Duration,
}

#[derive(Clone)]
pub struct HistoryStore {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    file: File,
    /// The compaction running in the background, if one is.
    compaction: Option<std::thread::JoinHandle<()>>,
    /// The flock that keeps a second scanner out, held while open.
    _lock: File,
    /// Where the next frame goes: the end of the last whole frame.
    len: u64,
    /// The file's length: zeros past `len`, written ahead (`GROW`).
    allocated: u64,
    snapshot_len: u64,
    /// Each record's stable digest, as written.
    digests: HashMap<String, u64>,
    keep_sweeps_since: i64,
    /// A compaction renamed its file over the log and has not yet synced
    /// the directory (nor the tail it copied): a write that comes first
    /// does both, so what it reports durable is.
    rename_unsynced: bool,
}

/// One sweep's writes.
#[derive(Default)]
pub struct Batch {
    pub records: Vec<HostHistory>,
    pub removed: Vec<String>,
    pub sweep: SweepSummary,
    /// When the sweep ended, in milliseconds.
    pub at_ms: u64,
    /// Sweep summaries older than this (unix seconds) are dropped.
    pub keep_sweeps_since: i64,
}

impl HistoryStore {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length on disk, the zeros written ahead included.
    pub fn size(&self) -> u64 {
        self.lock().allocated
    }

    /// The end of its last whole frame.
    pub fn written(&self) -> u64 {
        self.lock().len
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        io_err(&self.path, e)
    }

    /// The newest sweep's time and the newest `last_seen` of any host: from
    /// whole sweeps they are equal.
    pub fn newest(&self) -> Result<(i64, i64), Error> {
        let _held = self.lock();
        let bytes = std::fs::read(&self.path).map_err(|e| self.err(e))?;
        let log = replay(&bytes);
        let newest = log
            .current(crate::db::store::now_unix())
            .iter()
            .filter_map(|r| r.host.as_ref())
            .map(|h| h.last_seen_unix)
            .max()
            .unwrap_or(0);
        Ok((log.sweeps.back().map_or(0, |s| s.at_unix), newest))
    }

    /// Appends one sweep and syncs it: the records whose stable form
    /// changed, and the pulse. Returns how long it took.
    pub fn write(&self, batch: &Batch) -> Result<Duration, Error> {
        let started = Instant::now();
        let mut inner = self.lock();
        let mut changed = Vec::new();
        let mut digests = Vec::new();
        for r in &batch.records {
            let digest = pulse::digest(r);
            if inner.digests.get(key_of(r)) != Some(&digest) {
                changed.push(r.clone());
                digests.push((key_of(r).to_string(), digest));
            }
        }
        let frame = StoreFrame {
            snapshot: false,
            records: changed,
            removed: batch.removed.clone(),
            pulses: batch.records.iter().map(pulse::of).collect(),
            sweeps: vec![batch.sweep.clone()],
        };
        let bytes = framed(&frame);
        let end = inner.len + bytes.len() as u64;
        let allocated = inner.allocated.max(end.div_ceil(GROW) * GROW);
        if allocated > inner.allocated {
            let zeros = vec![0u8; (allocated - end) as usize];
            inner
                .file
                .write_all_at(&zeros, end)
                .map_err(|e| self.err(e))?;
        }
        // At the end of the last whole frame: a write that failed halfway
        // is overwritten by the next.
        inner
            .file
            .write_all_at(&bytes, inner.len)
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| self.err(e))?;
        inner.allocated = allocated;
        if inner.rename_unsynced {
            sync_dir(&self.path).map_err(|e| self.err(e))?;
            inner.rename_unsynced = false;
        }
        inner.len += bytes.len() as u64;
        for k in &batch.removed {
            inner.digests.remove(k);
        }
        inner.digests.extend(digests);
        inner.keep_sweeps_since = batch.keep_sweeps_since;
        let due = inner.len > inner.snapshot_len + inner.snapshot_len / 2 + COMPACT_SLACK;
        let idle = inner.compaction.as_ref().is_none_or(|t| t.is_finished());
        if due && idle {
            let store = self.clone();
            let snapshot_at = inner.len;
            inner.compaction = Some(std::thread::spawn(move || {
                // The sweep is safe already; a failed compaction is retried
                // after the next sweep.
                if let Err(e) = store.compact(snapshot_at) {
                    tracing::warn!(error = %e, "history log not compacted; retried after the next sweep");
                }
            }));
        }
        Ok(started.elapsed())
    }

    /// Waits for a compaction in progress (tests, benchmarks, shutdown).
    pub fn settle(&self) {
        let running = self.lock().compaction.take();
        if let Some(t) = running {
            let _ = t.join();
        }
    }

    /// Rewrites the log as one snapshot of its first `upto` bytes, then the
    /// frames appended since, in a new file renamed over it. Every sync
    /// happens with the store free: the snapshot's before the store is
    /// taken, the tail's and the directory's after (a write that comes
    /// between makes them itself); held, only the tail is copied and the
    /// file renamed, so a sweep's write never waits for a disk.
    fn compact(&self, upto: u64) -> Result<(), Error> {
        let path = &self.path;
        let mut f = File::open(path).map_err(|e| self.err(e))?;
        let mut bytes = vec![0u8; upto as usize];
        f.read_exact(&mut bytes).map_err(|e| self.err(e))?;
        let keep = self.lock().keep_sweeps_since;
        let log = replay(&bytes);
        drop(bytes);
        let snapshot = StoreFrame {
            snapshot: true,
            records: log.records.into_values().collect(),
            removed: Vec::new(),
            pulses: log.pulses.into_values().collect(),
            sweeps: log
                .sweeps
                .into_iter()
                .filter(|s| s.at_unix >= keep)
                .collect(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(TMP_NAME);
        let io = |e: std::io::Error| self.err(e);
        let mut out = File::create(&tmp).map_err(io)?;
        out.write_all(&header(SCHEMA)).map_err(io)?;
        out.write_all(&framed(&snapshot)).map_err(io)?;
        out.sync_all().map_err(io)?;
        let snapshot_len = out.metadata().map_err(io)?.len();
        {
            let mut inner = self.lock();
            let mut tail = vec![0u8; (inner.len - upto) as usize];
            inner.file.read_exact_at(&mut tail, upto).map_err(io)?;
            out.write_all(&tail).map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            inner.file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io)?;
            inner.len = snapshot_len + tail.len() as u64;
            inner.allocated = inner.len;
            inner.snapshot_len = snapshot_len;
            inner.rename_unsynced = true;
        }
        out.sync_data().map_err(io)?;
        sync_dir(path).map_err(io)?;
        self.lock().rename_unsynced = false;
        Ok(())
    }
}

/// Syncs the directory holding `path` (its entries: a rename).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path.parent().unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// A new log holding `snapshot`, written beside `path`, synced and renamed
/// over it; returns it opened, and its length.
fn write_new(path: &Path, snapshot: &StoreFrame) -> Result<(File, u64), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(TMP_NAME);
    let io = |e: std::io::Error| io_err(path, e);
    let mut f = File::create(&tmp).map_err(io)?;
    let body = framed(snapshot);
    f.write_all(&header(SCHEMA)).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    Ok((file, HEADER_LEN + body.len() as u64))
}

/// Writes `schema` into the store at `dir`: for tests of a store left by a
/// newer mdb.
pub fn force_schema(dir: &Path, schema: u64) -> Result<(), Error> {
    let opened = open(dir)?;
    let s = opened.store;
    let inner = s.lock();
    inner
        .file
        .write_all_at(&schema.to_le_bytes(), 8)
        .and_then(|()| inner.file.sync_data())
        .map_err(|e| s.err(e))
}

#[cfg(test)]
pub(super) mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::DiscoveredHost;

    pub(super) fn record(key: &str, first: i64) -> HostHistory {
        HostHistory {
            host: Some(DiscoveredHost {
                key: key.into(),
                first_seen_unix: first,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn batch(records: Vec<HostHistory>, at: i64) -> Batch {
        Batch {
            records,
            sweep: SweepSummary {
                at_unix: at,
                ..Default::default()
            },
            at_ms: at as u64 * 1000,
            ..Default::default()
        }
    }

    #[test]
    fn a_sweep_written_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        assert!(opened.records.is_empty() && opened.set_aside.is_none());
        let two = vec![
            record("mac:00:16:3e:00:00:01", 7),
            record("ip:198.18.0.9", 8),
        ];
        opened.store.write(&batch(two, 100)).unwrap();
        opened
            .store
            .write(&Batch {
                removed: vec!["ip:198.18.0.9".into()],
                ..batch(Vec::new(), 200)
            })
            .unwrap();
        drop(opened);
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records.len(), 1);
        assert_eq!(again.records[0].host.as_ref().unwrap().first_seen_unix, 7);
        assert_eq!(again.sweeps.len(), 2);
        assert_eq!(again.sweeps[0].at_unix, 200, "newest first");
        assert!(!again.recovered);
    }

    /// A sweep where nothing but the pulse changed appends no record; after
    /// reopening, the pulse is back in every record.
    #[test]
    fn unchanged_records_are_not_rewritten_and_the_pulse_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        let mut r = record("mac:00:16:3e:00:00:01", 7);
        opened.store.write(&batch(vec![r.clone()], 1)).unwrap();
        let after_first = opened.store.written();
        r.host.as_mut().unwrap().last_seen_unix = 500;
        opened.store.write(&batch(vec![r.clone()], 2)).unwrap();
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let at = after_first as usize;
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let second = StoreFrame::decode(&bytes[at + 8..at + 8 + len]).unwrap();
        assert!(second.records.is_empty(), "only the pulse: {second:?}");
        assert_eq!(second.pulses[0].last_seen_unix, 500);
        drop(opened);
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records[0].host.as_ref().unwrap().last_seen_unix, 500);
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_nothing_before_it_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        opened
            .store
            .write(&batch(vec![record("ip:198.18.0.1", 1)], 1))
            .unwrap();
        let whole = opened.store.written();
        drop(opened);
        let path = dir.path().join(FILE_NAME);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Into the zeros written ahead, where the next frame would go.
        f.write_all_at(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9], whole)
            .unwrap();
        drop(f);
        let again = open(dir.path()).unwrap();
        assert!(again.recovered);
        assert_eq!(again.records.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        again
            .store
            .write(&batch(vec![record("ip:198.18.0.2", 2)], 2))
            .unwrap();
        drop(again);
        assert_eq!(open(dir.path()).unwrap().records.len(), 2);
    }

    /// Sweeps overwrite zeros written ahead: the file grows by `GROW` at
    /// a time, and reopening takes the zeros for the log's end, not for a
    /// torn frame.
    #[test]
    fn the_file_grows_ahead_of_its_frames_and_reopens_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let opened = open(dir.path()).unwrap();
        let mut lengths = std::collections::BTreeSet::new();
        for k in 0..20 {
            let r = record(&format!("ip:198.18.0.{k}"), k);
            opened.store.write(&batch(vec![r], k)).unwrap();
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert_eq!(on_disk % GROW, 0, "grown by whole steps: {on_disk}");
            assert!(opened.store.written() < on_disk);
            lengths.insert(on_disk);
        }
        assert_eq!(lengths.len(), 1, "twenty small sweeps, one growth");
        let written = opened.store.written();
        drop(opened);
        let again = open(dir.path()).unwrap();
        assert!(!again.recovered, "zeros are no torn frame");
        assert_eq!(again.records.len(), 20);
        assert_eq!(again.store.written(), written);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROW);
        again
            .store
            .write(&batch(vec![record("ip:198.18.0.99", 99)], 99))
            .unwrap();
        drop(again);
        assert_eq!(open(dir.path()).unwrap().records.len(), 21);
    }

    #[test]
    fn the_log_is_compacted_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path()).unwrap();
        let hosts: Vec<HostHistory> = (0..50)
            .map(|i| record(&format!("ip:198.18.0.{i}"), i))
            .collect();
        let mut sizes = Vec::new();
        for k in 0..400 {
            let mut now = hosts.clone();
            for r in &mut now {
                r.host.as_mut().unwrap().last_seen_unix = k;
            }
            opened.store.write(&batch(now, k)).unwrap();
            opened.store.settle();
            sizes.push(opened.store.size());
        }
        let max = *sizes.iter().max().unwrap();
        assert!(
            sizes.windows(2).any(|w| w[1] < w[0]),
            "compacted at least once: {sizes:?}"
        );
        assert!(max < 200_000, "bounded: {max}");
        drop(opened);
        let again = open(dir.path()).unwrap();
        assert_eq!(again.records.len(), 50);
        assert!(again
            .records
            .iter()
            .all(|r| r.host.as_ref().unwrap().last_seen_unix == 399));
        assert_eq!(again.sweeps.len(), RECENT_SWEEPS);
        assert_eq!(again.sweeps[0].at_unix, 399);
    }
}
