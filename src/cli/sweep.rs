//! `scan` (one sweep, like arp-scan) and `history-bench`.

use std::process::ExitCode;

use crate::{
    cli::{args as cli, client},
    config,
    discover::sweep as discovery,
};
use anyhow::Context;

pub async fn scan_command(a: cli::ScanArgs) -> ExitCode {
    match scan(a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mdb scan: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn scan(a: cli::ScanArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    let mut targets = Vec::new();
    for t in &a.targets {
        let net: ipnetwork::IpNetwork = t
            .parse()
            .with_context(|| format!("{t:?} is not an address or CIDR"))?;
        targets.push(net);
    }
    let snap = match &a.db {
        Some(path) => Some(super::feed::load_checkout(path)?),
        None => None,
    };
    let timeout = config::scan_timeout(&a.timeout).map_err(|e| anyhow::anyhow!("--timeout {e}"))?;
    anyhow::ensure!(
        a.rate != Some(0) && a.tries != Some(0),
        "--rate and --tries must be at least 1"
    );
    let cfg = discovery::Config {
        segment: crate::discover::settings::DEFAULT_SEGMENT.into(),
        subnets: targets,
        db_subnets: false,
        leases: a.leases.clone(),
        snmp: Vec::new(),
        interval: discovery::DEFAULT_INTERVAL,
        options: crate::discover::scan::Options {
            ports: a.ports.clone(),
            timeout,
            tries: a.tries,
            rate: a.rate,
            reverse_dns: !a.no_rdns,
            mdns: !a.no_mdns,
            ipv6: !a.no_ipv6,
            allow_large: a.allow_large,
            interface: a.interface.clone(),
            arp: !a.no_arp,
            ..Default::default()
        },
        ports: if a.no_ports {
            discovery::Ports::None
        } else {
            discovery::Ports::DatabaseAnd(a.ports.clone())
        },
        state_dir: None,
        retention: crate::discover::history::DEFAULT_RETENTION,
    };
    let bar = progress_bar(&cfg, a.json)?;
    let progress: crate::discover::scan::Progress = match bar.clone() {
        Some(b) => {
            let found = Arc::new(std::sync::atomic::AtomicU64::new(0));
            Arc::new(move |tick| match tick {
                crate::discover::scan::Tick::Sent(n) => b.inc(n),
                crate::discover::scan::Tick::Found(n) => {
                    let total = found.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                    b.set_message(format!("{total} answered"));
                }
            })
        }
        None => Arc::new(|_| {}),
    };
    let look = discovery::look(&cfg, snap.as_ref(), progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = &look.report;
    for w in &report.warnings {
        eprintln!("mdb scan: warning: {w}");
    }
    let hosts: Vec<crate::proto::DiscoveredHost> = look.hosts.into_iter().map(|c| c.host).collect();
    if a.report {
        print!("{}", crate::github::text::preview(&hosts, snap.as_ref()));
    } else if a.json {
        let v: Vec<_> = hosts.iter().map(client::host_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::discovered_table(&hosts, snap.is_some()));
        let prefixes = if report.prefixes6 == 0 {
            String::new()
        } else {
            format!(" and {} IPv6 prefixes", report.prefixes6)
        };
        eprintln!(
            "{} hosts of {} addresses{prefixes} answered in {:.2} s ({} ARP, {} ICMP, {} NDP, {} TCP probes)",
            hosts.len(),
            report.addresses,
            report.duration.as_secs_f64(),
            report.sent.arp,
            report.sent.icmp,
            report.sent.ndp,
            report.sent.tcp
        );
    }
    // A target nothing could be sent to is a failed sweep, not "0 answered".
    Ok(if report.unroutable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar over every address, on a terminal only.
fn progress_bar(
    cfg: &discovery::Config,
    json: bool,
) -> anyhow::Result<Option<indicatif::ProgressBar>> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return Ok(None);
    }
    let addresses =
        crate::discover::scan::Targets::of(&cfg.subnets, cfg.options.allow_large)?.len();
    // Counts first probes sent (retries are not planned work), with the
    // answers so far and an estimate of the time left.
    let b = indicatif::ProgressBar::new(addresses as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} probed {pos}/{len} addresses, {msg} {wide_bar} {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Ok(Some(b))
}

/// Simulated sweeps through the real store; prints the figures as JSON.
pub fn history_bench(
    dir: &std::path::Path,
    hosts: u32,
    sweeps: u32,
    interval: &str,
    start_unix: i64,
    announce: bool,
) -> anyhow::Result<()> {
    use crate::discover::history::simulate;
    let interval = crate::units::parse_duration(interval)
        .filter(|d| d.as_secs() > 0)
        .ok_or_else(|| anyhow::anyhow!("--interval {interval:?} is not a duration like 5m"))?;
    let plan = simulate::Plan {
        hosts,
        sweeps,
        interval,
        start_unix,
        announce,
    };
    let report = simulate::run(dir, &plan)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
