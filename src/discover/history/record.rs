//! The bookkeeping of one host's record: the MAC/IP pairs it used, the
//! MACs in order of use, its hourly answers and uptime shares, and the
//! bounds every list is trimmed to. Pure functions of one record.

use super::{MAX_ADDRESSES, MAX_TRANSITIONS, UPTIME_WINDOW};
use crate::proto::{AddressSeen, HostHistory, UptimeHour};

pub(super) fn note_address(rec: &mut HostHistory, mac: &str, ip: &str, now: i64) {
    if mac.is_empty() && ip.is_empty() {
        return;
    }
    match rec
        .addresses
        .iter_mut()
        .find(|a| a.mac == mac && a.ip == ip)
    {
        Some(a) => a.last_seen_unix = now,
        None => rec.addresses.push(AddressSeen {
            mac: mac.to_string(),
            ip: ip.to_string(),
            first_seen_unix: now,
            last_seen_unix: now,
        }),
    }
}

/// IPv6 addresses shown per host at most (most recently seen).
pub const MAX_SHOWN_V6: usize = 16;

/// The IPv6 addresses `mac` has held, with first and last seen and kinds
/// (`listed`: those its database machine lists), stable first.
pub(super) fn held_v6(
    rec: &HostHistory,
    mac: &str,
    listed: &[std::net::Ipv6Addr],
) -> Vec<crate::proto::Ipv6Address> {
    let mut held: Vec<crate::ipv6::Held> = rec
        .addresses
        .iter()
        .filter(|a| a.mac == mac)
        .filter_map(|a| {
            Some(crate::ipv6::Held {
                ip: a.ip.parse().ok()?,
                first_seen: a.first_seen_unix,
                last_seen: a.last_seen_unix,
            })
        })
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.last_seen));
    held.truncate(MAX_SHOWN_V6);
    crate::discover::classify::ipv6_addresses(mac.parse().ok(), &held, listed)
}

/// The MACs of the addresses, most recently seen first, each once.
pub(super) fn macs_seen(rec: &HostHistory) -> Vec<String> {
    // Within one second, the address noted later is the newer one.
    let mut by_time: Vec<(usize, &AddressSeen)> = rec
        .addresses
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.mac.is_empty())
        .collect();
    by_time.sort_by_key(|(i, a)| std::cmp::Reverse((a.last_seen_unix, *i)));
    let mut out: Vec<String> = Vec::new();
    for (_, a) in by_time {
        if !out.contains(&a.mac) {
            out.push(a.mac.clone());
        }
    }
    out
}

pub(super) fn count_hour(rec: &mut HostHistory, now: i64, answered: bool) {
    let hour = now - now.rem_euclid(3600);
    if rec.hours.last().is_none_or(|h| h.hour_unix != hour) {
        rec.hours.push(UptimeHour {
            hour_unix: hour,
            ..Default::default()
        });
    }
    if let Some(h) = rec.hours.last_mut() {
        h.swept += 1;
        h.answered += u32::from(answered);
    }
}

/// The share of covering sweeps answered over the last day and week.
pub(super) fn set_uptime(rec: &mut HostHistory, now: i64) {
    let share = |window: i64| {
        let (swept, answered) = rec
            .hours
            .iter()
            .filter(|h| h.hour_unix + 3600 > now - window)
            .fold((0u64, 0u64), |(s, a), h| {
                (s + u64::from(h.swept), a + u64::from(h.answered))
            });
        if swept == 0 {
            0.0
        } else {
            answered as f64 / swept as f64
        }
    };
    let (day, week) = (share(24 * 3600), share(UPTIME_WINDOW));
    if let Some(h) = rec.host.as_mut() {
        h.uptime_24h = day;
        h.uptime_7d = week;
    }
}

pub(super) fn trim(rec: &mut HostHistory, cutoff: i64, now: i64) {
    rec.transitions.retain(|t| t.at_unix >= cutoff);
    let extra = rec.transitions.len().saturating_sub(MAX_TRANSITIONS);
    rec.transitions.drain(..extra);
    if rec.addresses.len() > 1 {
        rec.addresses.retain(|a| a.last_seen_unix >= cutoff);
    }
    if rec.addresses.len() > MAX_ADDRESSES {
        rec.addresses
            .sort_by_key(|a| std::cmp::Reverse(a.last_seen_unix));
        rec.addresses.truncate(MAX_ADDRESSES);
    }
    rec.hours
        .retain(|h| h.hour_unix + 3600 > now - UPTIME_WINDOW);
}
