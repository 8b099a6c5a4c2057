//! "Can we provision it?": SSH key authentication as the machine's user
//! with the provisioner's key (the system `ssh` in batch mode, so no prompt
//! can hang it), only once the machine offers the host key pinned for it
//! (`pins`; a machine with none pins the key of its first successful login,
//! and only at its own address), then the readiness checks of its use from
//! `mdb.yaml` (TCP connect, HTTP status). Every check has its own deadline.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pins::Trusted;
use crate::{
    db::policy::Treatment,
    hostkey::HostKey,
    proto::{readiness_check::Check, Machine, ReadinessCheck},
};

/// How the provisioner logs in.
#[derive(Clone, Debug)]
pub struct SshLogin {
    /// The private key; `None` leaves it to ssh's defaults.
    pub key: Option<PathBuf>,
    /// The known-hosts file of every trusted key, by machine name.
    pub known_hosts: PathBuf,
    /// The user for machines that name none.
    pub default_user: String,
    pub timeout: Duration,
    /// How long a woken machine's SSH port is awaited (`wake_timeout`).
    pub wake_timeout: Duration,
}

/// How one machine may be reached: the keys it may offer, and whether it
/// is seen away from its own address.
#[derive(Clone, Debug)]
pub struct Reach {
    /// `None`: no key is pinned yet; its first successful login pins the
    /// key it offers (never away from home).
    pub trusted: Option<Trusted>,
    /// Reached at an address the database does not give it.
    pub away: bool,
}

/// Why a machine is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// A check failed, or it cannot be reached as asked.
    Check(String),
    /// It offers a host key other than the one pinned for it.
    HostKeyChanged(String),
}

impl NotReady {
    pub fn reason(&self) -> &str {
        match self {
            NotReady::Check(r) | NotReady::HostKeyChanged(r) => r,
        }
    }
}

/// What a check found: whether the machine is ready, and the key of its
/// first successful login (to pin whatever the checks after it say).
#[derive(Debug)]
pub struct Checked {
    pub ready: Result<(), NotReady>,
    pub first_key: Option<HostKey>,
}

