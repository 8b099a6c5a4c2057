//! The host keys the runner trusts, by machine name: the database's
//! `ssh.host_keys` when it has any, else the key pinned on the machine's
//! first successful login (kept in the state directory). They are written
//! for OpenSSH as a known-hosts file keyed by machine name, which every
//! `ssh` of the runner and of Ansible reads with `HostKeyAlias=NAME` and
//! strict checking: whatever address a machine is reached at, only its own
//! key is accepted, and a clone of its MAC gets no session. A pin outlives
//! the machine's removal: a new machine under an old name brings its key in
//! the database.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use tracing::warn;

use crate::{hostkey::HostKey, proto::Machine};

/// The pinned keys in the state directory: `NAME TYPE BASE64` per line.
pub const PINNED_FILE: &str = "pinned_host_keys";
/// The known-hosts file the runner's `ssh` and Ansible read.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// Where a machine's trusted keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `ssh.host_keys` in the database: a DB writer's word.
    Database,
    /// Seen on its first successful login.
    FirstUse,
}

impl Source {
    pub fn words(&self) -> &'static str {
        match self {
            Source::Database => "pinned in the database",
            Source::FirstUse => "pinned on first use",
        }
    }
}

/// The keys a machine may offer, and where that rule comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    pub keys: Vec<HostKey>,
    pub source: Source,
}

pub struct Pins {
    path: PathBuf,
    by_name: BTreeMap<String, Vec<HostKey>>,
}

impl Pins {
    /// The pins of `state_dir`; a line that does not read is skipped (and
    /// said), never trusted.
    pub fn load(state_dir: &Path) -> Pins {
        let path = state_dir.join(PINNED_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut by_name: BTreeMap<String, Vec<HostKey>> = BTreeMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parsed = line.split_once(' ').and_then(|(name, key)| {
                crate::db::load::check_dns_label(name).ok()?;
                Some((name.to_string(), key.parse::<HostKey>().ok()?))
            });
            match parsed {
                Some((name, key)) => by_name.entry(name).or_default().push(key),
                None => {
                    warn!(path = %path.display(), line = i + 1, "a pinned host key that does not read is skipped")
                }
            }
        }
        Pins { path, by_name }
    }

    /// What `m` may offer: the database's keys, else its pin; `None` when
    /// it has neither (its first login pins what it offers).
    pub fn trusted(&self, m: &Machine) -> Option<Trusted> {
        let db: Vec<HostKey> = m
            .ssh
            .iter()
            .flat_map(|s| s.host_keys.iter())
            .filter_map(|k| k.parse().ok())
            .collect();
        if !db.is_empty() {
            return Some(Trusted {
                keys: db,
                source: Source::Database,
            });
        }
        let pinned = self.by_name.get(&m.name).filter(|k| !k.is_empty())?;
        Some(Trusted {
            keys: pinned.clone(),
            source: Source::FirstUse,
        })
    }

    /// Pins `key` for machine `name` (its first successful login).
    pub fn pin(&mut self, name: &str, key: HostKey) -> std::io::Result<()> {
        self.by_name.insert(name.to_string(), vec![key]);
        self.save()
    }

    fn save(&self) -> std::io::Result<()> {
        let text: String = self
            .by_name
            .iter()
            .flat_map(|(name, keys)| keys.iter().map(move |k| format!("{name} {k}\n")))
            .collect();
        write_atomic(&self.path, &text)
    }

    /// The known-hosts file for `machines`: each one's trusted keys under
    /// its name. A machine with none has no line, so strict checking
    /// refuses it.
    pub fn known_hosts(&self, machines: &[Machine]) -> String {
        machines
            .iter()
            .filter_map(|m| Some((m, self.trusted(m)?)))
            .flat_map(|(m, t)| {
                t.keys
                    .into_iter()
                    .map(move |k| crate::hostkey::known_hosts_line(&m.name, &k))
            })
            .collect()
    }
}

