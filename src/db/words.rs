//! The words of every enum, in one place: how YAML spells them, how tables,
//! JSON, inventories and metric labels print them. Parsing and printing
//! read the same lists, so they cannot drift apart.

use crate::proto::{
    machine::Use, DevelopmentKind, HostState, Machine, Presence, Provisioner, Role, UseKind,
};

/// Where a discovered host's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// The client hostname of its DHCP lease.
    Dhcp,
    /// What it announces over mDNS.
    Mdns,
    /// Reverse DNS of its address.
    Rdns,
}

/// Name sources as `scan.names` of mdb.yaml and every view spell them.
pub const NAME_SOURCES: &[(&str, NameSource)] = &[
    ("dhcp", NameSource::Dhcp),
    ("mdns", NameSource::Mdns),
    ("rdns", NameSource::Rdns),
];

/// Which name a proposed entry takes when `scan.names` says nothing: what
/// the device announces, then what it asked its lease for, then what the
/// router's DNS says.
pub const DEFAULT_NAME_ORDER: &[NameSource] =
    &[NameSource::Mdns, NameSource::Dhcp, NameSource::Rdns];

impl NameSource {
    pub fn word(self) -> &'static str {
        word_in(NAME_SOURCES, self)
    }
}

/// Uses as `use:` and `scan.rules[].guess` spell them.
pub const USE_KINDS: &[(&str, UseKind)] = &[
    ("cluster", UseKind::Cluster),
    ("discover", UseKind::Discover),
    ("development", UseKind::Development),
    ("games", UseKind::Games),
    ("device", UseKind::Device),
];

/// The words of [`USE_KINDS`] alone, for metric labels.
pub const USE_NAMES: &[&str] = &["cluster", "discover", "development", "games", "device"];

/// Cluster roles; the first word of each role is how it prints.
pub const ROLES: &[(&str, Role)] = &[
    ("control-plane", Role::ControlPlane),
    ("controlplane", Role::ControlPlane),
    ("worker", Role::Worker),
];

pub const PROVISIONERS: &[(&str, Provisioner)] = &[
    ("none", Provisioner::None),
    ("primary", Provisioner::Primary),
    ("secondary", Provisioner::Secondary),
];

pub const DEVELOPMENT_KINDS: &[(&str, DevelopmentKind)] = &[
    ("server", DevelopmentKind::Server),
    ("visual", DevelopmentKind::Visual),
];

/// Discovery states, as labels and tables print them.
pub const HOST_STATES: &[(&str, HostState)] = &[
    ("known", HostState::Known),
    ("moved", HostState::Moved),
    ("conflict", HostState::Conflict),
    ("new", HostState::New),
    ("missing", HostState::Missing),
    ("unprovisionable", HostState::Unprovisionable),
    ("scanner", HostState::Scanner),
];

/// Presence, as labels and tables print it.
pub const PRESENCES: &[(&str, Presence)] = &[("up", Presence::Up), ("down", Presence::Down)];

/// "up", "down"; "unknown" before a host has answered or been missed enough.
pub fn presence_name(p: i32) -> &'static str {
    word_of(PRESENCES, p, "unknown")
}

/// The built-in groupings of the Ansible inventory (`inventory.group_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `cluster`, `development`, `games`, `device`, `discover`.
    Use,
    /// `cluster_NAME` with `_control_plane` and `_workers`.
    Cluster,
    /// `provisioner_primary`, `provisioner_secondary`.
    Provisioner,
    /// `label_KEY_VALUE` per label.
    Labels,
    /// `role_control_plane`, `role_worker`.
    Role,
    /// `development_server`, `development_visual`.
    DevelopmentKind,
}

pub const GROUP_BY: &[(&str, GroupBy)] = &[
    ("use", GroupBy::Use),
    ("cluster", GroupBy::Cluster),
    ("provisioner", GroupBy::Provisioner),
    ("labels", GroupBy::Labels),
    ("role", GroupBy::Role),
    ("development-kind", GroupBy::DevelopmentKind),
];

