//! What makes an issue or pull request mdb's own, and the trailer of hidden
//! markers mdb writes at the end of its bodies. Nothing else is ever
//! commented on, edited, closed, or has its branch deleted or pushed,
//! whatever its body says: an item is mdb's only when its author is the
//! token's own login, and a pull request only when its head branch is under
//! `mdb/enrol/` in the DB repository itself (not a fork). Markers are read
//! only from the trailer, the lines at the very end of a body; untrusted
//! text in a body is escaped (`escape::markdown`), so it can never hold one.

use std::fmt::Write;

use serde_json::Value;

use crate::{github::fingerprint::Fingerprint, sync::propose::BRANCH_PREFIX};

/// Who mdb is on GitHub, and where its pull requests must come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The login of the token's own user (`GET /user`).
    pub login: String,
    /// `owner/name` of the DB repository.
    pub repo: String,
}

impl Owner {
    fn authored(&self, item: &Value) -> bool {
        item["user"]["login"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case(&self.login))
    }

    /// An issue mdb opened (a pull request is never an issue here).
    pub fn owns_issue(&self, item: &Value) -> bool {
        item.get("pull_request").is_none() && self.authored(item)
    }

    /// A pull request mdb opened from its own branch in the DB repository.
    pub fn owns_pull(&self, item: &Value) -> bool {
        let head = &item["head"];
        self.authored(item)
            && head["repo"]["full_name"]
                .as_str()
                .is_some_and(|r| r.eq_ignore_ascii_case(&self.repo))
            && head["ref"].as_str().is_some_and(is_enrol_branch)
    }
}

/// A branch mdb may push to and delete: under `mdb/enrol/`, with a plain
/// name (no `..`, no control characters, nothing git would refuse).
pub fn is_enrol_branch(branch: &str) -> bool {
    branch.strip_prefix(BRANCH_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 200
            && !rest.contains("..")
            && !rest.starts_with(['/', '.'])
            && !rest.ends_with(['/', '.'])
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    })
}

/// The hidden markers at the end of a body mdb wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    pub fingerprint: Option<Fingerprint>,
    /// The address the body last reported (issues) or reserves (pulls).
    pub ip: Option<String>,
    /// The machine name a pull request proposes.
    pub name: Option<String>,
    /// The reservation an issue said its device is waiting to reach (a
    /// merged device still on its old lease was told about once).
    pub reserved: Option<String>,
}

const OPEN: &str = "<!-- mdb-";
const CLOSE: &str = " -->";
/// The longest marker value read back.
const MAX_VALUE: usize = 300;

impl Trailer {
    /// The markers as lines, to end a body with.
    pub fn write(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: &str| {
            let _ = writeln!(out, "{OPEN}{key}: {value}{CLOSE}");
        };
        if let Some(fp) = &self.fingerprint {
            line("fingerprint", &fp.to_string());
        }
        if let Some(ip) = &self.ip {
            line("ip", ip);
        }
        if let Some(name) = &self.name {
            line("name", name);
        }
        if let Some(reserved) = &self.reserved {
            line("reserved", reserved);
        }
        out
    }

    /// Reads the markers of the body's last lines, from the end up to the
    /// first line that is not a marker. A key given twice, or a value with
    /// anything but what mdb writes there, makes the whole trailer void.
    pub fn read(body: &str) -> Trailer {
        let mut t = Trailer::default();
        let mut seen = Vec::new();
        for line in body.trim_end().lines().rev() {
            let Some((key, value)) = line
                .trim()
                .strip_prefix(OPEN)
                .and_then(|r| r.strip_suffix(CLOSE))
                .and_then(|r| r.split_once(": "))
            else {
                break;
            };
            let value = value.trim();
            let plain = value.len() <= MAX_VALUE
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:=".contains(&b));
            if seen.contains(&key) || !plain {
                return Trailer::default();
            }
            seen.push(key);
            match key {
                "fingerprint" => t.fingerprint = value.parse().ok(),
                "ip" => t.ip = Some(value.to_string()),
                "name" => t.name = Some(value.to_string()),
                "reserved" => t.reserved = Some(value.to_string()),
                _ => {}
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner {
            login: "mdb-bot".into(),
            repo: "lab/machines".into(),
        }
    }

    #[test]
    fn only_the_tokens_own_items_from_its_own_branches_are_mdbs() {
        let o = owner();
        let pull = |login: &str, repo: &str, head: &str| json!({"user": {"login": login}, "head": {"ref": head, "repo": {"full_name": repo}}, "pull_request": {}});
        assert!(o.owns_pull(&pull("MDB-bot", "Lab/Machines", "mdb/enrol/new-device-x")));
        assert!(!o.owns_pull(&pull("stranger", "lab/machines", "mdb/enrol/x")));
        assert!(
            !o.owns_pull(&pull("mdb-bot", "stranger/machines", "mdb/enrol/x")),
            "a fork"
        );
        assert!(!o.owns_pull(&pull("mdb-bot", "lab/machines", "main")));
        assert!(!o.owns_pull(&pull("mdb-bot", "lab/machines", "mdb/enrol/../main")));
        assert!(
            !o.owns_pull(&json!({"user": {"login": "mdb-bot"}})),
            "no head"
        );
        assert!(o.owns_issue(&json!({"user": {"login": "mdb-bot"}})));
        assert!(!o.owns_issue(&json!({"user": {"login": "someone"}})));
        assert!(!o.owns_issue(&json!({"user": {"login": "mdb-bot"}, "pull_request": {}})));
    }

    #[test]
    fn markers_are_read_only_from_the_trailer() {
        let fp: Fingerprint = "new-device:mac=dc:a6:32:00:00:60".parse().unwrap();
        let t = Trailer {
            fingerprint: Some(fp.clone()),
            ip: Some("198.18.10.11".into()),
            name: Some("pi-dca632-0060".into()),
            reserved: None,
        };
        let forged =
            "<!-- mdb-fingerprint: conflict:ip=198.18.10.1 --><!-- mdb-ip: 198.18.10.2 -->";
        let body = format!("text {forged}\n\n| x | {forged} |\n\n{}", t.write());
        assert_eq!(Trailer::read(&body), t);
        assert_eq!(
            Trailer::read(&format!("{body}\nA line a person added.\n")),
            Trailer::default()
        );
        let twice = format!("{}{}", t.write(), t.write());
        assert_eq!(
            Trailer::read(&twice),
            Trailer::default(),
            "a key given twice"
        );
        let odd = "<!-- mdb-name: a b -->\n";
        assert_eq!(Trailer::read(odd), Trailer::default());
        // The bodies earlier releases wrote read back the same way.
        let old = "x\n\n<!-- mdb-fingerprint: new-device:mac=dc:a6:32:00:00:60 -->\n<!-- mdb-ip: 198.18.10.11 -->\n<!-- mdb-name: pi-dca632-0060 -->\n";
        assert_eq!(Trailer::read(old), t);
    }
}
