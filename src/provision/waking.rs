//! A machine marked `wake: true` that is not ready is woken (a magic
//! packet on its subnet's link, at most a few times an hour), its SSH port
//! is awaited for `wake_timeout`, and only then is it judged again.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::ready::{self, Checked, NotReady, Reach, SshLogin};
use crate::{db::policy::Treatment, proto::Machine, proto::ReadinessCheck};

/// How often a woken machine's SSH port is tried.
const POLL: Duration = Duration::from_millis(500);

/// What waking takes: the hourly bound, and the server to ask when this
/// runner is on no link of the machine's subnet (a scanner that is).
#[derive(Clone, Debug, Default)]
pub struct Waker {
    pub limiter: Arc<Mutex<crate::wake::Limiter>>,
    pub server: crate::dial::Remote,
}

impl Waker {
    /// Sends the packet from here when attached, else asks the server.
    async fn send(&self, m: &Machine) -> Result<String, String> {
        let (name, mac, ips) = (m.name.clone(), m.mac.clone(), m.ips.clone());
        let here = tokio::task::spawn_blocking(move || crate::wake::send(&name, &mac, &ips))
            .await
            .map_err(|e| e.to_string())?;
        match here {
            Ok(iface) => Ok(iface),
            Err(crate::wake::Error::NotAttached { .. }) => ask_server(&self.server, &m.name).await,
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Asks `server` (a scanner on the machine's segment) to wake `name`.
pub async fn ask_server(server: &crate::dial::Remote, name: &str) -> Result<String, String> {
    let conn = crate::dial::connect(&server.addr, &server.creds)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", server.addr))?;
    let mut c = crate::proto::machine_db_client::MachineDbClient::new(conn);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.wake(crate::proto::WakeRequest {
            machine: name.to_string(),
        }),
    )
    .await
    .map_err(|_| format!("{} did not answer within 10 s", server.addr))?
    .map_err(|s| format!("{}: {}", server.addr, s.message()))?;
    Ok(format!("{} (by {})", r.into_inner().interface, server.addr))
}

/// `first`, or for a machine to wake that was not ready, the check after
/// waking it.
pub async fn wake_if_asleep(
    m: &Machine,
    treatment: &Treatment,
    login: &SshLogin,
    checks: &[ReadinessCheck],
    reach: &Reach,
    waker: &Waker,
    first: Checked,
) -> Checked {
    let Err(NotReady::Check(why)) = &first.ready else {
        return first;
    };
    if !m.wake || reach.away {
        return first;
    }
    let not_ready = |reason: String| Checked {
        ready: Err(NotReady::Check(reason)),
        first_key: None,
    };
    let allowed = waker
        .limiter
        .lock()
        .map_err(|_| "the wake limiter is poisoned".to_string())
        .and_then(|mut l| l.allow(&m.name, Instant::now()).map_err(|e| e.to_string()));
    if let Err(e) = allowed {
        return not_ready(format!("{why}; {e}"));
    }
    if let Err(e) = waker.send(m).await {
        return not_ready(format!("{why}; waking it failed: {e}"));
    }
    let Some(ip) = m.ips.first().and_then(|i| i.parse::<IpAddr>().ok()) else {
        return first;
    };
    let addr = SocketAddr::new(ip, crate::discover::classify::ssh_port(m));
    if !port_opens(addr, login.wake_timeout).await {
        return not_ready(format!("woken, not up after {}", words(login.wake_timeout)));
    }
    ready::check(m, treatment, login, checks, reach).await
}

/// Whether `addr` accepts a connection within `wait`.
async fn port_opens(addr: SocketAddr, wait: Duration) -> bool {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let tried = tokio::time::timeout(
            left.min(Duration::from_secs(2)),
            tokio::net::TcpStream::connect(addr),
        );
        if let Ok(Ok(_)) = tried.await {
            return true;
        }
        tokio::time::sleep(POLL.min(until.saturating_duration_since(tokio::time::Instant::now())))
            .await;
    }
}

/// "3 min", "90 s".
fn words(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_read_as_words() {
        assert_eq!(super::words(std::time::Duration::from_secs(180)), "3 min");
        assert_eq!(super::words(std::time::Duration::from_secs(90)), "90 s");
    }
}
