//! A machine marked `wake: true` (or of a use `provision: wake:` lists)
//! that is not ready is woken (a magic packet on its subnet's link, from
//! here or by the server, at most a few times an hour) and given
//! `wake_timeout` to come up; the runner's retries judge it meanwhile.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::ready::{Checked, NotReady, Reach, SshLogin};
use crate::proto::Machine;

/// Asking a server to wake, connection included, ends by then.
pub const ASK_DEADLINE: Duration = Duration::from_secs(10);

/// What waking takes: the hourly bound, and the server to ask when this
/// runner is on no link of the machine's subnet (a scanner that is).
#[derive(Clone, Debug, Default)]
pub struct Waker {
    pub limiter: Arc<Mutex<crate::wake::Limiter>>,
    pub server: crate::dial::Remote,
    /// When each machine was last woken, until it is up or given up on.
    woken: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Waker {
    pub fn new(server: crate::dial::Remote) -> Waker {
        Waker {
            server,
            ..Waker::default()
        }
    }

    fn woken_at(&self, name: &str) -> Option<Instant> {
        self.woken.lock().ok()?.get(name).copied()
    }

    fn remember(&self, name: &str, at: Instant) {
        if let Ok(mut w) = self.woken.lock() {
            w.insert(name.to_string(), at);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut w) = self.woken.lock() {
            w.remove(name);
        }
    }

    /// Sends the packet from here when attached, else asks the server;
    /// the interface it went out of (and by whom).
    pub async fn send(&self, m: &Machine) -> Result<String, String> {
        match crate::wake::send_machine(m).await {
            Ok(iface) => Ok(iface),
            Err(crate::wake::Error::NotAttached { .. }) => ask_server(&self.server, &m.name)
                .await
                .map_err(|e| format!("{} is on no link here, and {e}", m.name)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Asks `server` (a scanner on the machine's segment) to wake `name`.
/// Asks `server` (a scanner on the machine's segment) to wake `name`;
/// connecting and answering together within [`ASK_DEADLINE`].
pub async fn ask_server(server: &crate::dial::Remote, name: &str) -> Result<String, String> {
    let ask = async {
        let conn = crate::dial::connect(&server.addr, &server.creds)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", server.addr))?;
        let mut c = crate::proto::machine_db_client::MachineDbClient::new(conn);
        c.wake(crate::proto::WakeRequest {
            machine: name.to_string(),
        })
        .await
        .map_err(|s| format!("{}: {}", server.addr, s.message()))
    };
    let r = tokio::time::timeout(ASK_DEADLINE, ask)
        .await
        .map_err(|_| {
            format!(
                "{} did not answer within {}",
                server.addr,
                words(ASK_DEADLINE)
            )
        })??;
    Ok(format!("{} (by {})", r.into_inner().interface, server.addr))
}

/// `first`, or for a machine to wake that is not ready: woken now (within
/// the hourly bound) and told so, then given `wake_timeout` to come up, in
/// which it is checked again on each retry without another packet; past it,
/// "woken, not up after …". Nothing here waits: a sleeping machine holds no
/// check slot, and the runner's retries find it once it is up.
pub async fn wake_if_asleep(
    m: &Machine,
    reach: &Reach,
    login: &SshLogin,
    waker: &Waker,
    first: Checked,
) -> Checked {
    let now = Instant::now();
    let Err(NotReady::Check(why)) = &first.ready else {
        if first.ready.is_ok() {
            waker.forget(&m.name);
        }
        return first;
    };
    if !m.wake || reach.away {
        return first;
    }
    let not_ready = |reason: String| Checked {
        ready: Err(NotReady::Check(reason)),
        first_key: None,
    };
    if let Some(at) = waker.woken_at(&m.name) {
        let waited = now.duration_since(at);
        if waited < login.wake_timeout {
            return not_ready(format!(
                "woken, waiting up to {} for it to come up",
                words(login.wake_timeout)
            ));
        }
        waker.forget(&m.name);
        return not_ready(format!("woken, not up after {}", words(login.wake_timeout)));
    }
    let allowed = waker
        .limiter
        .lock()
        .map_err(|_| "the wake limiter is poisoned".to_string())
        .and_then(|mut l| l.allow(&m.name, now).map_err(|e| e.to_string()));
    if let Err(e) = allowed {
        return not_ready(format!("{why}; {e}"));
    }
    match waker.send(m).await {
        Ok(iface) => {
            waker.remember(&m.name, now);
            tracing::info!(machine = %m.name, via = %iface, "woken: {why}");
            not_ready(format!(
                "woken, waiting up to {} for it to come up",
                words(login.wake_timeout)
            ))
        }
        Err(e) => not_ready(format!("{why}; waking it failed: {e}")),
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
