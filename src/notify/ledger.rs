//! What each sink was told, so that one event is one message across
//! sweeps and restarts: `SINK<TAB>KEY` lines, appended as messages are
//! delivered, the newest [`KEEP`] read back at start. Without a state
//! directory it lives in memory only.

use std::{
    collections::{HashSet, VecDeque},
    io::Write,
    path::PathBuf,
    sync::Mutex,
};

use tracing::warn;

/// Deliveries remembered; older ones fall out (and the file is rewritten
/// when it holds twice this many).
pub const KEEP: usize = 10_000;
/// The most of the file read at start.
const MAX_FILE: u64 = 4 << 20;

pub struct Ledger {
    path: Option<PathBuf>,
    inner: Mutex<Told>,
}

#[derive(Default)]
struct Told {
    set: HashSet<String>,
    order: VecDeque<String>,
    lines_in_file: usize,
}

impl Ledger {
    pub fn open(path: Option<PathBuf>) -> Ledger {
        let mut told = Told::default();
        if let Some(p) = &path {
            for line in crate::files::read_bounded(p, MAX_FILE).lines() {
                told.add(line.to_string());
                told.lines_in_file += 1;
            }
        }
        Ledger {
            path,
            inner: Mutex::new(told),
        }
    }

    pub fn told(&self, sink: &str, key: &str) -> bool {
        self.lock().set.contains(&entry(sink, key))
    }

    /// Records a delivery; a failed write is logged, and memory still
    /// keeps it for this run.
    pub fn mark(&self, sink: &str, key: &str) {
        let line = entry(sink, key);
        let mut told = self.lock();
        if !told.add(line.clone()) {
            return;
        }
        let Some(path) = &self.path else { return };
        let written = if told.lines_in_file >= 2 * KEEP {
            let all: String = told.order.iter().map(|l| format!("{l}\n")).collect();
            told.lines_in_file = told.order.len();
            rewrite(path, &all)
        } else {
            told.lines_in_file += 1;
            append(path, &line)
        };
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "notification ledger not written; a restart may tell this event again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Told> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Told {
    fn add(&mut self, line: String) -> bool {
        if !self.set.insert(line.clone()) {
            return false;
        }
        self.order.push_back(line);
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Keys are mdb's own words, but a tab or newline in one would split the
/// file's lines: they are replaced.
fn entry(sink: &str, key: &str) -> String {
    format!("{sink}\t{key}").replace(['\n', '\r'], " ")
}

fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

fn rewrite(path: &std::path::Path, all: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, all)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_survive_a_reopen_and_old_ones_fall_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.told");
        let l = Ledger::open(Some(path.clone()));
        l.mark("hooks", "new_device:mac:aa");
        assert!(l.told("hooks", "new_device:mac:aa"));
        assert!(!l.told("ntfy", "new_device:mac:aa"));
        let again = Ledger::open(Some(path.clone()));
        assert!(again.told("hooks", "new_device:mac:aa"));
        for i in 0..(2 * KEEP + 5) {
            again.mark("hooks", &format!("k{i}"));
        }
        assert!(!again.told("hooks", "new_device:mac:aa"));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * KEEP, "{lines}");
        assert!(Ledger::open(Some(path)).told("hooks", &format!("k{}", 2 * KEEP + 4)));
    }
}
