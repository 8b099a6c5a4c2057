//! `[scan]`: what the scanner of `mdb serve` sweeps, how often and how,
//! and where it keeps its history, resolved into a
//! [`crate::discover::sweep::Config`].

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{
    settings::{duration, Env, Error},
    units::parse_duration,
};

pub const ENV_SCAN_SUBNETS: &str = "MDB_SCAN_SUBNETS";
pub const ENV_STATE_DIR: &str = "MDB_STATE_DIR";
/// The segment of a scanner that names none.
pub const DEFAULT_SEGMENT: &str = "default";

/// The flags of `mdb serve` about sweeps; each adds to or overrides the
/// file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ScanFlags {
    /// Sweep this subnet (repeatable); nothing is swept unless configured.
    #[arg(long = "scan", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// How often to sweep, e.g. 5m.
    #[arg(long = "scan-interval", value_name = "DURATION")]
    pub interval: Option<String>,
    /// Where the scanner keeps its sweep history across restarts.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    /// CIDRs to sweep; nothing is swept unless named here or `db_subnets`.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Also sweep the subnets of the DB's mdb.yaml marked `scan: true`.
    #[serde(default)]
    pub db_subnets: bool,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub tries: Option<u32>,
    pub rate: Option<u32>,
    pub interface: Option<String>,
    #[serde(default)]
    pub allow_large: bool,
    pub reverse_dns: Option<bool>,
    /// Ask found hosts for their mDNS names and service types (default on).
    pub mdns: Option<bool>,
    /// DHCP lease files whose client hostnames name hosts (dnsmasq, ISC
    /// dhcpd, Kea memfile CSV), read each sweep up to a size limit.
    #[serde(default)]
    pub leases: Vec<PathBuf>,
    pub arp: Option<bool>,
    /// Where the sweep history is kept (a persistent volume); without it
    /// the history lives in memory only.
    pub state_dir: Option<PathBuf>,
    /// How long hosts that are gone and old transitions are kept, e.g. "90d".
    pub retention: Option<String>,
    /// The network segment (VLAN) this scanner sweeps, e.g. "iot": a DNS
    /// label that names its hosts' segment in a merged view.
    pub segment: Option<String>,
    /// Routers whose neighbour tables each sweep reads over SNMP: the
    /// hosts of segments where no scanner sits.
    #[serde(default)]
    pub snmp: Vec<crate::snmp::settings::RawSource>,
}

/// A sweep's per-address wait: `auto`, or a duration of at least 1 ms
/// (a zero wait would end every sweep before any answer).
pub fn scan_timeout(text: &str) -> Result<Option<std::time::Duration>, String> {
    if text.trim() == "auto" {
        return Ok(None);
    }
    let d = parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 500ms (or auto)"))?;
    if d < std::time::Duration::from_millis(1) {
        return Err(format!("{text:?}: must be at least 1ms (or auto)"));
    }
    Ok(Some(d))
}

/// `[scan]` as given (`None`: the file has no such section) < env < flags;
/// `None` when nothing is to be swept. A `[scan]` section that would sweep
/// nothing is an error, not a silent scanner that never sends a probe.
pub fn resolve(
    given: Option<&RawScan>,
    env: &Env,
    flags: &ScanFlags,
) -> Result<Option<crate::discover::sweep::Config>, Error> {
    use crate::discover::scan;
    let empty = RawScan::default();
    let raw = given.unwrap_or(&empty);
    let mut texts: Vec<String> = raw.subnets.clone();
    if let Some(v) = env.get(ENV_SCAN_SUBNETS) {
        texts.extend(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    texts.extend(flags.subnets.iter().cloned());
    let mut subnets = Vec::new();
    for t in &texts {
        let net: ipnetwork::IpNetwork = t.parse().map_err(|_| {
            Error(format!(
                "scan.subnets: {t:?} is not a CIDR like 198.18.0.0/24"
            ))
        })?;
        subnets.push(net);
    }
    if subnets.is_empty() && !raw.db_subnets && raw.snmp.is_empty() {
        if given.is_some() {
            return Err(Error(format!(
                "scan: the [scan] section sweeps nothing; give subnets = [\"198.18.0.0/24\"] (or {ENV_SCAN_SUBNETS}, --scan), db_subnets = true to sweep mdb.yaml's subnets marked scan: true, or [[scan.snmp]] routers to read"
            )));
        }
        return Ok(None);
    }
    if !subnets.is_empty() {
        scan::Targets::of(&subnets, raw.allow_large)
            .map_err(|e| Error(format!("scan.subnets: {e}")))?;
    }
    let interval = duration(
        "scan.interval",
        flags.interval.clone().or(raw.interval.clone()),
        crate::discover::sweep::DEFAULT_INTERVAL,
    )?;
    // The scanner waits the full time for every address by default: nobody
    // waits for its sweeps, and a late device must not flap.
    let timeout = match &raw.timeout {
        Some(t) => scan_timeout(t).map_err(|e| Error(format!("scan.timeout {e}")))?,
        None => Some(scan::DEFAULT_TIMEOUT),
    };
    if raw.rate == Some(0) || raw.tries == Some(0) {
        return Err(Error("scan.rate and scan.tries must be at least 1".into()));
    }
    let retention = duration(
        "scan.retention",
        raw.retention.clone(),
        crate::discover::history::DEFAULT_RETENTION,
    )?;
    if retention < Duration::from_secs(7 * 24 * 3600) {
        return Err(Error(
            "scan.retention: keep at least 7d (uptime is shown over 7 days)".into(),
        ));
    }
    let state_dir = flags
        .state_dir
        .clone()
        .or_else(|| env.get(ENV_STATE_DIR).map(PathBuf::from))
        .or(raw.state_dir.clone())
        .filter(|p| !p.as_os_str().is_empty());
    let segment = raw
        .segment
        .clone()
        .unwrap_or_else(|| DEFAULT_SEGMENT.into());
    crate::db::load::check_dns_label(&segment)
        .map_err(|why| Error(format!("scan.segment: {segment:?} {why}")))?;
    let snmp = crate::snmp::settings::resolve(&raw.snmp)?;
    Ok(Some(crate::discover::sweep::Config {
        snmp,
        segment,
        ports: crate::discover::sweep::Ports::Database,
        state_dir,
        retention,
        subnets,
        db_subnets: raw.db_subnets,
        leases: raw.leases.clone(),
        interval,
        options: scan::Options {
            timeout,
            tries: raw.tries,
            rate: raw.rate,
            interface: raw.interface.clone(),
            allow_large: raw.allow_large,
            reverse_dns: raw.reverse_dns.unwrap_or(true),
            mdns: raw.mdns.unwrap_or(true),
            arp: raw.arp.unwrap_or(true),
            ..scan::Options::default()
        },
    }))
}
