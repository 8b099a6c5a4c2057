//! `[[notify]]` of the service configuration: where news goes.
//!
//! ```toml
//! [[notify]]
//! name = "hooks"                      # metric label and ledger name
//! kind = "webhook"                    # or "ntfy"
//! url = "https://hooks.example/mdb"
//! secret_file = "/run/secrets/hook"   # webhook: HMAC-SHA256 key (or secret_env = "VAR")
//! events = ["new_device", "conflict", "machine_missing", "machine_back"]
//! min_gap = "1s"                      # between two messages of this sink
//!
//! [[notify]]
//! kind = "mqtt"                       # Home Assistant
//! url = "mqtts://broker.lab:8883"     # mqtt:// in the clear, port 1883
//! ca_file = "/etc/mdb/broker-ca.pem"  # else the system's roots
//! username = "mdb"
//! secret_file = "/run/secrets/mqtt"   # the password
//! ```

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;

use super::{EventKind, EVENT_KINDS};
use crate::{
    secret::Secret,
    settings::{duration, Env, Error},
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Option<String>,
    pub kind: String,
    pub url: String,
    /// MQTT: the broker's user name.
    pub username: Option<String>,
    /// MQTT: Home Assistant's discovery prefix (default `homeassistant`).
    pub discovery_prefix: Option<String>,
    /// MQTT: the prefix of mdb's own topics (default `mdb`).
    pub topic_prefix: Option<String>,
    /// Webhook: the HMAC key; ntfy: an access token; MQTT: the password.
    pub secret_file: Option<PathBuf>,
    /// The environment variable holding that secret.
    pub secret_env: Option<String>,
    /// https:// and mqtts://: the PEM of the CA that signed the server's
    /// certificate (a lab's own CA); the system's roots without it.
    pub ca_file: Option<PathBuf>,
    pub events: Option<Vec<String>>,
    pub min_gap: Option<String>,
    /// ntfy: a priority (min, low, default, high, urgent) per event.
    #[serde(default)]
    pub priority: std::collections::BTreeMap<String, String>,
    /// Send an ntfy token or an MQTT password over http:// or mqtt:// to a
    /// host other than loopback (anyone on the path reads it).
    #[serde(default)]
    pub allow_plaintext: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub sinks: Vec<Sink>,
    /// What each sink was told (next to the history); memory only without.
    pub ledger: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub url: String,
    /// https:// and mqtts://: the server's certificate is checked against
    /// these roots (`ca_file`, else the system's) before anything is sent.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub events: Vec<EventKind>,
    pub min_gap: Duration,
}

#[derive(Clone, Debug)]
pub enum SinkKind {
    Webhook {
        secret: Option<Secret>,
    },
    Ntfy {
        token: Option<Secret>,
        priorities: Priorities,
    },
    Mqtt(super::mqtt::Broker),
}

/// ntfy priorities per event; high for what needs a person.
#[derive(Clone, Debug)]
pub struct Priorities(Vec<(EventKind, &'static str)>);

pub const PRIORITIES: &[&str] = &["min", "low", "default", "high", "urgent"];

impl Priorities {
    fn defaults() -> Priorities {
        Priorities(vec![
            (EventKind::NewDevice, "high"),
            (EventKind::Conflict, "urgent"),
            (EventKind::MachineMissing, "high"),
            (EventKind::MachineBack, "default"),
            (EventKind::PullOpened, "default"),
            (EventKind::PullMerged, "low"),
            (EventKind::ProvisionFailed, "high"),
            (EventKind::ProvisionRecovered, "default"),
        ])
    }

    pub fn of(&self, kind: EventKind) -> &'static str {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("default", |(_, p)| p)
    }
}

pub const DEFAULT_MIN_GAP: Duration = Duration::from_secs(1);

/// Every `[[notify]]` checked; `state_dir` keeps the ledger.
pub fn resolve(
    raw: &[RawSink],
    env: &Env,
    state_dir: Option<&std::path::Path>,
) -> Result<Option<Config>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut sinks: Vec<Sink> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let sink = sink(i, r, env)?;
        if sinks.iter().any(|s| s.name == sink.name) {
            return Err(Error(format!(
                "notify[{i}].name: {:?} is used twice",
                sink.name
            )));
        }
        sinks.push(sink);
    }
    Ok(Some(Config {
        sinks,
        ledger: state_dir.map(|d| d.join("notify.told")),
    }))
}