/// What the inventory groups by when `mdb.yaml` does not say.
pub const DEFAULT_GROUP_BY: &[GroupBy] = &[
    GroupBy::Use,
    GroupBy::Cluster,
    GroupBy::Provisioner,
    GroupBy::Labels,
];

/// The word a `WORDS`-style list gives a value; empty when it has none.
pub fn word_in<T: PartialEq + Copy>(list: &[(&'static str, T)], value: T) -> &'static str {
    list.iter()
        .find(|(_, x)| *x == value)
        .map_or("", |(w, _)| w)
}

/// The first word a list gives a value; `fallback` for unknown numbers.
fn word_of<E: Copy + Into<i32>>(
    list: &[(&'static str, E)],
    value: i32,
    fallback: &'static str,
) -> &'static str {
    list.iter()
        .find(|(_, e)| (*e).into() == value)
        .map_or(fallback, |(w, _)| w)
}

pub fn use_kind(u: Option<&Use>) -> UseKind {
    match u {
        Some(Use::Cluster(_)) => UseKind::Cluster,
        Some(Use::Discover(_)) => UseKind::Discover,
        Some(Use::Development(_)) => UseKind::Development,
        Some(Use::Games(_)) => UseKind::Games,
        Some(Use::Device(_)) => UseKind::Device,
        None => UseKind::Unspecified,
    }
}

/// The word for a `UseKind` number; empty for unspecified or unknown.
pub fn kind_name(kind: i32) -> &'static str {
    word_of(USE_KINDS, kind, "")
}

/// The lower-case word for a use, as labels, metrics and groups spell it.
pub fn use_name(u: Option<&Use>) -> &'static str {
    match use_kind(u) {
        UseKind::Unspecified => "unspecified",
        k => kind_name(k as i32),
    }
}

/// "control-plane" or "worker"; empty when unspecified.
pub fn role_name(role: i32) -> &'static str {
    word_of(ROLES, role, "")
}

/// "primary" or "secondary"; empty for none.
pub fn provisioner_name(m: &Machine) -> &'static str {
    match m.features.as_ref().map_or(0, |f| f.provisioner) {
        0 => "",
        p => word_of(PROVISIONERS, p, ""),
    }
}

/// "server" or "visual"; an unspecified kind reads as server, the default.
pub fn development_kind_name(kind: i32) -> &'static str {
    word_of(DEVELOPMENT_KINDS, kind, "server")
}

/// A provisioning result in words: "ok", "failed", "not ready", "pending",
/// "skipped", "no address", "ready", "host key changed".
pub fn provision_result_name(r: i32) -> &'static str {
    use crate::proto::ProvisionResult;
    match ProvisionResult::try_from(r) {
        Ok(ProvisionResult::Ok) => "ok",
        Ok(ProvisionResult::Failed) => "failed",
        Ok(ProvisionResult::NotReady) => "not ready",
        Ok(ProvisionResult::Pending) => "pending",
        Ok(ProvisionResult::Skipped) => "skipped",
        Ok(ProvisionResult::NoAddress) => "no address",
        Ok(ProvisionResult::Ready) => "ready",
        Ok(ProvisionResult::HostKeyChanged) => "host key changed",
        _ => "unknown",
    }
}

/// "known", "new", ...; "unspecified" otherwise.
pub fn state_name(state: i32) -> &'static str {
    word_of(HOST_STATES, state, "unspecified")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_prints_as_it_parses() {
        assert_eq!(role_name(Role::ControlPlane as i32), "control-plane");
        assert_eq!(role_name(Role::Worker as i32), "worker");
        assert_eq!(role_name(0), "");
        assert_eq!(
            state_name(HostState::Unprovisionable as i32),
            "unprovisionable"
        );
        assert_eq!(state_name(99), "unspecified");
        assert_eq!(development_kind_name(0), "server");
        assert_eq!(
            development_kind_name(DevelopmentKind::Visual as i32),
            "visual"
        );
        assert_eq!(kind_name(UseKind::Games as i32), "games");
        let names: Vec<&str> = USE_KINDS.iter().map(|(w, _)| *w).collect();
        assert_eq!(names, USE_NAMES);
    }
}
