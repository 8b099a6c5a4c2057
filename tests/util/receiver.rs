//! A tiny HTTP/1.1 receiver for webhook and ntfy tests: records every
//! request and when it came, and answers 200, or 503, or holds it
//! unanswered; in the clear or behind TLS.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio_rustls::rustls::{ServerConfig, ServerConnection, StreamOwned};

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

/// How the receiver answers each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    Ok,
    /// Never: the first request of a connection is held.
    Hang,
    /// 503, as a sink that is down behind its proxy.
    Refuse,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 receiver: records each request and answers 200, or
/// (`hang`) reads it and never answers.
pub fn receiver(listener: TcpListener, hang: bool) -> Arc<Mutex<Vec<Received>>> {
    serve(listener, if hang { Reply::Hang } else { Reply::Ok }, None)
}

/// A receiver that records each request and answers 503.
pub fn receiver_refusing(listener: TcpListener) -> Arc<Mutex<Vec<Received>>> {
    serve(listener, Reply::Refuse, None)
}

/// The same receiver behind TLS with `tls`'s certificate (always answers).
pub fn receiver_tls(listener: TcpListener, tls: ServerConfig) -> Arc<Mutex<Vec<Received>>> {
    serve(listener, Reply::Ok, Some(Arc::new(tls)))
}

fn serve(
    listener: TcpListener,
    reply: Reply,
    tls: Option<Arc<ServerConfig>>,
) -> Arc<Mutex<Vec<Received>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            match &tls {
                None => held.extend(conversation(stream, &keep, reply)),
                Some(cfg) => {
                    let Ok(conn) = ServerConnection::new(cfg.clone()) else {
                        continue;
                    };
                    conversation(StreamOwned::new(conn, stream), &keep, Reply::Ok);
                }
            }
        }
    });
    got
}

/// Reads the requests of one connection, recording each, and answers as
/// `reply` says; `Hang` returns the connection unanswered after its first
/// request, to be held open.
fn conversation<S: Read + Write>(stream: S, got: &Mutex<Vec<Received>>, reply: Reply) -> Option<S> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut len = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.trim_end().split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.to_string(), v.trim().to_string()));
            }
        }
        let mut body = vec![0; len.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return None;
        }
        got.lock().expect("lock").push(Received {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        let answer: &[u8] = match reply {
            Reply::Hang => return Some(reader.into_inner()),
            Reply::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Reply::Refuse => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown",
        };
        let s = reader.get_mut();
        let _ = s.write_all(answer);
        let _ = s.flush();
    }
}

pub fn events(got: &Arc<Mutex<Vec<Received>>>, what: &str) -> usize {
    got.lock()
        .expect("lock")
        .iter()
        .filter(|r| r.body.contains(what) || r.header("x-tags") == Some(what))
        .count()
}
