//! Finding discovered hosts by any key, and the pages of their histories.

use std::{collections::HashSet, net::IpAddr};

use tonic::Status;

use super::{checked_key, page_size, MAX_KEY_LEN};
use crate::{
    db::store::Discovery,
    net::Mac,
    proto::{HostHistory, ListHostHistoryRequest, ListHostHistoryResponse},
};

/// The host a key names: an IP or MAC it has used, its history key, its
/// machine name or its DNS name. The current address wins over old ones.
pub fn find_host<'a>(disc: &'a Discovery, key: &str) -> Result<&'a HostHistory, Status> {
    let key = checked_key("key", key.trim())?;
    let found = if let Ok(ip) = key.parse::<IpAddr>() {
        using(disc, &ip.to_string(), |ip, _| ip)
    } else if let Ok(mac) = key.parse::<Mac>() {
        using(disc, &mac.to_string(), |_, mac| mac)
    } else {
        let by = |f: &dyn Fn(&crate::proto::DiscoveredHost) -> bool| {
            disc.histories
                .iter()
                .filter(|r| r.host.as_ref().is_some_and(f))
                .collect::<Vec<_>>()
        };
        let exact = by(&|h| h.key == key || h.machine == key);
        match exact.first() {
            Some(r) => Some(*r),
            // A name is whatever a device announces: several may claim one,
            // and picking one would let a rogue stand in for the other.
            None => match by(&|h| h.dns_name == key).as_slice() {
                [] => None,
                [one] => Some(*one),
                many => {
                    return Err(Status::failed_precondition(format!(
                        "{} hosts announce the name {key:?}; ask by IP or MAC",
                        many.len()
                    )))
                }
            },
        }
    };
    found.ok_or_else(|| Status::not_found(format!("no discovered host {key:?}")))
}

/// The host using an address (an IP or a MAC, as `pick` takes it from an
/// IP/MAC pair) now, else the one that used it most recently.
fn using<'a>(
    disc: &'a Discovery,
    address: &str,
    pick: impl Fn(&'a str, &'a str) -> &'a str,
) -> Option<&'a HostHistory> {
    let now = disc.histories.iter().find(|r| {
        r.host
            .as_ref()
            .is_some_and(|h| pick(&h.ip, &h.mac) == address)
    });
    now.or_else(|| {
        disc.histories
            .iter()
            .filter_map(|r| {
                let last = r
                    .addresses
                    .iter()
                    .filter(|a| pick(&a.ip, &a.mac) == address)
                    .map(|a| a.last_seen_unix)
                    .max()?;
                Some((last, r))
            })
            .max_by_key(|(last, _)| *last)
            .map(|(_, r)| r)
    })
}

pub const DEFAULT_HISTORY_PAGE: usize = 500;
pub const MAX_HISTORY_PAGE: usize = 1000;

/// One page of every host's history, in key order after `page_token`; the
/// first page also carries the latest sweeps and the `reserved` addresses.
pub(super) fn history_page(
    disc: &Discovery,
    reserved: &HashSet<IpAddr>,
    req: &ListHostHistoryRequest,
) -> Result<ListHostHistoryResponse, Status> {
    if req.page_token.len() > MAX_KEY_LEN {
        return Err(Status::invalid_argument(format!(
            "page_token is at most {MAX_KEY_LEN} bytes"
        )));
    }
    let size = page_size(req.page_size, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)?;
    fn key(r: &HostHistory) -> &str {
        r.host.as_ref().map_or("", |h| h.key.as_str())
    }
    let first = req.page_token.is_empty();
    let mut after: Vec<&HostHistory> = disc
        .histories
        .iter()
        .filter(|r| first || key(r) > req.page_token.as_str())
        .collect();
    after.sort_by(|a, b| key(a).cmp(key(b)));
    let more = after.len() > size;
    after.truncate(size);
    let mut held: Vec<String> = reserved.iter().map(|ip| ip.to_string()).collect();
    held.sort();
    Ok(ListHostHistoryResponse {
        next_page_token: match (more, after.last()) {
            (true, Some(last)) => key(last).to_string(),
            _ => String::new(),
        },
        hosts: after.into_iter().cloned().collect(),
        as_of_unix: disc.last_sweep_unix,
        sweeps: if first {
            disc.sweeps.clone()
        } else {
            Vec::new()
        },
        reserved: if first { held } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DiscoveredHost;

    #[test]
    fn a_host_is_found_by_any_address_it_used_its_name_or_its_key() {
        use crate::proto::AddressSeen;
        let history = |key: &str, ip: &str, mac: &str, used: &[(&str, &str, i64)]| HostHistory {
            host: Some(DiscoveredHost {
                key: key.into(),
                ip: ip.into(),
                mac: mac.into(),
                dns_name: format!("{key}.lan"),
                ..Default::default()
            }),
            addresses: used
                .iter()
                .map(|(ip, mac, at)| AddressSeen {
                    ip: ip.to_string(),
                    mac: mac.to_string(),
                    first_seen_unix: *at,
                    last_seen_unix: *at,
                })
                .collect(),
            ..Default::default()
        };
        let disc = Discovery::of(
            vec![
                history(
                    "a",
                    "198.18.0.1",
                    "02:00:00:00:00:0a",
                    &[("198.18.0.9", "02:00:00:00:00:01", 10)],
                ),
                history(
                    "b",
                    "198.18.0.2",
                    "02:00:00:00:00:0b",
                    &[("198.18.0.9", "02:00:00:00:00:01", 20)],
                ),
            ],
            Vec::new(),
            crate::db::store::DiscoverySource::Scanner,
        );
        let found = |key: &str| {
            find_host(&disc, key)
                .ok()
                .and_then(|r| r.host.as_ref())
                .map(|h| h.key.clone())
        };
        assert_eq!(
            found("198.18.0.2").as_deref(),
            Some("b"),
            "the current address"
        );
        assert_eq!(
            found("02:00:00:00:00:0A").as_deref(),
            Some("a"),
            "the current MAC"
        );
        assert_eq!(
            found("198.18.0.9").as_deref(),
            Some("b"),
            "who used it last"
        );
        assert_eq!(found("02:00:00:00:00:01").as_deref(), Some("b"));
        assert_eq!(found("a.lan").as_deref(), Some("a"));
        assert_eq!(found("b").as_deref(), Some("b"));
        assert_eq!(found("198.18.0.77"), None);
        let mut twins = disc.histories.clone();
        for r in &mut twins {
            if let Some(h) = r.host.as_mut() {
                h.dns_name = "phone.lan".into();
            }
        }
        let twins = Discovery::of(
            twins,
            Vec::new(),
            crate::db::store::DiscoverySource::Scanner,
        );
        let e = find_host(&twins, "phone.lan").unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("2 hosts announce"), "{e:?}");
    }
}
