//! mdb, the machine database.
//!
//! # Layout
//! One folder per subsystem; a module imports only modules below it here.
//! - `cli`: clap definitions, one function per subcommand, client helpers and tables.
//! - `config`: the service's configuration (file < env < flags), validated before any port is bound.
//! - `dhcp`: `mdb dhcp --follow`, reservations applied to the DHCP server (dnsmasq, Kea, a hook).
//! - `provision`: `mdb provision`, the runner that acts on merged machines and changed clusters.
//! - `serve`: wiring of `mdb serve` (ports, one drain deadline), the gRPC `api`, `metrics`, the `web` page.
//! - `github`: fingerprints, issue text, proposed entries, the pure plan, the HTTP layer, the filer, enrolment pull requests.
//! - `discover`: one sweep (`scan`: ARP, ICMP, ports, names), `classify` (pure) and the `sweep` loop.
//! - `export`: Ansible inventory and cluster exports, DHCP leases, free addresses, a machine's views.
//! - `sync`: git2 fetch with a hard deadline, hard resync, re-clone only on damage, enrolment branches.
//! - `demo`, `gen`: the embedded demo database; generated databases.
//! - `metrics`: the registry and its helpers; each subsystem owns what it records.
//! - `db`: YAML with positions and bounds, validation, `Snapshot`, `Store`, the words of every enum.
//! - `watcher`: following a server's database to act on it, every revision validated first.
//! - `dial`: reaching a gRPC server, plaintext or TLS (system roots or a CA file).
//! - `net`, `secret`, `escape`, `units`: small shared types (MACs and ranges; tokens that never print;
//!   untrusted text cleaned at capture and escaped per sink; durations and sizes).

pub mod app;
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
pub mod gen;
pub mod github;
pub mod hostkey;
pub mod leases;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod provision;
pub mod secret;
pub mod serve;
pub mod setting;
pub mod sync;
pub mod units;
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
