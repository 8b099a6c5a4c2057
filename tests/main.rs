//! Every integration test in one binary, as ripgrep keeps them: the
//! helpers of `util` are compiled and linked once, not once per file.
//! `github_log.rs` keeps a binary of its own: tracing caches per log site,
//! process-wide, whether anyone listens, so its thread-scoped subscriber
//! must be the only one.

mod util;

mod api;
mod attack;
mod attack_lan;
mod auth;
mod campus;
mod cli;
mod completeness;
mod deploy;
mod dhcp;
mod discovery;
mod enrol;
mod faults;
mod faults_remote;
mod faults_serve;
mod flood;
mod flux;
mod follower;
mod followups;
mod github;
mod github_lan;
mod history_store;
mod image;
mod impostor;
mod impostor_scanner;
mod inventory;
mod ipv6;
mod leases;
mod mqtt;
mod names;
mod notify;
mod notify_mechanics;
mod pinning;
mod policy;
mod presence;
mod provision;
mod scan_edges;
mod segments;
mod snmp;
mod switch_ports;
mod sync;
mod tls;
mod two_filers;
mod validate;
mod wake;
mod web;
mod web_login;
