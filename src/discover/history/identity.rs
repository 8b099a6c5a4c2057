//! Which identity a host keeps in the history: a database machine by its
//! name, a random MAC by the name it announces, else the sweep's own
//! (`mac:…` for a stable MAC, `ip:…` otherwise).

use crate::{discover::classify::Classified, proto::HostState};

/// The identity a host keeps in the history: a database machine by its
/// name (so it survives a move, and enrolment carries its past over), a
/// random MAC by the name it announces, else the sweep's own identity.
pub fn history_key(c: &Classified) -> String {
    let h = &c.host;
    let state = HostState::try_from(h.state).unwrap_or_default();
    let the_machine = matches!(
        state,
        HostState::Known | HostState::Moved | HostState::Unprovisionable
    );
    if the_machine && !h.machine.is_empty() {
        return format!("machine:{}", h.machine);
    }
    if h.mac_is_local && !h.dns_name.is_empty() && state == HostState::New {
        return format!("name:{}", h.dns_name);
    }
    c.key.clone()
}

/// The identities the same host may have had before: the sweep's own, and
/// for a random MAC the name it announces. (Never a bare address for a
/// stable MAC: a new device on an old lease is not the old device.)
pub(super) fn aliases(c: &Classified) -> Vec<String> {
    let mut out = vec![c.key.clone()];
    if c.host.mac_is_local && !c.host.dns_name.is_empty() {
        out.push(format!("name:{}", c.host.dns_name));
    }
    out
}

pub(super) fn machine_key(key: &str) -> Option<&str> {
    key.strip_prefix("machine:")
}
