//! `list`, `get`, `stats`, `discovered`, `history`: what a server serves,
//! as tables or JSON.

use crate::{
    cli::{args as cli, client},
    db,
    proto::{ListMachinesRequest, Provisioner, UseKind},
};

pub async fn list(a: cli::ListArgs) -> anyhow::Result<()> {
    let mut c = client::connect(&a.conn.server).await?;
    let req = ListMachinesRequest {
        r#use: a.use_.map_or(UseKind::Unspecified, |u| match u {
            cli::UseArg::Cluster => UseKind::Cluster,
            cli::UseArg::Discover => UseKind::Discover,
            cli::UseArg::Development => UseKind::Development,
            cli::UseArg::Games => UseKind::Games,
            cli::UseArg::Device => UseKind::Device,
        }) as i32,
        cluster: a.cluster.unwrap_or_default(),
        provisioner: a.provisioner.map(|p| match p {
            cli::ProvisionerArg::None => Provisioner::None as i32,
            cli::ProvisionerArg::Primary => Provisioner::Primary as i32,
            cli::ProvisionerArg::Secondary => Provisioner::Secondary as i32,
        }),
        labels: a.labels,
        ..Default::default()
    };
    let (_, ms) = client::list_all(&mut c, req).await?;
    let statuses = match &a.runner {
        Some(r) => Some(client::provision_statuses(r).await?),
        None => None,
    };
    // What the server's sweeps say, when it has any (a replica or scanner).
    let seen = c
        .list_discovered(crate::proto::ListDiscoveredRequest::default())
        .await
        .ok()
        .map(|r| r.into_inner())
        .filter(|r| r.as_of_unix > 0)
        .map(|r| r.hosts);
    if a.json {
        let v: Vec<_> = ms
            .iter()
            .map(|m| {
                let v = client::with_status(client::machine_json(m), statuses.as_ref(), &m.name);
                client::with_presence(v, seen.as_deref().unwrap_or_default(), &m.name)
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "{}",
            client::machines_table_with(&ms, seen.as_deref(), statuses.as_ref())
        );
    }
    Ok(())
}

pub async fn get(server: &str, key: &str, json: bool, runner: Option<&str>) -> anyhow::Result<()> {
    let mut c = client::connect(server).await?;
    let m = match client::get(&mut c, key).await {
        Ok(m) => m,
        // Not in the database: a host the sweeps found, if there is one.
        Err(client::Error::Rpc(s)) if s.code() == tonic::Code::NotFound => {
            let found = c
                .get_discovered(crate::proto::GetDiscoveredRequest {
                    key: key.to_string(),
                })
                .await;
            let Ok(h) = found.map(|r| r.into_inner()) else {
                return Err(client::Error::Rpc(s).into());
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&client::host_json(&h))?);
            } else {
                println!("not in the database; the sweeps found it:");
                let line = format!("{} {} {} {}", h.key, h.ip, h.mac, h.vendor);
                println!("host         {}", crate::escape::terminal(&line));
                print!("{}", client::presence_lines(&h));
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    db::received::check_machine(&m)
        .map_err(|why| anyhow::anyhow!("{server}: {}", crate::escape::terminal(&why)))?;
    let statuses = match runner {
        Some(r) => Some(client::provision_statuses(r).await?),
        None => None,
    };
    if json {
        let v = client::with_status(client::machine_json(&m), statuses.as_ref(), &m.name);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::machine_detail(&m));
        let seen = c
            .get_discovered(crate::proto::GetDiscoveredRequest {
                key: format!("machine:{}", m.name),
            })
            .await
            .ok()
            .map(|r| r.into_inner());
        match seen {
            Some(h) => print!("{}", client::presence_lines(&h)),
            None => println!("discovery    not seen by the sweeps"),
        }
        if let Some(s) = statuses.as_ref().and_then(|s| s.get(&m.name)) {
            println!("{}", client::status_line(s));
        }
    }
    Ok(())
}

