//! The CLI over TLS: `mdb serve` behind a TLS-terminating proxy (rustls,
//! ALPN h2, a test CA made here), reached with `--server https://…`.

use crate::util;

use std::{path::Path, sync::Arc};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{rustls, TlsAcceptor};
use util::{pki::Pki, start_server, TestRepo};

/// A CA and a certificate for `localhost` signed by it; the CA's PEM is
/// written to `dir/ca.pem`.
fn test_pki(dir: &Path) -> rustls::ServerConfig {
    let pki = Pki::for_host("localhost");
    pki.write(dir);
    let mut cfg = pki.server_config();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg
}

/// Terminates TLS on a loopback port and pipes the bytes to `backend`,
/// as an Ingress controller does.
async fn tls_proxy(cfg: rustls::ServerConfig, backend: std::net::SocketAddr) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

async fn mdb(args: Vec<String>, envs: Vec<(&'static str, String)>) -> util::Run {
    tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(util::bin());
        c.args(&args).env_remove("MDB_CA_FILE").envs(envs);
        util::Run::of(c)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_server_behind_tls_with_a_ca_file() {
    let repo = TestRepo::with_demo();
    let server = start_server(&repo.url(), "1s", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = tls_proxy(test_pki(dir.path()), server.grpc).await;
    let url = format!("https://localhost:{port}");
    let ca = dir.path().join("ca.pem").display().to_string();

    let stats = mdb(
        vec![
            "stats".into(),
            "--server".into(),
            url.clone(),
            "--ca-file".into(),
            ca.clone(),
        ],
        vec![],
    )
    .await
    .ok()
    .stdout;
    assert!(stats.contains("machines    11"), "{stats}");
    // The CA file from the environment, as an inventory script would set it.
    let get = mdb(
        vec![
            "get".into(),
            "alpha-w-2".into(),
            "--server".into(),
            url.clone(),
            "--json".into(),
        ],
        vec![("MDB_CA_FILE", ca.clone())],
    )
    .await
    .json();
    assert_eq!(get["name"], "alpha-w-2");

    // Without the CA the system's roots don't know the test CA.
    let err = mdb(vec!["stats".into(), "--server".into(), url.clone()], vec![])
        .await
        .code(1);
    assert_eq!(
        err.stderr.trim(),
        format!(
            "mdb: cannot reach mdb at {url}: invalid peer certificate: UnknownIssuer \
             (is `mdb serve` running there? see --server or MDB_SERVER)"
        )
    );
    // Plaintext to a TLS port is refused, not silently spoken.
    let plain = format!("http://localhost:{port}");
    let err = mdb(vec!["stats".into(), "--server".into(), plain], vec![])
        .await
        .code(1);
    assert_eq!(err.stderr.trim().lines().count(), 1, "{}", err.stderr);
    let err = mdb(
        vec![
            "stats".into(),
            "--server".into(),
            format!("grpcs://localhost:{port}"),
        ],
        vec![],
    )
    .await
    .code(1);
    assert_eq!(
        err.stderr.trim(),
        format!(
            "mdb: \"grpcs://localhost:{port}\": unsupported scheme (use host:port, http:// or https://)"
        )
    );
    let missing = dir.path().join("absent.pem").display().to_string();
    let err = mdb(
        vec![
            "stats".into(),
            "--server".into(),
            url,
            "--ca-file".into(),
            missing.clone(),
        ],
        vec![],
    )
    .await;
    assert_eq!(
        err.stderr.trim(),
        format!("mdb: CA file {missing}: entity not found")
    );
    server.stop().await;
}
