//! The follow-ups of each found host: its ports, SSH banner, name and an
//! ICMP witness, started as soon as the host answers.

use std::{net::IpAddr, sync::Arc, time::Duration};

use super::{icmp, ports, Options, PORT_BUDGET};

/// The reverse-DNS name, if the resolver has one within two seconds.
async fn reverse_dns(ip: IpAddr) -> String {
    let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip).ok());
    match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        // Whoever answers the PTR query chooses this text: kept bounded,
        // without control characters.
        Ok(Ok(Some(name))) if name != ip.to_string() => crate::escape::clean(&name, 253),
        _ => String::new(),
    }
}

/// Ports, name and an ICMP witness of each host as soon as it is found,
/// a bounded number at a time, each with its own short budget.
pub(super) struct FollowUps {
    pub(super) tasks: tokio::task::JoinSet<(IpAddr, ports::Outcome, String, bool)>,
    /// For the ICMP witness; none where ICMP sockets are not allowed.
    icmp: Option<surge_ping::Client>,
    pings: u16,
    limit: Arc<tokio::sync::Semaphore>,
    ports: Arc<Vec<u16>>,
    ssh_ports: Arc<Vec<u16>>,
    budget: Duration,
    reverse_dns: bool,
}

impl FollowUps {
    pub(super) fn new(opts: &Options) -> FollowUps {
        FollowUps {
            tasks: tokio::task::JoinSet::new(),
            icmp: icmp::client(surge_ping::ICMP::V4).ok(),
            pings: std::process::id() as u16,
            limit: Arc::new(tokio::sync::Semaphore::new(64)),
            ports: Arc::new(opts.ports.clone()),
            ssh_ports: Arc::new(opts.ssh_ports.clone()),
            budget: opts.timeout.unwrap_or(PORT_BUDGET).max(PORT_BUDGET),
            reverse_dns: opts.reverse_dns,
        }
    }

    /// Starts the follow-ups of one host; `witness` adds one ICMP echo
    /// (for hosts ARP found), with a wait of a few LAN round trips.
    pub(super) fn start(&mut self, ip: IpAddr, witness: Option<Duration>) {
        let (limit, ports, ssh_ports) = (
            self.limit.clone(),
            self.ports.clone(),
            self.ssh_ports.clone(),
        );
        let (budget, rdns) = (self.budget, self.reverse_dns);
        let client = witness.and(self.icmp.clone());
        self.pings = self.pings.wrapping_add(7919);
        let ident = self.pings;
        self.tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let probe = ports::probe(ip, &ports, &ssh_ports, budget);
            let name = async {
                if rdns {
                    reverse_dns(ip).await
                } else {
                    String::new()
                }
            };
            let echo = async {
                match (&client, witness) {
                    (Some(c), Some(wait)) => icmp::witness(c, ip, ident, wait).await,
                    _ => false,
                }
            };
            let (p, name, echoed) = tokio::join!(probe, name, echo);
            (ip, p, name, echoed)
        });
    }
}
