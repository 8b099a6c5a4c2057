//! Delivering to one sink: its own queue, a gap between messages, retries
//! with backoff, a deadline on every request, and counters. A webhook gets
//! the event as JSON with `X-Mdb-Signature: sha256=HEX` (HMAC-SHA256 of
//! `X-Mdb-Timestamp.body` under the sink's secret, so a receiver can refuse
//! a replay); ntfy gets the title as the message,
//! with a priority and tags per event.

use std::{sync::Arc, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use super::metrics::NotifyMetrics;
use super::{ledger::Ledger, settings::Sink, Event, SinkKind};

/// Events waiting per sink; more are dropped and counted.
pub const QUEUE: usize = 256;
/// Each request has this long, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per message before it is given up (and counted).
const TRIES: u32 = 5;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A client for the sink: https:// checks the server against the sink's
/// roots; plain http:// needs none.
fn client(sink: &Sink) -> Result<Client<Https, Full<Bytes>>, crate::dial::Error> {
    let tls = match &sink.tls {
        Some(tls) => tls.clone(),
        None => crate::dial::rustls_untrusting()?,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Delivers what arrives on `rx` to `sink` until cancelled.
pub async fn run(
    sink: Sink,
    mut rx: mpsc::Receiver<Event>,
    ledger: Arc<Ledger>,
    metrics: NotifyMetrics,
    shutdown: CancellationToken,
) {
    let client = match client(&sink) {
        Ok(c) => c,
        Err(e) => {
            warn!(sink = %sink.name, error = %e, "notifications off for this sink");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        if ledger.told(&sink.name, &event.key) {
            continue;
        }
        let done = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = deliver(&client, &sink, &event, &metrics) => d,
        };
        if done {
            ledger.mark(&sink.name, &event.key);
            metrics.sent(&sink.name);
            info!(sink = %sink.name, event = event.kind.word(), key = %event.key, "notified");
        } else {
            metrics.dropped(&sink.name);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sink.min_gap) => {}
        }
    }
}

/// Tries one message up to [`TRIES`] times; true once delivered.
async fn deliver(
    client: &Client<Https, Full<Bytes>>,
    sink: &Sink,
    event: &Event,
    metrics: &NotifyMetrics,
) -> bool {
    let mut wait = RETRY_MIN;
    for attempt in 1..=TRIES {
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, send(client, sink, event)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        };
        match outcome {
            Ok(()) => return true,
            Err(why) => {
                metrics.failed(&sink.name);
                warn!(sink = %sink.name, attempt, error = %why, "notification not delivered");
            }
        }
        if attempt < TRIES {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }
    false
}

async fn send(
    client: &Client<Https, Full<Bytes>>,
    sink: &Sink,
    event: &Event,
) -> Result<(), String> {
    let req = request(sink, event).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // The answer is read (bounded) only to free the connection.
    let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
        .collect()
        .await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The JSON a webhook receives.
pub fn json_of(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "event": event.kind.word(),
        "key": event.key,
        "title": event.title,
        "at_unix": event.at_unix,
        "ip": event.ip,
        "mac": event.mac,
        "machine": event.machine,
    })
}

fn request(sink: &Sink, event: &Event) -> Result<hyper::Request<Full<Bytes>>, http::Error> {
    let b = hyper::Request::post(sink.url.as_str())
        .header("user-agent", concat!("mdb/", env!("CARGO_PKG_VERSION")));
    match &sink.kind {
        SinkKind::Webhook { secret } => {
            let body = json_of(event).to_string();
            let now = crate::db::store::now_unix().to_string();
            let mut b = b
                .header("content-type", "application/json")
                .header("x-mdb-timestamp", &now);
            if let Some(s) = secret {
                // Over the timestamp too: a captured message replayed later
                // carries an old timestamp, which a receiver refuses.
                let signed = format!("{now}.{body}");
                b = b.header(
                    "x-mdb-signature",
                    format!("sha256={}", sign(s.expose().as_bytes(), signed.as_bytes())),
                );
            }
            b.header("x-mdb-event", event.kind.word())
                .body(Full::new(Bytes::from(body)))
        }
        SinkKind::Mqtt(_) => unreachable!("MQTT sinks publish state, not requests"),
        SinkKind::Ntfy { token, priorities } => {
            let mut b = b
                .header("content-type", "text/plain; charset=utf-8")
                // Headers carry ASCII only: the title goes in the body.
                .header("x-title", format!("mdb: {}", event.kind.word()))
                .header("x-priority", priorities.of(event.kind))
                .header("x-tags", event.kind.word());
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {}", t.expose()));
            }
            b.body(Full::new(Bytes::from(event.title.clone())))
        }
    }
}

/// HMAC-SHA256 of `body` under `key`, in lower-case hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