fn sink(i: usize, r: &RawSink, env: &Env) -> Result<Sink, Error> {
    let at = |field: &str, why: String| Error(format!("notify[{i}].{field}: {why}"));
    let name = r.name.clone().unwrap_or_else(|| r.kind.clone());
    if name.len() > 32 || !is_word(&name) {
        return Err(at(
            "name",
            format!("{name:?} must be 1 to 32 letters, digits, - or _"),
        ));
    }
    let url: http::Uri = r
        .url
        .parse()
        .map_err(|_| at("url", format!("{:?} is not a URL", r.url)))?;
    let mqtt = r.kind == "mqtt";
    let scheme_ok = match url.scheme_str() {
        Some("http" | "https") => !mqtt,
        Some("mqtt" | "mqtts") => mqtt,
        _ => false,
    };
    if !scheme_ok || url.host().is_none() {
        let want = if mqtt {
            "an mqtt:// or mqtts://HOST:PORT"
        } else {
            "an http:// or https://"
        };
        return Err(at("url", format!("{:?} must be {want} URL", r.url)));
    }
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(at(
            "url",
            "credentials go in secret_file or secret_env, never in the URL".into(),
        ));
    }
    let secret = match (&r.secret_file, &r.secret_env) {
        (Some(p), _) => Some(Secret::from_file(p).map_err(|e| at("secret_file", e.to_string()))?),
        (None, Some(var)) => Some(Secret::new(
            env.get(var)
                .ok_or_else(|| at("secret_env", format!("{var} is not set")))?
                .as_str(),
        )),
        (None, None) => None,
    };
    let events = match &r.events {
        None => EVENT_KINDS.iter().map(|(_, k)| *k).collect(),
        Some(words) => words
            .iter()
            .map(|w| {
                EVENT_KINDS
                    .iter()
                    .find(|(x, _)| x == w)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| at("events", format!("{w:?} is not one of {}", words_of())))
            })
            .collect::<Result<_, _>>()?,
    };
    let tls = match url.scheme_str() {
        Some("https" | "mqtts") => {
            let roots = crate::dial::rustls_client(r.ca_file.as_deref());
            Some(roots.map_err(|e| at("ca_file", e.to_string()))?)
        }
        _ if r.ca_file.is_some() => {
            return Err(at(
                "ca_file",
                "is for an https:// or mqtts:// URL only".into(),
            ))
        }
        _ => None,
    };
    let sends_secret = matches!(r.kind.as_str(), "ntfy" | "mqtt") && secret.is_some();
    if sends_secret && tls.is_none() && !r.allow_plaintext && !is_loopback(&url) {
        let what = if mqtt { "password" } else { "token" };
        return Err(at(
            "url",
            format!("{:?} would carry the {what} in the clear to another host: use https:// or mqtts://, or set allow_plaintext = true", r.url),
        ));
    }
    let kind = match r.kind.as_str() {
        "webhook" => SinkKind::Webhook { secret },
        "ntfy" => SinkKind::Ntfy {
            token: secret,
            priorities: priorities(&r.priority).map_err(|w| at("priority", w))?,
        },
        "mqtt" => SinkKind::Mqtt(super::mqtt::Broker {
            host: url.host().unwrap_or_default().to_string(),
            port: url
                .port_u16()
                .unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
            username: r.username.clone(),
            password: secret,
            discovery_prefix: topic_part(
                i,
                "discovery_prefix",
                &r.discovery_prefix,
                "homeassistant",
            )?,
            topic_prefix: topic_part(i, "topic_prefix", &r.topic_prefix, "mdb")?,
        }),
        other => {
            return Err(at(
                "kind",
                format!("{other:?} is not webhook, ntfy or mqtt"),
            ))
        }
    };
    Ok(Sink {
        name,
        kind,
        url: r.url.clone(),
        tls,
        events,
        min_gap: duration(
            &format!("notify[{i}].min_gap"),
            r.min_gap.clone(),
            DEFAULT_MIN_GAP,
        )?,
    })
}

/// Whether a URL's host is this machine (nothing leaves it).
fn is_loopback(url: &http::Uri) -> bool {
    let host = url.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A topic prefix: parts of letters, digits, `-` and `_`, joined by `/`;
/// no wildcard.
fn topic_part(
    i: usize,
    field: &str,
    given: &Option<String>,
    default: &str,
) -> Result<String, Error> {
    let v = given.clone().unwrap_or_else(|| default.to_string());
    if v.len() <= 64 && v.split('/').all(is_word) {
        Ok(v)
    } else {
        Err(Error(format!(
            "notify[{i}].{field}: {v:?} must be parts of letters, digits, - and _, joined by /"
        )))
    }
}

/// One or more letters, digits, `-` and `_`: a sink's name, a topic part.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn words_of() -> String {
    EVENT_KINDS
        .iter()
        .map(|(w, _)| *w)
        .collect::<Vec<_>>()
        .join(", ")
}