/// Whether `m` is ready. A machine under `readiness` is judged by its
/// checks alone and never SSH'd.
pub async fn check(
    m: &Machine,
    treatment: &Treatment,
    login: &SshLogin,
    checks: &[ReadinessCheck],
    reach: &Reach,
) -> Checked {
    let Some(ip) = m.ips.first().and_then(|i| i.parse::<IpAddr>().ok()) else {
        return Checked {
            ready: Err(NotReady::Check(format!(
                "{} has no address to reach",
                m.name
            ))),
            first_key: None,
        };
    };
    let mut first_key = None;
    if *treatment != Treatment::Readiness {
        match ssh(m, ip, login, reach).await {
            Ok(key) => first_key = key,
            Err(e) => {
                return Checked {
                    ready: Err(e),
                    first_key: None,
                }
            }
        }
    }
    let kind = crate::db::use_kind(m.r#use.as_ref()) as i32;
    let mut ready = Ok(());
    for c in checks.iter().filter(|c| c.r#use == kind) {
        if let Err(why) = probe(ip, c, login.timeout).await {
            ready = Err(NotReady::Check(why));
            break;
        }
    }
    Checked { ready, first_key }
}

fn user_and_port(m: &Machine, login: &SshLogin) -> (String, u16) {
    let s = m.ssh.clone().unwrap_or_default();
    let user = if s.user.is_empty() {
        login.default_user.clone()
    } else {
        s.user
    };
    let port = u16::try_from(s.port).ok().filter(|p| *p != 0).unwrap_or(22);
    (user, port)
}

/// Before any session: the key the machine offers now is one it may
/// offer. OpenSSH checks it again (and the machine's proof that it holds
/// it) when the session is made.
async fn offers_trusted(addr: SocketAddr, t: &Trusted, timeout: Duration) -> Result<(), NotReady> {
    let mut algorithms: Vec<&str> = Vec::new();
    for k in &t.keys {
        for a in k.algorithms() {
            if !algorithms.contains(a) {
                algorithms.push(a);
            }
        }
    }
    let pinned: Vec<String> = t.keys.iter().map(|k| k.fingerprint()).collect();
    let changed = |offered: String| {
        NotReady::HostKeyChanged(format!(
            "host key changed: {addr} offers {offered}, not the key {} ({}); no session was made",
            t.source.words(),
            pinned.join(", ")
        ))
    };
    match crate::hostkey::scan(addr, &algorithms, timeout).await {
        Ok(s) if t.keys.contains(&s.key) => Ok(()),
        Ok(s) => Err(changed(format!("{} {}", s.key.kind(), s.key.fingerprint()))),
        Err(crate::hostkey::ScanError::NoCommonKey(_)) => {
            Err(changed("no key of the pinned types".into()))
        }
        Err(e) => Err(NotReady::Check(format!(
            "ssh {addr}: its host key cannot be read: {e}"
        ))),
    }
}

async fn ssh(
    m: &Machine,
    ip: IpAddr,
    login: &SshLogin,
    reach: &Reach,
) -> Result<Option<HostKey>, NotReady> {
    let (user, port) = user_and_port(m, login);
    let addr = SocketAddr::new(ip, port);
    let (known_hosts, first) = match &reach.trusted {
        Some(t) => {
            offers_trusted(addr, t, login.timeout).await?;
            (login.known_hosts.clone(), None)
        }
        None if reach.away => {
            return Err(NotReady::Check(format!(
                "{} answers at {ip}, away from its own address, and no host key is pinned for it: away from home it is reached only with a pinned key",
                m.name
            )))
        }
        None => {
            let offered = crate::hostkey::scan(addr, &[], login.timeout)
                .await
                .map_err(|e| NotReady::Check(format!("ssh {addr}: its host key cannot be read: {e}")))?;
            let file = first_use_file(&login.known_hosts, &m.name);
            super::pins::write_atomic(
                &file,
                &crate::hostkey::known_hosts_line(&m.name, &offered.key),
            )
            .map_err(|e| NotReady::Check(format!("cannot write {}: {e}", file.display())))?;
            (file, Some(offered.key))
        }
    };
    login_once(m, addr, &user, login, &known_hosts).await?;
    Ok(first)
}

/// The one-key known-hosts file of a machine's first login.
fn first_use_file(known_hosts: &std::path::Path, name: &str) -> PathBuf {
    known_hosts.with_file_name(format!("first_use.{name}"))
}

/// `ssh -l USER -p PORT -- IP true` with the provisioner's key, checking
/// the host key against `known_hosts` under the machine's name.
async fn login_once(
    m: &Machine,
    addr: SocketAddr,
    user: &str,
    login: &SshLogin,
    known_hosts: &std::path::Path,
) -> Result<(), NotReady> {
    let (ip, port) = (addr.ip(), addr.port());
    let secs = login.timeout.as_secs().max(1).to_string();
    let mut cmd = tokio::process::Command::new("ssh");
    crate::command::env::clean_env(cmd.as_std_mut(), &[]);
    cmd.args(["-o", "BatchMode=yes"])
        .args(super::pins::ssh_options(&m.name, known_hosts))
        .args([
            "-o",
            &format!("ConnectTimeout={secs}"),
            "-o",
            "LogLevel=ERROR",
        ])
        .args(["-p", &port.to_string()]);
    if let Some(key) = &login.key {
        cmd.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
    }
    // The user goes in its own argument after -l, and `--` ends the
    // options: nothing from the database can be read as one.
    crate::db::load::check_user(user)
        .map_err(|why| NotReady::Check(format!("ssh user {user:?} {why}")))?;
    cmd.args(["-l", user, "--"])
        .arg(ip.to_string())
        .arg("true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(login.timeout + Duration::from_secs(2), cmd.output())
        .await
        .map_err(|_| {
            NotReady::Check(format!(
                "ssh {user}@{ip}:{port} did not answer within {:?}",
                login.timeout
            ))
        })?
        .map_err(|e| NotReady::Check(format!("cannot run ssh: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    if said.contains("Host key verification failed")
        || said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    {
        return Err(NotReady::HostKeyChanged(format!(
            "host key changed: ssh {ip}:{port} refused the key it offers as not {}'s; no session was made",
            m.name
        )));
    }
    let said = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(NotReady::Check(format!(
        "ssh key authentication as {user}@{ip}:{port} failed: {said}"
    )))
}

async fn probe(ip: IpAddr, c: &ReadinessCheck, timeout: Duration) -> Result<(), String> {
    match &c.check {
        Some(Check::TcpPort(port)) => {
            let addr = SocketAddr::new(ip, *port as u16);
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("tcp {addr}: no answer within {timeout:?}"))?
                .map(|_| ())
                .map_err(|e| format!("tcp {addr}: {e}"))
        }
        Some(Check::Http(h)) => {
            let addr = SocketAddr::new(ip, h.port as u16);
            let status = tokio::time::timeout(timeout, http_status(addr, &h.path))
                .await
                .map_err(|_| format!("http://{addr}{}: no answer within {timeout:?}", h.path))?
                .map_err(|e| format!("http://{addr}{}: {e}", h.path))?;
            if u32::from(status) == h.status {
                Ok(())
            } else {
                Err(format!(
                    "http://{addr}{} answered {status}, not {}",
                    h.path, h.status
                ))
            }
        }
        None => Ok(()),
    }
}

/// The status of a plain HTTP/1.0 GET; reads at most the status line.
async fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    crate::db::mdb_yaml::check_http_path(path).map_err(std::io::Error::other)?;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: mdb\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        let got = s.read(&mut buf[n..]).await?;
        if got == 0 || buf[..n + got].contains(&b'\n') {
            n += got;
            break;
        }
        n += got;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::HttpCheck;

    /// ssh as the runner runs it, against a real sshd whose host keys are
    /// in `dir`: refused unless `known_hosts` pins its key under the name.
    #[tokio::test]
    async fn ssh_makes_a_session_only_with_the_key_pinned_under_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sshd, port) = crate::hostkey::test_sshd::start(dir.path());
        let client_key = dir.path().join("client");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&client_key)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let known = dir.path().join("known_hosts");
        let login = SshLogin {
            key: Some(client_key),
            known_hosts: known.clone(),
            default_user: "root".into(),
            timeout: Duration::from_secs(5),
            wake_timeout: Duration::from_secs(1),
        };
        let m = Machine {
            name: "srv-1".into(),
            ..Default::default()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let key = |kind: &str| -> HostKey {
            std::fs::read_to_string(dir.path().join(format!("{kind}.pub")))
                .unwrap()
                .parse()
                .unwrap()
        };
        let other: HostKey =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7CL7qdyysL8ApCuCLisxTDQkFqLalr/TSEeKw1869s"
                .parse()
                .unwrap();
        // Nothing known under the name (no first-use acceptance), then the
        // right key under another name, then another key under the name.
        for (line, why) in [
            (String::new(), "nothing pinned"),
            (
                crate::hostkey::known_hosts_line("srv-2", &key("ed25519")),
                "another name",
            ),
            (
                crate::hostkey::known_hosts_line("srv-1", &other),
                "another key",
            ),
        ] {
            std::fs::write(&known, line).unwrap();
            let r = login_once(&m, addr, "root", &login, &known).await;
            assert!(
                matches!(r, Err(NotReady::HostKeyChanged(_))),
                "{why}: {r:?}"
            );
        }
        std::fs::write(
            &known,
            crate::hostkey::known_hosts_line("srv-1", &key("ecdsa")),
        )
        .unwrap();
        let r = login_once(&m, addr, "root", &login, &known).await;
        assert_eq!(
            r,
            Ok(()),
            "a key of another type pinned for it is its key too"
        );
        let _ = sshd.kill();
        let _ = sshd.wait();
    }

    #[tokio::test]
    async fn tcp_and_http_checks_pass_and_fail_with_reasons() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                    .await;
            }
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Duration::from_secs(2);
        let tcp = |p| ReadinessCheck {
            r#use: 0,
            check: Some(Check::TcpPort(p)),
        };
        assert!(probe(ip, &tcp(u32::from(port)), t).await.is_ok());
        let http = |status| ReadinessCheck {
            r#use: 0,
            check: Some(Check::Http(HttpCheck {
                port: u32::from(port),
                path: "/".into(),
                status,
            })),
        };
        assert!(probe(ip, &http(503), t).await.is_ok());
        let e = probe(ip, &http(200), t).await.unwrap_err();
        assert!(e.contains("answered 503, not 200"), "{e}");
        let crlf = ReadinessCheck {
            r#use: 0,
            check: Some(Check::Http(HttpCheck {
                port: u32::from(port),
                path: "/ HTTP/1.0\r\nX-Injected: 1\r\n".into(),
                status: 503,
            })),
        };
        let e = probe(ip, &crlf, t).await.unwrap_err();
        assert!(e.contains("a URL path may not"), "no request sent: {e}");
    }
}
