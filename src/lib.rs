//! mdb, the machine database.
//!
//! # Layout
//! One folder per subsystem; a module imports only modules on a lower line
//! of this list (or its own line's peers that do not import it back).
//! - `cli`: clap definitions, one function per subcommand, client helpers and tables.
//! - `app`: the daemons (`serve`, `provision`, `dhcp`), each wired in one place on
//!   `app::shell` (ports bound first, one admin router, one task tracker, one drain).
//! - `config`: the service's configuration file, layered (file < env < flags) over each
//!   subsystem's own `settings`, validated before any port is bound.
//! - `serve`: what an API replica serves: the gRPC `api`, `metrics`, the `web` page.
//! - `provision`: the runner that acts on merged machines and changed clusters
//!   (plan, pinned host keys, readiness, reports).
//! - `github`: fingerprints, issue text, proposed entries, the pure plan, the HTTP layer,
//!   the filer, enrolment pull requests.
//! - `notify`, `dhcp`: news to sinks (with the `Announcer` the filer and runner tell
//!   through); reservations applied to DHCP servers.
//! - `discover`: one sweep (`scan`), `classify` (pure), the `history`, the `sweep` loop,
//!   `mirroring` of other segments' scanners and their merged view (`mirrors`).
//! - `export`: Ansible inventories, DHCP leases, free addresses, views and names of
//!   a host, and the plain-value check every emitter makes.
//! - `sync`: git2 fetch with a hard deadline, hard resync, re-clone only on damage,
//!   enrolment branches.
//! - `watcher`: watching a server's database to act on it, every revision validated first.
//! - `demo`, `gen`: the embedded demo database; generated databases.
//! - `db`: YAML with positions and bounds, validation, the DB's `mdb_yaml`, `Snapshot`,
//!   `Store`, what is `received` from a server, the words of every enum.
//! - `command`, `hostkey`, `leases`, `settings`: commands run with a timeout in a clean
//!   environment; SSH host keys and reading one; DHCP lease files; one setting's layers.
//! - `net`, `secret`, `escape`, `units`, `metrics`, `dial`, `memory`, `limit`: small
//!   shared parts (MACs and ranges; tokens that never print; untrusted text cleaned at
//!   capture and escaped per sink; durations and sizes; the registry; reaching a gRPC
//!   server; the allocator's settings; caps per client address).

pub mod app;
pub mod auth;
pub mod cli;
pub mod command;
pub mod config;
pub mod db;
pub mod demo;
pub mod dhcp;
pub mod dial;
pub mod discover;
pub mod escape;
pub mod export;
pub mod files;
pub mod gen;
pub mod github;
pub mod hostkey;
pub mod ipv6;
pub mod leases;
pub mod limit;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod provision;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod snmp;
pub mod sync;
pub mod units;
pub mod wake;
pub mod watcher;

/// The version and the commit mdb was built from: `0.1.0 (abc123def456)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MDB_GIT_REVISION"),
    ")"
);

pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("mdb.v1");

    /// For gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mdb_descriptor.bin"));
}
