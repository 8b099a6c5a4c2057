//! A checkout's object store kept small whatever the history: every fetch
//! adds a pack file, and libgit2 keeps each pack it has read open, so a
//! year of commits would be thousands of packs, open files and places to
//! look for each object. Past [`MAX_PACKS`] the objects every reference
//! reaches are written again as one pack and the old packs removed; and
//! libgit2 keeps at most [`MAX_OPEN_PACKS`] pack files open in the process.

use std::path::{Path, PathBuf};

use git2::Repository;

/// Packs a checkout holds before they are written again as one.
pub const MAX_PACKS: usize = 8;
/// Pack files libgit2 keeps open at once in this process.
pub const MAX_OPEN_PACKS: usize = 32;

/// Tells libgit2 to keep at most [`MAX_OPEN_PACKS`] pack files open; call
/// once at start, before any git operation.
pub fn limit_open_packs() {
    // SAFETY: a global option, set before any repository is opened.
    unsafe {
        let _ = git2::opts::set_mwindow_file_limit(MAX_OPEN_PACKS);
    }
}

/// The pack files of the repository whose git directory is `git_dir`.
pub fn packs(git_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(git_dir.join("objects/pack")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    out.sort();
    out
}

/// When the repository at `path` (a checkout or a bare repository) holds
/// more than [`MAX_PACKS`] packs: one pack of every object its references
/// and HEAD reach, and the packs that were there before removed (a pack
/// that appears meanwhile, or one marked `.keep`, stays). The packs
/// removed; 0 when there was nothing to do.
pub fn compact(path: &Path) -> Result<usize, git2::Error> {
    let repo = Repository::open(path)?;
    let before = packs(repo.path());
    if before.len() <= MAX_PACKS {
        return Ok(0);
    }
    let mut walk = repo.revwalk()?;
    for r in repo.references()?.flatten() {
        if let Ok(commit) = r.peel_to_commit() {
            walk.push(commit.id())?;
        }
    }
    let _ = walk.push_head();
    let mut builder = repo.packbuilder()?;
    builder.insert_walk(&mut walk)?;
    let dir = repo.path().join("objects/pack");
    builder.write(&dir, 0)?;
    let written = builder
        .name()
        .map(|n| dir.join(format!("pack-{n}.pack")))
        .ok_or_else(|| git2::Error::from_str("the new pack has no name"))?;
    let mut removed = 0;
    for old in before.iter().filter(|p| **p != written) {
        if old.with_extension("keep").exists() {
            continue;
        }
        // The index first: a pack without its index is never read.
        for ext in ["idx", "rev", "pack"] {
            let _ = std::fs::remove_file(old.with_extension(ext));
        }
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &Repository, n: usize) {
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let mut index = repo.index().unwrap();
        let file = repo.workdir().unwrap().join(format!("f{}", n % 3));
        std::fs::write(&file, format!("{n}\n")).unwrap();
        index
            .add_path(Path::new(file.file_name().unwrap()))
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, &format!("c{n}"), &tree, &parents)
            .unwrap();
    }

    #[test]
    fn many_packs_become_one_and_every_commit_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        // Each commit's objects in a pack of their own, as fetches leave them.
        for n in 0..12 {
            commit(&repo, n);
            let mut b = repo.packbuilder().unwrap();
            b.insert_commit(repo.head().unwrap().target().unwrap())
                .unwrap();
            b.write(&repo.path().join("objects/pack"), 0).unwrap();
            // Only the packs hold the history: no loose object stays.
            for e in std::fs::read_dir(repo.path().join("objects")).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    std::fs::remove_dir_all(p).unwrap();
                }
            }
        }
        assert!(packs(repo.path()).len() >= 12);
        let removed = compact(dir.path()).unwrap();
        assert!(removed >= 12, "removed {removed}");
        assert_eq!(packs(repo.path()).len(), 1);
        let fresh = Repository::open(dir.path()).unwrap();
        let mut walk = fresh.revwalk().unwrap();
        walk.push_head().unwrap();
        let mut seen = 0;
        for oid in walk {
            let c = fresh.find_commit(oid.unwrap()).unwrap();
            c.tree().unwrap();
            seen += 1;
        }
        assert_eq!(seen, 12);
        assert_eq!(compact(dir.path()).unwrap(), 0, "one pack: nothing to do");
    }
}
