//! A database received from a server (or whatever answers in its place):
//! believed only once it validates with the code of `mdb validate`. The
//! machines are emitted as YAML and read back, `mdb.yaml`'s checks and
//! policy with them, and the revision must be a commit id. Every client
//! that acts on or writes out what a server sent (the runner, the DHCP
//! follower, `mdb inventory|cluster|dhcp|get --server`) goes through here
//! first, so nothing a DB writer could never merge is acted on.

use crate::proto::{GetReadinessResponse, Machine};

use super::emit;

/// What a checkout on disk is called where a revision would be named.
pub const WORKING_TREE: &str = "working tree";

/// The longest revision: a SHA-256 commit id.
const MAX_REVISION: usize = 64;

/// A revision is a commit id: 4 to 64 lower-case hex digits.
pub fn check_revision(revision: &str) -> Result<(), String> {
    let ok = (4..=MAX_REVISION).contains(&revision.len())
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        let shown: String = revision.chars().take(MAX_REVISION).collect();
        Err(format!(
            "the revision {shown:?} is not a commit id (4 to 64 lower-case hex digits)"
        ))
    }
}

/// A revision as a snapshot may name it: a commit id, or the working tree.
pub fn check_snapshot_revision(revision: &str) -> Result<(), String> {
    if revision == WORKING_TREE {
        return Ok(());
    }
    check_revision(revision)
}

/// Whether what was received validates; why not, in one line.
pub fn check(
    revision: &str,
    machines: &[Machine],
    readiness: &GetReadinessResponse,
) -> Result<(), String> {
    check_revision(revision)?;
    let files = emit::received(&emit::Received {
        machines,
        readiness,
    });
    super::validate(&files, revision)
        .map(|_| ())
        .map_err(|report| report.to_string())
}

/// Whether one machine received on its own (`GetMachine`) holds to the
/// forms an entry must have; the checks across machines need them all.
pub fn check_machine(m: &Machine) -> Result<(), String> {
    let text = emit::machines_file(std::slice::from_ref(m));
    let mut problems = Vec::new();
    super::load::machines_file("machines/received.yaml", &text, &mut problems);
    match problems.first() {
        None => Ok(()),
        Some(p) => Err(format!("the machine received does not validate: {p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_a_commit_id_and_nothing_else() {
        assert!(check_revision("0123456789abcdef0123456789abcdef01234567").is_ok());
        assert!(check_revision("abcd").is_ok());
        for bad in ["", "abc", "ABCD", "abcd\nx: y", "r1", &"a".repeat(65)] {
            assert!(check_revision(bad).is_err(), "{bad:?}");
        }
        assert!(check_snapshot_revision(WORKING_TREE).is_ok());
    }

    #[test]
    fn a_name_with_a_newline_is_refused_with_the_revision_checked_first() {
        let m = Machine {
            name: "pi\ndhcp-script=/srv/x".into(),
            ips: vec!["198.18.0.5".into()],
            r#use: Some(crate::proto::machine::Use::Games(Default::default())),
            ..Default::default()
        };
        let e = check("abcd", std::slice::from_ref(&m), &Default::default()).unwrap_err();
        assert!(e.contains("name"), "{e}");
        let e = check("abcd\n", &[], &Default::default()).unwrap_err();
        assert!(e.contains("not a commit id"), "{e}");
        let ok = Machine {
            name: "pi".into(),
            ..m
        };
        assert!(check("abcd", std::slice::from_ref(&ok), &Default::default()).is_ok());
        assert!(check_machine(&ok).is_ok());
        let bad = Machine {
            name: "pi\nx".into(),
            ..ok
        };
        assert!(check_machine(&bad).is_err());
    }
}
