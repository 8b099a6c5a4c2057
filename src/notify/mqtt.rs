//! Home Assistant over MQTT: one `device_tracker` per database machine,
//! announced by MQTT discovery (`homeassistant/device_tracker/mdb_NAME/
//! config`, retained), its state `home` or `not_home` from presence
//! (`mdb/NAME/state`, retained), and mdb's availability (`mdb/status`,
//! `online`, with `offline` as the last will). What is published is
//! compared with what should be: a message goes out only when a value
//! changes (once per presence change), and everything again after each
//! (re)connection, since the broker may have lost it. A machine removed
//! from the database has its retained config cleared.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::metrics::NotifyMetrics;
use crate::{
    db::Store,
    proto::{DiscoveredHost, Presence},
};

/// Where the broker is and how mdb's topics are named.
#[derive(Clone, Debug)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<crate::secret::Secret>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// mdb's own topics: `PREFIX/status`, `PREFIX/NAME/state`.
    pub topic_prefix: String,
}

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Publishes queued toward the broker at most.
const QUEUE: usize = 4096;

/// Keeps the broker's retained topics equal to the lab until cancelled.
/// `tls` (`mqtts://`): the broker's certificate is checked against its
/// roots, so the password never crosses the LAN in the clear.
pub async fn run(
    name: String,
    broker: Broker,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    store: Arc<Store>,
    metrics: NotifyMetrics,
    shutdown: CancellationToken,
) {
    let status = format!("{}/status", broker.topic_prefix);
    let mut opts = MqttOptions::new(
        format!("mdb-{}", std::process::id()),
        &broker.host,
        broker.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
    if let Some(tls) = tls {
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    }
    if let Some(user) = &broker.username {
        let pass = broker
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        opts.set_credentials(user, pass);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, QUEUE);
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    let mut events = store.subscribe();
    let mut connected = false;
    let mut wait = RETRY_MIN;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.try_publish(&status, QoS::AtLeastOnce, true, "offline");
                let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                return;
            }
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(sink = %name, broker = %broker.host, "connected to the MQTT broker");
                    connected = true;
                    wait = RETRY_MIN;
                    published.clear();
                    publish(&client, &name, &metrics, &status, "online");
                    sync(&client, &name, &broker, &store, &metrics, &mut published);
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        warn!(sink = %name, error = %e, "lost the MQTT broker; reconnecting");
                    }
                    connected = false;
                    metrics.failed(&name);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
            },
            ev = events.recv() => {
                if matches!(ev, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                if connected {
                    sync(&client, &name, &broker, &store, &metrics, &mut published);
                }
            }
        }
    }
}

fn publish(
    client: &AsyncClient,
    name: &str,
    metrics: &NotifyMetrics,
    topic: &str,
    payload: &str,
) -> bool {
    match client.try_publish(topic, QoS::AtLeastOnce, true, payload) {
        Ok(()) => {
            metrics.sent(name);
            true
        }
        Err(_) => {
            metrics.dropped(name);
            false
        }
    }
}

/// Publishes what differs from what was published.
fn sync(
    client: &AsyncClient,
    name: &str,
    broker: &Broker,
    store: &Store,
    metrics: &NotifyMetrics,
    published: &mut BTreeMap<String, String>,
) {
    let Some(snap) = store.snapshot() else { return };
    let discovery = store.discovery();
    let mut want = desired(broker, &snap.machines, &discovery.hosts);
    if discovery.last_sweep_unix == 0 {
        // Before the first sweep nobody is known to be away.
        let states = format!("{}/", broker.topic_prefix);
        want.retain(|t, _| !(t.starts_with(&states) && t.ends_with("/state")));
    }
    for (topic, payload) in &want {
        if published.get(topic) != Some(payload) && publish(client, name, metrics, topic, payload) {
            published.insert(topic.clone(), payload.clone());
        }
    }
    let gone: Vec<String> = published
        .keys()
        .filter(|t| !want.contains_key(*t))
        .cloned()
        .collect();
    for topic in gone {
        // An empty retained message removes it (a config: the entity).
        if publish(client, name, metrics, &topic, "") {
            published.remove(&topic);
        }
    }
}

/// Every retained topic and its payload for these machines and hosts.
pub fn desired(
    broker: &Broker,
    machines: &[crate::proto::Machine],
    hosts: &[DiscoveredHost],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let status = format!("{}/status", broker.topic_prefix);
    for m in machines {
        let id = format!("mdb_{}", m.name.replace('-', "_"));
        let state = format!("{}/{}/state", broker.topic_prefix, m.name);
        let mut device = serde_json::json!({
            "identifiers": [id],
            "name": m.name,
            "manufacturer": "mdb",
        });
        if !m.mac.is_empty() {
            device["connections"] = serde_json::json!([["mac", m.mac]]);
        }
        let config = serde_json::json!({
            "name": serde_json::Value::Null,
            "unique_id": id,
            "object_id": id,
            "state_topic": state,
            "payload_home": "home",
            "payload_not_home": "not_home",
            "source_type": "router",
            "availability_topic": status,
            "device": device,
        });
        out.insert(
            format!("{}/device_tracker/{id}/config", broker.discovery_prefix),
            config.to_string(),
        );
        let home = hosts
            .iter()
            .any(|h| h.machine == m.name && h.presence == Presence::Up as i32);
        out.insert(state, if home { "home" } else { "not_home" }.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Machine;

    #[test]
    fn each_machine_has_a_retained_config_and_a_state_from_presence() {
        let broker = Broker {
            host: "broker".into(),
            port: 1883,
            username: None,
            password: None,
            discovery_prefix: "homeassistant".into(),
            topic_prefix: "mdb".into(),
        };
        let machines = vec![
            Machine {
                name: "nas".into(),
                mac: "00:16:3e:00:00:11".into(),
                ..Default::default()
            },
            Machine {
                name: "spare-pi".into(),
                ..Default::default()
            },
        ];
        let hosts = vec![DiscoveredHost {
            machine: "nas".into(),
            presence: Presence::Up as i32,
            ..Default::default()
        }];
        let d = desired(&broker, &machines, &hosts);
        assert_eq!(d["mdb/nas/state"], "home");
        assert_eq!(d["mdb/spare-pi/state"], "not_home");
        let c: serde_json::Value =
            serde_json::from_str(&d["homeassistant/device_tracker/mdb_nas/config"]).unwrap();
        assert_eq!(c["state_topic"], "mdb/nas/state");
        assert_eq!(c["availability_topic"], "mdb/status");
        assert_eq!(c["device"]["connections"][0][1], "00:16:3e:00:00:11");
        assert!(d.contains_key("homeassistant/device_tracker/mdb_spare_pi/config"));
    }
}
