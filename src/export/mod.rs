//! What the database feeds to other tools: Ansible inventories and cluster
//! exports, static DHCP leases, and free addresses. Pure functions of a
//! `Snapshot`; no I/O.

pub mod dhcp;
pub mod inventory;
pub mod ipam;
pub mod names;
pub mod plain;
pub mod view;
