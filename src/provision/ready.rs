//! "Can we provision it?": SSH key authentication as the machine's user
//! with the provisioner's key (the system `ssh` in batch mode, so no prompt
//! can hang it), then the readiness checks of its use from `mdb.yaml`
//! (TCP connect, HTTP status). Every check has its own deadline.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    db::policy::Treatment,
    proto::{readiness_check::Check, Machine, ReadinessCheck},
};

/// How the provisioner logs in.
#[derive(Clone, Debug)]
pub struct SshLogin {
    /// The private key; `None` leaves it to ssh's defaults.
    pub key: Option<PathBuf>,
    /// Where host keys seen the first time are kept.
    pub known_hosts: PathBuf,
    /// The user for machines that name none.
    pub default_user: String,
    pub timeout: Duration,
}

/// Why a machine is not ready, in one line; `Ok` when it is. A machine
/// under `readiness` is judged by its checks alone and never SSH'd.
pub async fn check(
    m: &Machine,
    treatment: &Treatment,
    login: &SshLogin,
    checks: &[ReadinessCheck],
) -> Result<(), String> {
    let ip: IpAddr = m
        .ips
        .first()
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| format!("{} has no address to reach", m.name))?;
    if *treatment != Treatment::Readiness {
        ssh(m, ip, login).await?;
    }
    let kind = crate::db::use_kind(m.r#use.as_ref()) as i32;
    for c in checks.iter().filter(|c| c.r#use == kind) {
        probe(ip, c, login.timeout).await?;
    }
    Ok(())
}

async fn ssh(m: &Machine, ip: IpAddr, login: &SshLogin) -> Result<(), String> {
    let (user, port) = match &m.ssh {
        Some(s) => (
            if s.user.is_empty() {
                login.default_user.clone()
            } else {
                s.user.clone()
            },
            if s.port == 0 { 22 } else { s.port },
        ),
        None => (login.default_user.clone(), 22),
    };
    let secs = login.timeout.as_secs().max(1).to_string();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
    ])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        login.known_hosts.display()
    ))
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
    crate::db::load::check_user(&user).map_err(|why| format!("ssh user {user:?} {why}"))?;
    cmd.args(["-l", &user, "--"])
        .arg(ip.to_string())
        .arg("true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(login.timeout + Duration::from_secs(2), cmd.output())
        .await
        .map_err(|_| {
            format!(
                "ssh {user}@{ip}:{port} did not answer within {:?}",
                login.timeout
            )
        })?
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(format!(
        "ssh key authentication as {user}@{ip}:{port} failed: {said}"
    ))
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
    crate::db::settings::check_http_path(path).map_err(std::io::Error::other)?;
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
