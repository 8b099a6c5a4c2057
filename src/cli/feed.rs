//! `inventory`, `cluster`, `ip next`, `dhcp`: the lab fed from a checkout
//! or a server.

use crate::{
    cli::{args as cli, client},
    db,
    proto::ListMachinesRequest,
};
use anyhow::Context;

/// A checkout on disk, validated as the server would validate it.
pub(super) fn load_checkout(path: &std::path::Path) -> anyhow::Result<db::Snapshot> {
    db::read_dir(path, db::Limits::default())
        .with_context(|| format!("reading {}", path.display()))?
        .validate(crate::db::received::WORKING_TREE)
        .map_err(|report| {
            anyhow::anyhow!("the database at {} is invalid: {report}", path.display())
        })
}

/// The database from a checkout (validated) or from a server.
async fn snapshot(source: &cli::Source) -> anyhow::Result<db::Snapshot> {
    if let Some(path) = &source.db {
        return load_checkout(path);
    }
    let mut c = client::connect(&source.server).await?;
    let (revision, machines) = client::list_all(
        &mut c,
        ListMachinesRequest {
            page_size: 10_000,
            ..Default::default()
        },
    )
    .await?;
    let readiness = c
        .get_readiness(crate::proto::GetReadinessRequest {})
        .await
        .map_err(client::Error::from)?
        .into_inner();
    // Nothing is written out from what a server says before it validates
    // as `mdb validate` would validate it.
    db::received::check(&revision, &machines, &readiness).map_err(|why| {
        anyhow::anyhow!(
            "{} sent a database that does not validate, so nothing is written: {}",
            source.server,
            crate::escape::terminal(&why)
        )
    })?;
    Ok(db::Snapshot::new(
        revision,
        machines,
        db::MdbYaml::default(),
    ))
}

pub async fn inventory(
    source: &cli::Source,
    host: Option<&str>,
    format: cli::InventoryFormat,
    runner: Option<&str>,
) -> anyhow::Result<()> {
    let mut snap = snapshot(source).await?;
    crate::export::plain::check(&snap)?;
    if let Some(r) = runner {
        let statuses = client::provision_statuses(r).await?;
        snap = client::label_statuses(snap, &statuses);
    }
    match (host, format) {
        (Some(h), _) => println!(
            "{}",
            serde_json::to_string_pretty(&crate::export::inventory::host(&snap, h))?
        ),
        (None, cli::InventoryFormat::Json) => {
            println!(
                "{}",
                serde_json::to_string(&crate::export::inventory::list(&snap))?
            )
        }
        (None, cli::InventoryFormat::Yaml) => {
            print!("{}", crate::export::inventory::static_yaml(&snap)?)
        }
    }
    Ok(())
}

pub async fn cluster(
    name: &str,
    source: &cli::Source,
    format: cli::ClusterFormat,
) -> anyhow::Result<()> {
    let snap = snapshot(source).await?;
    let missing = || anyhow::anyhow!("no cluster {name:?}");
    match format {
        cli::ClusterFormat::K3s => {
            print!(
                "{}",
                crate::export::inventory::k3s(&snap, name)?.ok_or_else(missing)?
            )
        }
        cli::ClusterFormat::Kubespray => print!(
            "{}",
            crate::export::inventory::kubespray(&snap, name)?.ok_or_else(missing)?
        ),
        cli::ClusterFormat::Json => {
            let c = snap.cluster_view(name).ok_or_else(missing)?;
            let v = serde_json::json!({
                "name": c.name,
                "control_plane": c.control_plane.iter().map(client::machine_json).collect::<Vec<_>>(),
                "workers": c.workers.iter().map(client::machine_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        cli::ClusterFormat::Table => {
            let c = snap.cluster_view(name).ok_or_else(missing)?;
            let rows: Vec<Vec<String>> = c
                .control_plane
                .iter()
                .map(|m| ("control-plane", m))
                .chain(c.workers.iter().map(|m| ("worker", m)))
                .map(|(role, m)| {
                    vec![
                        role.to_string(),
                        m.name.clone(),
                        m.ips.join(","),
                        m.mac.clone(),
                    ]
                })
                .collect();
            print!("{}", client::table(&["ROLE", "NAME", "IP", "MAC"], &rows));
        }
    }
    Ok(())
}

pub async fn ip_next(subnet: &str, source: &cli::Source) -> anyhow::Result<()> {
    if source.db.is_some() {
        let snap = snapshot(source).await?;
        let s = snap
            .mdb_yaml
            .subnet(subnet)
            .ok_or_else(|| anyhow::anyhow!("no subnet {subnet:?} in mdb.yaml"))?;
        let ip = crate::export::ipam::next_free(s, &snap, &Default::default())
            .ok_or_else(|| anyhow::anyhow!("subnet {} has no free static address", s.name))?;
        println!("{ip}");
        return Ok(());
    }
    let mut c = client::connect(&source.server).await?;
    let r = c
        .suggest_address(crate::proto::SuggestAddressRequest {
            subnet: subnet.to_string(),
        })
        .await?
        .into_inner();
    println!("{}", r.ip);
    Ok(())
}

pub async fn dhcp(source: &cli::Source, format: cli::DhcpFormat) -> anyhow::Result<()> {
    let snap = snapshot(source).await?;
    let f = match format {
        cli::DhcpFormat::Dnsmasq => crate::export::dhcp::Format::Dnsmasq,
        cli::DhcpFormat::Isc => crate::export::dhcp::Format::Isc,
        cli::DhcpFormat::Kea => crate::export::dhcp::Format::Kea,
    };
    print!("{}", crate::export::dhcp::render(&snap, f)?);
    Ok(())
}

/// `mdb wake`: the machine from a DB checkout or the server, woken on the
/// link of its subnet.
pub async fn wake(target: &str, db: Option<&std::path::Path>, server: &str) -> anyhow::Result<()> {
    let m = match db {
        Some(dir) => {
            let snap = load_checkout(dir)?;
            snap.by_name_or_mac(target).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "{target:?} is no machine of the database in {}",
                    dir.display()
                )
            })?
        }
        None => {
            let mut c = client::connect(server).await?;
            let m = client::get(&mut c, target).await?;
            // What answers at the server's address names the MAC and
            // subnet a packet goes to: held to the DB's own forms first.
            crate::db::received::check_machine(&m).map_err(|e| {
                anyhow::anyhow!(
                    "{server} sent a machine that does not validate: {}",
                    crate::escape::terminal(&e)
                )
            })?;
            m
        }
    };
    // On no link of its subnet, the server (a scanner there) sends it.
    let waker = crate::provision::waking::Waker::new(crate::dial::Remote {
        addr: server.to_string(),
        creds: crate::dial::cli_credentials(),
    });
    let iface = waker.send(&m).await.map_err(anyhow::Error::msg)?;
    println!("woke {} ({}) on {iface}", m.name, m.mac);
    Ok(())
}
