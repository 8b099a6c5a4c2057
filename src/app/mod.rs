//! The daemons, each wired in one place on one shell: `serve` (`mdb serve`:
//! sync, sweeps, the filer, notify, the API), `provision` (`mdb
//! provision`) and `dhcp` (`mdb dhcp --follow`). `shell` is what they stand
//! on: ports bound first, one admin router, one task tracker, one drain;
//! `shutdown` turns SIGTERM into their cancellation. `cli` parses and calls
//! these; nothing below them knows they exist.

pub mod dhcp;
pub mod provision;
pub mod serve;
pub mod shell;
pub mod shutdown;
