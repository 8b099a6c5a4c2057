//! ICMP echo sweep with surge-ping: one client (one socket) per address
//! family, one pinger per host with its own identifier, sends paced to the
//! configured rate. Unprivileged ping sockets are tried first, raw sockets
//! (CAP_NET_RAW) second.

use std::{
    collections::HashMap,
    net::IpAddr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use surge_ping::{Client, Config, PingIdentifier, PingSequence, ICMP};
use tokio::sync::Semaphore;

pub struct Outcome {
    pub rtts: HashMap<IpAddr, Duration>,
    pub sent: u64,
    pub failed: u64,
}

pub struct Params {
    pub gap: Duration,
    pub timeout: Duration,
    pub tries: u32,
    pub concurrency: usize,
}

pub(super) fn client(kind: ICMP) -> std::io::Result<Client> {
    let c = Client::new(&Config::builder().kind(kind).build())?;
    // surge-ping keeps the default receive buffer; a burst of local replies
    // would overflow it.
    let fd = c.get_socket().get_native_sock();
    let size: libc::c_int = 4 << 20;
    // SAFETY: fd is a live socket owned by the client; size is a c_int.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    Ok(c)
}

/// One echo to `ip` with its own short budget: the second witness of a
/// host ARP found.
pub(super) async fn witness(client: &Client, ip: IpAddr, ident: u16, wait: Duration) -> bool {
    let mut pinger = client.pinger(ip, PingIdentifier(ident)).await;
    pinger.timeout(wait);
    pinger.ping(PingSequence(0), &[0u8; 16]).await.is_ok()
}

/// Pings every address; returns the round-trip time of those that answered.
pub async fn sweep(
    addrs: &[IpAddr],
    p: &Params,
    progress: super::Progress,
) -> std::io::Result<Outcome> {
    let mut clients: HashMap<bool, Client> = HashMap::new();
    if addrs.iter().any(|a| a.is_ipv4()) {
        clients.insert(true, client(ICMP::V4)?);
    }
    if addrs.iter().any(|a| a.is_ipv6()) {
        clients.insert(false, client(ICMP::V6)?);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut pace = tokio::time::interval(p.gap.max(Duration::from_micros(10)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, &ip) in addrs.iter().enumerate() {
        pace.tick().await;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let Some(client) = clients.get(&ip.is_ipv4()).cloned() else {
            continue;
        };
        let (sent, failed, progress) = (sent.clone(), failed.clone(), progress.clone());
        let (timeout, tries) = (p.timeout, p.tries.max(1));
        // Distinct identifiers keep replies of different hosts apart.
        let ident = PingIdentifier(
            (n as u16)
                .wrapping_mul(7919)
                .wrapping_add(std::process::id() as u16),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let mut pinger = client.pinger(ip, ident).await;
            pinger.timeout(timeout);
            let mut result = None;
            progress(super::Tick::Sent(1));
            for seq in 0..tries {
                sent.fetch_add(1, Ordering::Relaxed);
                match pinger.ping(PingSequence(seq as u16), &[0u8; 16]).await {
                    Ok((_, rtt)) => {
                        result = Some(rtt);
                        break;
                    }
                    Err(surge_ping::SurgeError::Timeout { .. }) => {}
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if result.is_some() {
                progress(super::Tick::Found(1));
            }
            result.map(|rtt| (ip, rtt))
        });
    }
    let mut rtts = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some((ip, rtt))) = r {
            rtts.insert(ip, rtt);
        }
    }
    Ok(Outcome {
        rtts,
        sent: sent.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    })
}