/// Writes `path` whole or not at all (a synced temporary file renamed).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    // Beside it under its own whole name: two files never share one.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.mdb-tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The options that make `ssh` check `alias`'s key in `known_hosts` and
/// nothing else: no first-use acceptance, no system file, no learning of
/// further keys, no address entries.
pub fn ssh_options(alias: &str, known_hosts: &Path) -> Vec<String> {
    [
        format!("HostKeyAlias={alias}"),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "StrictHostKeyChecking=yes".into(),
        "CheckHostIP=no".into(),
        "UpdateHostKeys=no".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect()
}

/// The wrapper Ansible runs as `ssh`, in the state directory.
pub const SSH_WRAPPER: &str = "ssh-pinned";

/// What Ansible is told of how to reach machine `name`: `ssh_options`
/// first on ssh's command line (`ansible_ssh_args`), host key checking on,
/// no shared connection (a master made to one address would serve another
/// machine reported there), and `ssh` as [`write_ssh_wrapper`] wrote it,
/// which checks strictly against the known hosts even when a playbook's
/// own variables change the rest.
pub fn ansible_vars(
    name: &str,
    known_hosts: &Path,
    key: Option<&Path>,
    state_dir: &Path,
) -> serde_json::Map<String, serde_json::Value> {
    let mut args: Vec<String> = ["ControlMaster=no", "ControlPath=none"]
        .iter()
        .flat_map(|o| ["-o".to_string(), o.to_string()])
        .collect();
    args.extend(ssh_options(name, known_hosts));
    if key.is_some() {
        args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
    }
    let args: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    let mut v = serde_json::Map::new();
    v.insert("ansible_ssh_args".into(), args.join(" ").into());
    v.insert("ansible_host_key_checking".into(), true.into());
    v.insert(
        "ansible_ssh_executable".into(),
        state_dir.join(SSH_WRAPPER).display().to_string().into(),
    );
    v
}

/// Writes the `ssh` Ansible runs: the real one with strict checking
/// against `known_hosts` first, so a playbook that drops the runner's
/// options gets no unchecked session (without `HostKeyAlias` no key is
/// known, and the session is refused).
pub fn write_ssh_wrapper(state_dir: &Path, known_hosts: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = state_dir.join(SSH_WRAPPER);
    let known = shell_word(&known_hosts.display().to_string());
    write_atomic(
        &path,
        &format!("#!/bin/sh\n# Written by mdb provision: host keys are checked strictly, always.\nexec ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no \"$@\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}

/// `word` as a shell word (Ansible splits `ansible_ssh_args` like a
/// shell): quoted when it holds anything but plain path characters.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Ssh;

    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIQFtusPZJiBkXPjFPCubwzUHxvTK71qtuBFPW7KekEO";
    const B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7CL7qdyysL8ApCuCLisxTDQkFqLalr/TSEeKw1869s";

    fn machine(name: &str, keys: &[&str]) -> Machine {
        Machine {
            name: name.into(),
            ssh: Some(Ssh {
                host_keys: keys.iter().map(|k| k.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_database_beats_a_pin_and_pins_survive_a_reload_but_junk_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut pins = Pins::load(dir.path());
        assert_eq!(pins.trusted(&machine("srv-1", &[])), None);
        pins.pin("srv-1", A.parse().unwrap()).unwrap();
        std::fs::write(
            dir.path().join(PINNED_FILE),
            format!(
                "{}evil\nx\ny;rm ssh-ed25519 AAAA\n",
                std::fs::read_to_string(dir.path().join(PINNED_FILE)).unwrap()
            ),
        )
        .unwrap();
        let pins = Pins::load(dir.path());
        let t = pins.trusted(&machine("srv-1", &[])).unwrap();
        assert_eq!(t.source, Source::FirstUse);
        assert_eq!(t.keys, vec![A.parse().unwrap()]);
        let t = pins.trusted(&machine("srv-1", &[B])).unwrap();
        assert_eq!(t.source, Source::Database);
        assert_eq!(t.keys, vec![B.parse().unwrap()]);
        assert_eq!(
            pins.known_hosts(&[machine("srv-1", &[]), machine("new", &[])]),
            format!("srv-1 {A}\n"),
            "a machine with no key has no line"
        );
    }
}
