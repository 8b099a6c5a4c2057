//! What a sweep changes in every host's record, kept apart from the rest:
//! the last-seen time, round trip, missed sweeps and the current hour's
//! counts. The store writes a record only when the rest (its stable form)
//! changed, and these few fields of every host as one value per sweep.

use std::hash::{Hash, Hasher};

use prost::Message;

use super::{record::set_uptime, UPTIME_WINDOW};
use crate::proto::{HostHistory, HostPulse};

/// The record without what every sweep changes: what decides whether it
/// must be written again.
fn stable(rec: &HostHistory) -> HostHistory {
    let mut r = rec.clone();
    let (mac, ip, seen) = match r.host.as_mut() {
        Some(h) => {
            let seen = h.last_seen_unix;
            h.last_seen_unix = 0;
            h.rtt_micros = 0;
            h.uptime_24h = 0.0;
            h.uptime_7d = 0.0;
            h.missed_sweeps = 0;
            // Its IPv6 addresses answered this sweep as it did.
            for a in h
                .ipv6_addresses
                .iter_mut()
                .filter(|a| a.last_seen_unix == seen)
            {
                a.last_seen_unix = 0;
            }
            (h.mac.clone(), h.ip.clone(), seen)
        }
        None => Default::default(),
    };
    for a in r
        .addresses
        .iter_mut()
        .filter(|a| a.mac == mac && (a.ip == ip || a.last_seen_unix == seen))
    {
        a.last_seen_unix = 0;
    }
    // Every sweep's pulse carries its hour; the log's pulses, in order,
    // hold the finished hours too (`merge_hour`), so a new hour rewrites
    // no record.
    r.hours.clear();
    r
}

/// A digest of the stable form (only compared within one process).
pub fn digest(rec: &HostHistory) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stable(rec).encode_to_vec().hash(&mut h);
    h.finish()
}

pub fn of(rec: &HostHistory) -> HostPulse {
    let h = rec.host.as_ref();
    HostPulse {
        key: h.map(|h| h.key.clone()).unwrap_or_default(),
        last_seen_unix: h.map_or(0, |h| h.last_seen_unix),
        rtt_micros: h.map_or(0, |h| h.rtt_micros),
        missed_sweeps: h.map_or(0, |h| h.missed_sweeps),
        hour: rec.hours.last().cloned(),
    }
}

/// Puts a pulse back into the record it was taken from (at load).
pub fn apply(rec: &mut HostHistory, p: &HostPulse, now: i64) {
    let Some(h) = rec.host.as_mut() else { return };
    let written = h.last_seen_unix;
    if p.last_seen_unix >= h.last_seen_unix {
        h.last_seen_unix = p.last_seen_unix;
        h.rtt_micros = p.rtt_micros;
        h.missed_sweeps = p.missed_sweeps;
    }
    let (mac, ip, seen) = (h.mac.clone(), h.ip.clone(), h.last_seen_unix);
    // What answered in the sweep the record was written in has answered in
    // every sweep since: else the record would have been written again.
    for a in h
        .ipv6_addresses
        .iter_mut()
        .filter(|a| a.last_seen_unix == written)
    {
        a.last_seen_unix = seen;
    }
    for a in rec
        .addresses
        .iter_mut()
        .filter(|a| a.mac == mac && (a.ip == ip || a.last_seen_unix == written))
    {
        a.last_seen_unix = a.last_seen_unix.max(seen);
    }
    merge_hour(rec, p);
    set_uptime(rec, now);
}

/// Puts a pulse's hour into the record's hours: the same hour is replaced,
/// a newer one added; hours past the uptime window are dropped.
pub fn merge_hour(rec: &mut HostHistory, p: &HostPulse) {
    let Some(hour) = &p.hour else { return };
    match rec.hours.last_mut() {
        Some(last) if last.hour_unix == hour.hour_unix => *last = *hour,
        Some(last) if last.hour_unix > hour.hour_unix => {}
        _ => rec.hours.push(*hour),
    }
    let newest = hour.hour_unix;
    rec.hours
        .retain(|h| h.hour_unix + 3600 > newest - UPTIME_WINDOW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AddressSeen, DiscoveredHost, UptimeHour};

    fn rec(last_seen: i64, swept: u32) -> HostHistory {
        HostHistory {
            host: Some(DiscoveredHost {
                key: "mac:dc:a6:32:00:00:01".into(),
                ip: "198.18.0.10".into(),
                mac: "dc:a6:32:00:00:01".into(),
                first_seen_unix: 1000,
                last_seen_unix: last_seen,
                rtt_micros: 300 + swept,
                ..Default::default()
            }),
            addresses: vec![AddressSeen {
                mac: "dc:a6:32:00:00:01".into(),
                ip: "198.18.0.10".into(),
                first_seen_unix: 1000,
                last_seen_unix: last_seen,
            }],
            hours: vec![UptimeHour {
                hour_unix: 0,
                swept,
                answered: swept,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_sweep_that_changes_only_the_pulse_keeps_the_digest_and_the_pulse_restores_it() {
        let written = rec(1000, 1);
        let later = rec(1300, 2);
        assert_eq!(digest(&written), digest(&later));
        let mut moved = later.clone();
        moved.host.as_mut().unwrap().ip = "198.18.0.11".into();
        assert_ne!(digest(&written), digest(&moved));
        let mut loaded = written.clone();
        apply(&mut loaded, &of(&later), 1300);
        assert_eq!(loaded.host.as_ref().unwrap().last_seen_unix, 1300);
        assert_eq!(loaded.host.as_ref().unwrap().rtt_micros, 302);
        assert_eq!(loaded.addresses[0].last_seen_unix, 1300);
        assert_eq!(loaded.hours, later.hours);
        assert!((loaded.host.as_ref().unwrap().uptime_24h - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_new_hour_rewrites_no_record_and_the_pulses_keep_the_finished_one() {
        let written = rec(1000, 3);
        let mut next_hour = rec(4000, 3);
        next_hour.hours.push(UptimeHour {
            hour_unix: 3600,
            swept: 1,
            answered: 0,
        });
        assert_eq!(digest(&written), digest(&next_hour));
        // Replayed in order: the first hour's last pulse, then the new one.
        let mut loaded = written.clone();
        loaded.hours.clear();
        merge_hour(&mut loaded, &of(&written));
        merge_hour(&mut loaded, &of(&next_hour));
        assert_eq!(loaded.hours, next_hour.hours);
    }
}
