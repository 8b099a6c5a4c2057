//! The probes of each found host (its follow-ups): its ports, SSH banner
//! and host key, name and an ICMP witness, started as soon as the host
//! answers.
//!
//! A host whose probes are still fresh (`Options::carried`: same address,
//! same MAC, up, probed within the refresh) keeps what was found before and
//! gets only the witness. On a directly attached subnet the ports are
//! probed by raw SYNs to the MAC ARP gave (`syn.rs`), so thousands of
//! silent devices cost one frame per port and no file descriptor; only an
//! open SSH port is connected to, for its banner. Elsewhere each host's
//! ports are connected to, as many hosts at once as the file descriptor
//! budget allows, started at a bounded rate. Past the sweep's deadline
//! what is unfinished is shed.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnetwork::Ipv4Network;

use super::{icmp, iface::Interface, ports, rdns::ReverseDns, syn, Carried, Options, PORT_BUDGET};
use crate::net::Mac;

/// File descriptors kept free for everything else the process does.
const FD_RESERVE: u64 = 256;
/// Connects in flight at most, whatever the limit allows.
const MAX_CONNECTS: u64 = 8192;
/// Connects started per second at most.
const CONNECT_RATE: f64 = 20_000.0;

/// A host's name is waited for this long after it is found.
const DNS_WAIT: Duration = Duration::from_secs(2);

/// The reverse-DNS name, if the hosts file or a name server has one
/// within `DNS_WAIT`.
async fn reverse_dns(ip: IpAddr, dns: Option<ReverseDns>) -> String {
    let Some(dns) = dns else {
        return String::new();
    };
    match tokio::time::timeout(DNS_WAIT, dns.name(ip)).await {
        // Whoever answers the PTR query chooses this text: kept bounded,
        // without control characters.
        Ok(Some(name)) if name != ip.to_string() => crate::escape::clean(&name, 253),
        _ => String::new(),
    }
}

/// What the follow-ups of one host found.
pub(super) struct Found {
    pub ip: IpAddr,
    pub open: Vec<u16>,
    pub ssh: ports::Ssh,
    pub dns_name: String,
    pub echoed: bool,
    /// TCP probes sent by connect (SYN frames are counted by their thread).
    pub connects: u64,
    /// False when the values were carried over from an earlier probe.
    pub probed: bool,
}

impl Found {
    fn carried(ip: IpAddr, c: &Carried, echoed: bool) -> Found {
        Found {
            ip,
            open: c.open_ports.clone(),
            ssh: ports::Ssh {
                banner: c.ssh_banner.clone(),
                host_key: c.ssh_host_key.clone(),
            },
            dns_name: c.dns_name.clone(),
            echoed,
            connects: 0,
            probed: false,
        }
    }
}

/// The SYN prober of one attached subnet: a thread fed over a channel.
struct SynProbe {
    network: Ipv4Network,
    jobs: syn::JobLine,
    thread: tokio::task::JoinHandle<std::io::Result<u64>>,
}

/// Ports, name and an ICMP witness of each host as soon as it is found.
pub(super) struct Probes {
    /// `None`: shed (the SYN prober stopped at the deadline).
    pub(super) tasks: tokio::task::JoinSet<Option<Found>>,
    /// For the ICMP witness; none where ICMP sockets are not allowed.
    icmp: Option<surge_ping::Client>,
    pings: u16,
    limit: Arc<tokio::sync::Semaphore>,
    ports: Arc<Vec<u16>>,
    ssh_ports: Arc<Vec<u16>>,
    budget: Duration,
    /// `None`: no reverse DNS.
    dns: Option<ReverseDns>,
    carried: Arc<HashMap<IpAddr, Carried>>,
    syn: Vec<SynProbe>,
    /// When the next host's connects may start, and the gap between hosts.
    next_connect: Instant,
    connect_gap: Duration,
    pub(super) carried_count: usize,
}

impl Probes {
    pub(super) fn new(opts: &Options) -> Probes {
        let hosts_in_flight = (connect_budget() / opts.ports.len().max(1) as u64).max(64);
        Probes {
            tasks: tokio::task::JoinSet::new(),
            icmp: icmp::client(surge_ping::ICMP::V4).ok(),
            pings: std::process::id() as u16,
            limit: Arc::new(tokio::sync::Semaphore::new(hosts_in_flight as usize)),
            ports: Arc::new(opts.ports.clone()),
            ssh_ports: Arc::new(opts.ssh_ports.clone()),
            budget: opts.timeout.unwrap_or(PORT_BUDGET).max(PORT_BUDGET),
            dns: opts.reverse_dns.then(ReverseDns::start),
            carried: opts.carried.clone(),
            syn: Vec::new(),
            next_connect: Instant::now(),
            connect_gap: Duration::from_secs_f64(opts.ports.len().max(1) as f64 / CONNECT_RATE),
            carried_count: 0,
        }
    }