fn priorities(given: &std::collections::BTreeMap<String, String>) -> Result<Priorities, String> {
    let mut out = Priorities::defaults();
    for (event, p) in given {
        let kind = EVENT_KINDS
            .iter()
            .find(|(w, _)| w == event)
            .map(|(_, k)| *k)
            .ok_or_else(|| format!("{event:?} is not one of {}", words_of()))?;
        let p = PRIORITIES
            .iter()
            .find(|x| **x == p.as_str())
            .ok_or_else(|| format!("{p:?} is not one of {}", PRIORITIES.join(", ")))?;
        out.0.retain(|(k, _)| *k != kind);
        out.0.push((kind, p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(toml_text: &str) -> Result<Option<Config>, Error> {
        #[derive(Deserialize)]
        struct F {
            notify: Vec<RawSink>,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        resolve(&f.notify, &Env::default(), None)
    }

    #[test]
    fn bad_sinks_name_their_setting_and_credentials_stay_out_of_urls() {
        let e = |t: &str| one(t).unwrap_err().to_string();
        assert!(
            e("[[notify]]\nkind = \"email\"\nurl = \"https://x\"\n").starts_with("notify[0].kind:")
        );
        assert!(
            e("[[notify]]\nkind = \"ntfy\"\nurl = \"ftp://x/t\"\n").starts_with("notify[0].url:")
        );
        let creds = e("[[notify]]\nkind = \"webhook\"\nurl = \"https://u:pw@x/h\"\n");
        assert!(
            creds.starts_with("notify[0].url:") && !creds.contains("pw"),
            "{creds}"
        );
        assert!(
            e("[[notify]]\nkind = \"ntfy\"\nurl = \"https://x/t\"\nevents = [\"reboot\"]\n")
                .starts_with("notify[0].events:")
        );
        assert!(e("[[notify]]\nkind = \"ntfy\"\nurl = \"https://x/t\"\npriority = { conflict = \"loud\" }\n").starts_with("notify[0].priority:"));
        assert!(e("[[notify]]\nkind = \"ntfy\"\nurl = \"https://x/a\"\n[[notify]]\nkind = \"ntfy\"\nurl = \"https://x/b\"\n").contains("used twice"));
        let ok = one("[[notify]]\nkind = \"ntfy\"\nurl = \"https://x/t\"\n")
            .unwrap()
            .unwrap();
        let SinkKind::Ntfy { priorities, .. } = &ok.sinks[0].kind else {
            panic!()
        };
        assert_eq!(priorities.of(EventKind::Conflict), "urgent");
        assert_eq!(ok.sinks[0].events.len(), EVENT_KINDS.len());
    }

    #[test]
    fn a_token_or_password_in_the_clear_to_another_host_needs_allow_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let sink = |kind: &str, url: &str, extra: &str| {
            format!(
                "[[notify]]\nkind = \"{kind}\"\nurl = \"{url}\"\nsecret_file = \"{}\"\n{extra}",
                secret.display()
            )
        };
        for (kind, url) in [("ntfy", "http://ntfy.lab/t"), ("mqtt", "mqtt://broker.lab")] {
            let e = one(&sink(kind, url, "")).unwrap_err().to_string();
            assert!(
                e.starts_with("notify[0].url:")
                    && e.contains("allow_plaintext")
                    && !e.contains("s3cret"),
                "{e}"
            );
            assert!(one(&sink(kind, url, "allow_plaintext = true\n")).is_ok());
        }
        // Loopback, TLS, and a webhook (its key signs, it is never sent).
        for (kind, url) in [
            ("ntfy", "http://127.0.0.1:8080/t"),
            ("mqtt", "mqtt://localhost"),
            ("ntfy", "https://ntfy.lab/t"),
            ("webhook", "http://hooks.lab/h"),
        ] {
            assert!(one(&sink(kind, url, "")).is_ok(), "{kind} {url}");
        }
    }

    #[test]
    fn mqtts_speaks_tls_on_8883_and_a_ca_file_needs_tls() {
        let e = |t: &str| one(t).unwrap_err().to_string();
        let plain = e("[[notify]]\nkind = \"mqtt\"\nurl = \"mqtt://b\"\nca_file = \"/x.pem\"\n");
        assert_eq!(
            plain,
            "notify[0].ca_file: is for an https:// or mqtts:// URL only"
        );
        let missing = e(
            "[[notify]]\nkind = \"mqtt\"\nurl = \"mqtts://b\"\nca_file = \"/nonexistent.pem\"\n",
        );
        assert!(
            missing.starts_with("notify[0].ca_file: CA file /nonexistent.pem: "),
            "{missing}"
        );
        let broker = |t: &str| {
            let sink = &one(t).unwrap().unwrap().sinks[0];
            match &sink.kind {
                SinkKind::Mqtt(b) => (b.port, sink.tls.is_some()),
                _ => panic!(),
            }
        };
        assert_eq!(
            broker("[[notify]]\nkind = \"mqtt\"\nurl = \"mqtt://b\"\n"),
            (1883, false)
        );
        if crate::dial::rustls_client(None).is_ok() {
            assert_eq!(
                broker("[[notify]]\nkind = \"mqtt\"\nurl = \"mqtts://b\"\n"),
                (8883, true)
            );
        }
    }
}
