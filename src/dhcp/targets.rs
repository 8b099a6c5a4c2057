//! Where reservations go: a dnsmasq (or Pi-hole) `--dhcp-hostsdir`, ISC
//! Kea (a reservations file its configuration includes, then
//! `config-reload` on its control socket), or a command for anything else
//! (a router's API). Each target writes what changed and leaves the rest:
//! a failure keeps the last good reservations in place, never wipes them.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use super::reservations::Reservation;

/// The longest a command hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest Kea's control socket may take to answer.
pub const KEA_TIMEOUT: Duration = Duration::from_secs(10);
/// Files of the hosts directory mdb writes start with this, and only those
/// are ever removed.
pub const HOSTS_PREFIX: &str = "mdb-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("Kea's control socket {socket}: {why}")]
    Kea { socket: String, why: String },
    #[error("the hook {program}: {why}")]
    Hook { program: String, why: String },
}

impl Error {
    /// Every value of [`Error::metric_label`].
    pub const LABELS: &'static [&'static str] = &["io", "kea", "hook"];

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Kea { .. } => "kea",
            Error::Hook { .. } => "hook",
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `text` to `path` whole or not at all (a temporary file beside
/// it, synced, renamed over it): a reader never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.mdb-tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// One line of dnsmasq's `dhcp-hostsfile` format: `MAC,IP,NAME`.
pub fn dnsmasq_line(r: &Reservation) -> String {
    format!("{},{},{}\n", r.mac, r.ip, r.name)
}

/// A dnsmasq `--dhcp-hostsdir` (Pi-hole uses one too): a file per machine,
/// `mdb-NAME`, rewritten only when it changes, since dnsmasq reads every
/// changed file by itself. A removed machine's file is deleted; dnsmasq
/// forgets a record it read only on SIGHUP (a hook can send it).
pub fn hostsdir(dir: &Path, all: &[Reservation]) -> Result<usize, Error> {
    let mut changed = 0;
    for r in all {
        let path = dir.join(format!("{HOSTS_PREFIX}{}", r.name));
        let text = dnsmasq_line(r);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            write_atomic(&path, &text)?;
            changed += 1;
        }
    }
    // Only once every file is written: a failure above leaves all in place.
    let keep: std::collections::HashSet<String> = all
        .iter()
        .map(|r| format!("{HOSTS_PREFIX}{}", r.name))
        .collect();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(HOSTS_PREFIX) && !keep.contains(&name) {
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Kea's reservations as the JSON list its configuration includes
/// (`"reservations": <?include "FILE"?>` with global reservations).
pub fn kea_list(all: &[Reservation]) -> String {
    let list: Vec<serde_json::Value> = all
        .iter()
        .map(|r| serde_json::json!({ "hw-address": r.mac.to_string(), "ip-address": r.ip.to_string(), "hostname": r.name }))
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// Kea: the reservations file rewritten when it changes, then Kea told to
/// read its configuration again. Kea keeps running its last configuration
/// when the reload fails, so nothing is lost.
pub async fn kea(
    file: &Path,
    socket: &Path,
    all: &[Reservation],
    force: bool,
) -> Result<bool, Error> {
    let text = kea_list(all);
    let same = std::fs::read_to_string(file).ok().as_deref() == Some(text.as_str());
    if same && !force {
        return Ok(false);
    }
    if !same {
        write_atomic(file, &text)?;
    }
    kea_command(socket, "config-reload").await?;
    Ok(true)
}

/// Sends one command to Kea's control socket and checks its result.
pub async fn kea_command(socket: &Path, command: &str) -> Result<serde_json::Value, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |why: String| Error::Kea {
        socket: socket.display().to_string(),
        why,
    };
    let talk = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ask = serde_json::json!({ "command": command }).to_string();
        s.write_all(ask.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut answer = Vec::new();
        (&mut s)
            .take(1 << 20)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok::<_, Error>(answer)
    };
    let answer = tokio::time::timeout(KEA_TIMEOUT, talk)
        .await
        .map_err(|_| fail(format!("no answer within {KEA_TIMEOUT:?}")))??;
    let v: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| fail(format!("not a JSON answer ({e})")))?;
    let first = if v.is_array() { v[0].clone() } else { v };
    match first["result"].as_i64() {
        Some(0) => Ok(first),
        _ => Err(fail(format!(
            "{command} failed: {}",
            crate::escape::clean(first["text"].as_str().unwrap_or("no result"), 300)
        ))),
    }
}

/// A command for any other DHCP server: `{file}` in its arguments is a file
/// with every reservation in dnsmasq's `MAC,IP,NAME` lines. Run with a
/// timeout, in its own process group (killed whole when it overruns).
/// It inherits only the allowlist of [`crate::command::env`] and `env`.
pub async fn hook(
    argv: &[String],
    env: &[String],
    file: &Path,
    all: &[Reservation],
) -> Result<(), Error> {
    let text: String = all.iter().map(dnsmasq_line).collect();
    write_atomic(file, &text)?;
    let program = argv.first().cloned().unwrap_or_default();
    let vars = crate::command::Vars {
        inventory: file.display().to_string(),
        ..Default::default()
    };
    // `{file}` is the inventory placeholder under another name.
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("{file}", "{inventory}"))
        .collect();
    let env = crate::command::Environment {
        inherit: env.to_vec(),
        set: Vec::new(),
    };
    let o = crate::command::run_in(&argv, &vars, HOOK_TIMEOUT, None, &env).await;
    if o.ok {
        Ok(())
    } else {
        Err(Error::Hook {
            program,
            why: o.reason,
        })
    }
}

/// The file a hook is given, in the follower's state directory.
pub fn hook_file(state_dir: &Path) -> PathBuf {
    state_dir.join("reservations.txt")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, ip: &str) -> Reservation {
        Reservation {
            name: name.into(),
            mac: "dc:a6:32:00:00:11".parse().unwrap(),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn the_hosts_directory_holds_one_file_per_machine_and_only_mdbs_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("static-by-hand"),
            "aa:bb:cc:dd:ee:ff,198.18.1.5\n",
        )
        .unwrap();
        assert_eq!(
            hostsdir(
                dir.path(),
                &[r("pi", "198.18.1.11"), r("nas", "198.18.1.12")]
            )
            .unwrap(),
            2
        );
        assert_eq!(
            hostsdir(
                dir.path(),
                &[r("pi", "198.18.1.11"), r("nas", "198.18.1.12")]
            )
            .unwrap(),
            0,
            "nothing changed"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mdb-pi")).unwrap(),
            "dc:a6:32:00:00:11,198.18.1.11,pi\n"
        );
        assert_eq!(hostsdir(dir.path(), &[r("pi", "198.18.1.11")]).unwrap(), 1);
        assert!(!dir.path().join("mdb-nas").exists());
        assert!(
            dir.path().join("static-by-hand").exists(),
            "not mdb's: left alone"
        );
    }

    #[test]
    fn kea_gets_a_list_of_reservations() {
        let v: serde_json::Value =
            serde_json::from_str(&kea_list(&[r("pi", "198.18.1.11")])).unwrap();
        assert_eq!(v[0]["hw-address"], "dc:a6:32:00:00:11");
        assert_eq!(v[0]["ip-address"], "198.18.1.11");
    }
}