pub async fn stats(server: &str, json: bool) -> anyhow::Result<()> {
    let mut c = client::connect(server).await?;
    let s = client::stats(&mut c).await?;
    let mut by_use: Vec<_> = s.machines_by_use.iter().collect();
    by_use.sort();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machines": s.machines,
                "machines_by_use": s.machines_by_use.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "clusters": s.clusters,
                "revision": s.revision,
                "loaded_unix": s.loaded_unix,
                "last_sync_unix": s.last_sync_unix,
                "last_sync_error": s.last_sync_error,
                "discovered_by_state": s.discovered_by_state.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "last_sweep_unix": s.last_sweep_unix,
                "discovery_source": s.discovery_source,
                "discovery_stale": s.discovery_stale,
            }))?
        );
        return Ok(());
    }
    let when = |t: i64| {
        if t <= 0 {
            "never".to_string()
        } else {
            format!(
                "{} ({}s ago)",
                crate::github::entry::time(t),
                (db::store::now_unix() - t).max(0)
            )
        }
    };
    println!(
        "revision    {}",
        if s.revision.is_empty() {
            "none loaded"
        } else {
            &s.revision
        }
    );
    println!("synced      {}", when(s.last_sync_unix));
    println!("loaded      {}", when(s.loaded_unix));
    if !s.last_sync_error.is_empty() {
        println!(
            "sync error  {}",
            s.last_sync_error.lines().next().unwrap_or("")
        );
    }
    println!("machines    {}", s.machines);
    for (u, n) in by_use {
        println!("  {u:<11} {n}");
    }
    println!("clusters    {}", s.clusters);
    println!(
        "last sweep  {} ({}{})",
        when(s.last_sweep_unix),
        s.discovery_source,
        if s.discovery_stale { ", stale" } else { "" }
    );
    let mut states: Vec<_> = s.discovered_by_state.iter().collect();
    states.sort();
    for (state, n) in states {
        println!("  {state:<15} {n}");
    }
    Ok(())
}

pub async fn discovered(
    server: &str,
    state: Option<cli::StateArg>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::proto::HostState;
    let mut c = client::connect(server).await?;
    let state = state.map_or(HostState::Unspecified, |s| match s {
        cli::StateArg::Known => HostState::Known,
        cli::StateArg::Moved => HostState::Moved,
        cli::StateArg::Conflict => HostState::Conflict,
        cli::StateArg::New => HostState::New,
        cli::StateArg::Missing => HostState::Missing,
        cli::StateArg::Unprovisionable => HostState::Unprovisionable,
        cli::StateArg::Scanner => HostState::Scanner,
    });
    let answer = c
        .list_discovered(crate::proto::ListDiscoveredRequest {
            state: state as i32,
        })
        .await?
        .into_inner();
    if answer.stale {
        eprintln!(
            "mdb: stale: the server cannot reach its scanner; this is the state of {}",
            crate::github::entry::time(answer.as_of_unix)
        );
    }
    let hosts = answer.hosts;
    if json {
        let v: Vec<_> = hosts.iter().map(client::host_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::discovered_table(&hosts, true));
    }
    Ok(())
}

/// One host's history: its addresses over time and its presence
/// transitions.
pub async fn history(server: &str, key: &str, json: bool) -> anyhow::Result<()> {
    use crate::github::entry::time;
    let mut c = client::connect(server).await?;
    let r = c
        .get_host_history(crate::proto::GetHostHistoryRequest {
            key: key.to_string(),
        })
        .await?
        .into_inner();
    let h = r.host.clone().unwrap_or_default();
    if json {
        let v = client::history_json(&r);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let line = format!("{} {} {}", h.key, h.ip, h.machine);
    println!("host         {}", crate::escape::terminal(&line));
    print!("{}", client::presence_lines(&h));
    let rows: Vec<Vec<String>> = r
        .addresses
        .iter()
        .map(|a| {
            vec![
                a.ip.clone(),
                a.mac.clone(),
                time(a.first_seen_unix),
                time(a.last_seen_unix),
            ]
        })
        .collect();
    print!(
        "\n{}",
        client::table(&["IP", "MAC", "FIRST SEEN", "LAST SEEN"], &rows)
    );
    let rows: Vec<Vec<String>> = r
        .transitions
        .iter()
        .rev()
        .map(|t| {
            vec![
                time(t.at_unix),
                db::words::presence_name(t.presence).to_string(),
                t.ip.clone(),
            ]
        })
        .collect();
    print!("\n{}", client::table(&["AT", "WENT", "IP"], &rows));
    Ok(())
}