    /// Starts a SYN prober for the hosts ARP finds on `iface`; without
    /// one (no raw socket), those hosts are connected to instead.
    pub(super) fn probe_by_syn(&mut self, iface: &Interface, gap: Duration, opts: &Options) {
        if self.ports.is_empty() {
            return;
        }
        let (Ok(sock), Ok((jobs, rx))) = (syn::open(iface), syn::job_line()) else {
            return;
        };
        let params = syn::Params {
            ports: self.ports.to_vec(),
            // Every found host has all its ports probed at the pace ARP
            // finds hosts.
            gap: (gap / self.ports.len() as u32).max(Duration::from_micros(5)),
            wait: self.budget,
            adaptive: opts.timeout.is_none(),
            deadline: opts.deadline,
        };
        let iface_owned = iface.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let sent = syn::run(&sock, &iface_owned, rx, &params);
            super::packet::close_later(sock);
            sent
        });
        self.syn.push(SynProbe {
            network: iface.network,
            jobs,
            thread,
        });
    }

    /// No more hosts for the SYN probers: they end once the last is done.
    /// Returns the SYNs they sent.
    pub(super) async fn finish_syn(&mut self) -> u64 {
        let mut sent = 0;
        for p in std::mem::take(&mut self.syn) {
            drop(p.jobs);
            if let Ok(Ok(n)) = p.thread.await {
                sent += n;
            }
        }
        sent
    }

    /// Starts the follow-ups of one host; `witness` adds one ICMP echo
    /// (for hosts ARP found), with a wait of a few LAN round trips.
    pub(super) fn start(&mut self, ip: IpAddr, mac: Option<Mac>, witness: Option<Duration>) {
        let client = witness.and(self.icmp.clone());
        self.pings = self.pings.wrapping_add(7919);
        let ident = self.pings;
        let echo = async move {
            match (&client, witness) {
                (Some(c), Some(wait)) => icmp::witness(c, ip, ident, wait).await,
                _ => false,
            }
        };
        if let Some(c) = self.carried.get(&ip).filter(|c| c.mac == mac).cloned() {
            self.carried_count += 1;
            self.tasks
                .spawn(async move { Some(Found::carried(ip, &c, echo.await)) });
            return;
        }
        let name = reverse_dns(ip, self.dns.clone());
        let (ssh_ports, budget) = (self.ssh_ports.clone(), self.budget);
        if let Some(open) = self.syn_job(ip, mac) {
            self.tasks.spawn(async move {
                let (open, name, echoed) = tokio::join!(open, name, echo);
                let open = open.ok()?;
                let ssh = ports::ssh_of(ip, &open, &ssh_ports, budget).await;
                Some(Found {
                    ip,
                    open,
                    ssh,
                    dns_name: name,
                    echoed,
                    connects: 0,
                    probed: true,
                })
            });
            return;
        }
        let (limit, ports) = (self.limit.clone(), self.ports.clone());
        let now = Instant::now();
        self.next_connect = self.next_connect.max(now) + self.connect_gap;
        let start_at = self.next_connect - self.connect_gap;
        self.tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            tokio::time::sleep_until(start_at.into()).await;
            let probe = ports::probe(ip, &ports, &ssh_ports, budget);
            let (p, name, echoed) = tokio::join!(probe, name, echo);
            Some(Found {
                ip,
                open: p.open,
                ssh: p.ssh,
                dns_name: name,
                echoed,
                connects: p.sent,
                probed: true,
            })
        });
    }

    /// Hands a host of an attached subnet to its SYN prober.
    fn syn_job(
        &self,
        ip: IpAddr,
        mac: Option<Mac>,
    ) -> Option<tokio::sync::oneshot::Receiver<Vec<u16>>> {
        let (IpAddr::V4(v4), Some(mac)) = (ip, mac) else {
            return None;
        };
        let probe = self.syn.iter().find(|p| p.network.contains(v4))?;
        let (done, open) = tokio::sync::oneshot::channel();
        probe
            .jobs
            .send(syn::Job { ip: v4, mac, done })
            .then_some(())?;
        Some(open)
    }

    /// The values kept for a host whose follow-ups were shed.
    pub(super) fn carried_for(&self, ip: IpAddr, mac: Option<Mac>) -> Option<&Carried> {
        self.carried.get(&ip).filter(|c| c.mac == mac)
    }
}

/// Connects in flight at most: half the open-files limit (raised to its
/// hard limit first), less a reserve.
fn connect_budget() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max.min(1 << 20),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
    }
    (lim.rlim_cur.saturating_sub(FD_RESERVE) / 2).clamp(64, MAX_CONNECTS)
}
