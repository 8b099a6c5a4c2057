//! TCP connect probes of a few ports on a live host, and the SSH banner
//! when an SSH port answers.

use std::{net::IpAddr, time::Duration};

use tokio::{io::AsyncReadExt, net::TcpStream, time::timeout};

/// The longest SSH banner kept (RFC 4253 allows 255 bytes with CR LF).
pub const MAX_BANNER_CHARS: usize = 253;
/// sshd speaks first; a banner that has not come by then is none.
const BANNER_WAIT: Duration = Duration::from_secs(2);

pub struct Outcome {
    pub open: Vec<u16>,
    pub ssh_banner: String,
    pub sent: u64,
}

/// Connects to every port (in parallel); reads a banner from open ports
/// in `ssh_ports`.
pub async fn probe(ip: IpAddr, ports: &[u16], ssh_ports: &[u16], wait: Duration) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for &port in ports {
        let want_banner = ssh_ports.contains(&port);
        tasks.spawn(async move {
            let mut stream = match timeout(wait, TcpStream::connect((ip, port))).await {
                Ok(Ok(s)) => s,
                _ => return None,
            };
            let banner = if want_banner {
                read_banner(&mut stream).await
            } else {
                String::new()
            };
            Some((port, banner))
        });
    }
    let mut open = Vec::new();
    let mut ssh_banner = String::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some((port, banner))) = r {
            open.push(port);
            if ssh_banner.is_empty() {
                ssh_banner = banner;
            }
        }
    }
    open.sort_unstable();
    Outcome {
        open,
        ssh_banner,
        sent: ports.len() as u64,
    }
}

/// The SSH banner of the first of `open` that is an SSH port and has one
/// (ports a SYN probe found open).
pub async fn banner_of(ip: IpAddr, open: &[u16], ssh_ports: &[u16], wait: Duration) -> String {
    for port in open.iter().filter(|p| ssh_ports.contains(p)) {
        if let Ok(Ok(mut stream)) = timeout(wait, TcpStream::connect((ip, *port))).await {
            let banner = read_banner(&mut stream).await;
            if !banner.is_empty() {
                return banner;
            }
        }
    }
    String::new()
}

async fn read_banner(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 256];
    // sshd speaks first: "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".
    let Ok(Ok(n)) = timeout(BANNER_WAIT, stream.read(&mut buf)).await else {
        return String::new();
    };
    // The device's own words: the first line only, kept bounded and
    // without control characters.
    let line = buf[..n].split(|b| *b == b'\n').next().unwrap_or_default();
    let text = crate::escape::clean_bytes(line, MAX_BANNER_CHARS);
    if text.starts_with("SSH-") {
        text
    } else {
        String::new()
    }
}
