//! The page behind a login. `forward`: Debian's nginx in front, with
//! `auth_request` (its login is a form and a session cookie nginx itself
//! checks, as oauth2-proxy or Authelia would), sets the user header; a
//! real headless Chromium sees the page only after signing in, and the
//! page says who is signed in. The same header sent straight to mdb from
//! an address that is not the proxy's is refused. `basic`: a file of
//! bcrypt hashes, checked over HTTP; a file with a plain password is a bad
//! configuration.

use crate::util;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::process::{free_port, http_get_with, Reaped, ServeProcess};

const PASSWORD: &str = "correct-horse-battery";
const SESSION: &str = "session-8f14e45fceea167a5a36dedd4bea2543";

fn nginx_conf(dir: &std::path::Path, port: u16, mdb: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}/nginx-body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  map $cookie_lab_session $lab_user {{ "{SESSION}" "alice"; default ""; }}
  server {{
    listen 127.0.0.1:{port};
    location = /login {{
      default_type text/html;
      return 200 '<!doctype html><html lang="en"><title>Sign in</title><form method="get" action="/signin"><input name="user" id="user"><input name="password" id="password" type="password"><button id="go">Sign in</button></form></html>';
    }}
    location = /signin {{
      if ($arg_password != "{PASSWORD}") {{ return 302 /login?failed=1; }}
      add_header Set-Cookie "lab_session={SESSION}; Path=/; HttpOnly; SameSite=Strict";
      return 302 /;
    }}
    location = /_auth {{
      internal;
      if ($lab_user = "") {{ return 401; }}
      return 204;
    }}
    location @login {{ return 302 /login; }}
    location / {{
      auth_request /_auth;
      error_page 401 = @login;
      proxy_set_header Remote-User $lab_user;
      proxy_buffering off;
      proxy_pass http://{mdb};
    }}
  }}
}}
"#
    )
}

/// A GET of `path` on `to` from the loopback address `from`, with
/// `headers`: the status code.
async fn status_from(from: [u8; 4], to: SocketAddr, path: &str, headers: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    let mut c = socket.connect(to).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: mdb\r\n{headers}\r\n").as_bytes())
        .await
        .expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head))
        .await
        .expect("an answer in time")
        .expect("read");
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .expect("a status line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_page_needs_a_login_and_a_forged_header_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let repo = util::TestRepo::with_demo();
    let cfg = d.join("mdb.toml");
    std::fs::write(
        &cfg,
        "[server.web_auth]\nmode = \"forward\"\nheader = \"Remote-User\"\nproxies = [\"127.0.0.1/32\"]\n",
    )
    .expect("config");
    let mut s = ServeProcess::for_repo(d, &repo.url(), &["--config", cfg.to_str().expect("path")]);
    s.wait_ready().await;
    let port = free_port();
    std::fs::write(d.join("nginx.conf"), nginx_conf(d, port, s.metrics)).expect("nginx.conf");
    let _nginx = Reaped(
        Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d)
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (.ci/run installs nginx-light)"),
    );
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let up = tokio::task::spawn_blocking(move || {
        util::wait_for("nginx to listen", 20, || {
            std::net::TcpStream::connect(proxy).ok()
        })
    });
    up.await.expect("join");

    // Straight to mdb: no header, or a forged one from an address that is
    // not the proxy's, gets no page; the probes stay open.
    let forged = "Remote-User: admin\r\n";
    assert_eq!(
        status_from([127, 0, 0, 2], s.metrics, "/machines", "").await,
        401
    );
    assert_eq!(
        status_from([127, 0, 0, 2], s.metrics, "/machines", forged).await,
        401
    );
    assert_eq!(
        status_from([127, 0, 0, 2], s.metrics, "/events", forged).await,
        401
    );
    assert_eq!(
        status_from([127, 0, 0, 2], s.metrics, "/healthz", "").await,
        200
    );
    // From the proxy's address: one header is the user, two are refused
    // (a proxy that appended would leave the client's first).
    let one = "Remote-User: alice\r\n";
    let two = "Remote-User: admin\r\nRemote-User: alice\r\n";
    assert_eq!(
        status_from([127, 0, 0, 1], s.metrics, "/machines", one).await,
        200
    );
    assert_eq!(
        status_from([127, 0, 0, 1], s.metrics, "/machines", two).await,
        401
    );
    // Through nginx, a header the client sends is replaced by nginx's.
    assert_eq!(
        status_from([127, 0, 0, 2], proxy, "/machines", forged).await,
        302
    );
    let metrics = s.metrics_text().await;
    assert!(
        util::metric(&metrics, "mdb_http_unauthenticated_total{path=\"page\"}")
            .is_some_and(|n| n >= 3.0),
        "refusals are counted"
    );

    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut browser = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/web_login.py"
        ))
        .arg(format!("http://{proxy}"))
        .arg(PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python with selenium (.ci/run installs it)");
    let stdout = browser.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| println!("browser: {l}"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    let status = tokio::task::spawn_blocking(move || browser.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "browser checks failed: {lines:#?}");
    assert!(
        lines.iter().any(|l| l == "login checks passed"),
        "{lines:#?}"
    );
    assert!(
        !s.logs().contains(PASSWORD) && !s.logs().contains(SESSION),
        "a secret was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_takes_bcrypt_hashes_only_and_says_who_signed_in() {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let repo = util::TestRepo::with_demo();
    let hash = bcrypt::hash(PASSWORD, 6).expect("bcrypt");
    std::fs::write(d.join("htpasswd"), format!("alice:{hash}\n")).expect("htpasswd");
    let cfg = d.join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server.web_auth]\nmode = \"basic\"\nhtpasswd = \"{}\"\n",
            d.join("htpasswd").display()
        ),
    )
    .expect("config");
    let mut s = ServeProcess::for_repo(d, &repo.url(), &["--config", cfg.to_str().expect("path")]);
    s.wait_ready().await;
    let basic = |user: &str, password: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}")
    };
    let (code, _) = http_get_with(s.metrics, "/machines", &[]).await;
    assert_eq!(code, 401);
    for (user, password) in [("alice", "wrong"), ("mallory", PASSWORD), ("alice", "")] {
        let (code, _) = http_get_with(
            s.metrics,
            "/machines",
            &[("Authorization", &basic(user, password))],
        )
        .await;
        assert_eq!(code, 401, "{user}:{password}");
    }
    let (code, page) = http_get_with(
        s.metrics,
        "/machines",
        &[("Authorization", &basic("alice", PASSWORD))],
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        page.contains("alpha-cp-1") && page.contains("alice"),
        "{page}"
    );
    assert_eq!(http_get_with(s.metrics, "/healthz", &[]).await.0, 200);
    assert!(!s.logs().contains(PASSWORD));

    // A password file with a plain password is no configuration at all.
    std::fs::write(d.join("htpasswd"), format!("alice:{PASSWORD}\n")).expect("htpasswd");
    let out = util::mdb([
        "serve",
        "--config",
        cfg.to_str().expect("path"),
        "--db-url",
        &repo.url(),
        "--grpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.code, Some(64), "{out}");
    assert!(out.stderr.contains("only bcrypt hashes"), "{out}");
    assert!(!out.stderr.contains(PASSWORD), "{out}");
}
