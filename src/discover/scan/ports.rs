//! TCP connect probes of a few ports on a live host, and what an SSH port
//! says of itself: its banner and the host key it offers (`hostkey`).

use std::{net::IpAddr, time::Duration};

use tokio::{net::TcpStream, time::timeout};

/// The longest SSH banner kept (RFC 4253 allows 255 bytes with CR LF).
pub const MAX_BANNER_CHARS: usize = crate::hostkey::MAX_BANNER;
/// sshd speaks first; a banner and key that have not come by then are none.
const BANNER_WAIT: Duration = Duration::from_secs(2);

pub struct Outcome {
    pub open: Vec<u16>,
    pub ssh: Ssh,
    pub sent: u64,
}

/// What an SSH port said: its banner and host key (`TYPE BASE64`), each
/// empty when it gave none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssh {
    pub banner: String,
    pub host_key: String,
}

/// Connects to every port (in parallel); reads a banner and host key from
/// open ports in `ssh_ports`.
pub async fn probe(ip: IpAddr, ports: &[u16], ssh_ports: &[u16], wait: Duration) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for &port in ports {
        let want_banner = ssh_ports.contains(&port);
        tasks.spawn(async move {
            let mut stream = match timeout(wait, TcpStream::connect((ip, port))).await {
                Ok(Ok(s)) => s,
                _ => return None,
            };
            let ssh = if want_banner {
                read_ssh(&mut stream).await
            } else {
                Ssh::default()
            };
            Some((port, ssh))
        });
    }
    let mut open = Vec::new();
    let mut found = Ssh::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some((port, ssh))) = r {
            open.push(port);
            if found.banner.is_empty() {
                found = ssh;
            }
        }
    }
    open.sort_unstable();
    Outcome {
        open,
        ssh: found,
        sent: ports.len() as u64,
    }
}

/// The banner and host key of the first of `open` that is an SSH port and
/// has a banner (ports a SYN probe found open).
pub async fn ssh_of(ip: IpAddr, open: &[u16], ssh_ports: &[u16], wait: Duration) -> Ssh {
    for port in open.iter().filter(|p| ssh_ports.contains(p)) {
        if let Ok(Ok(mut stream)) = timeout(wait, TcpStream::connect((ip, *port))).await {
            let ssh = read_ssh(&mut stream).await;
            if !ssh.banner.is_empty() {
                return ssh;
            }
        }
    }
    Ssh::default()
}

/// sshd speaks first: "SSH-2.0-OpenSSH_9.2p1 Debian-2", then its key
/// exchange offer; one key exchange request later its host key comes.
async fn read_ssh(stream: &mut TcpStream) -> Ssh {
    let deadline = tokio::time::Instant::now() + BANNER_WAIT;
    let offer = crate::hostkey::offer(stream, &[], deadline).await;
    Ssh {
        banner: offer.banner,
        host_key: offer.key.map(|k| k.to_string()).unwrap_or_default(),
    }
}
