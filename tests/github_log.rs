//! The filer's logs, alone in their own test binary: tracing caches per
//! log site whether anyone listens, process-wide, so a test that listens on
//! its own thread (`set_default`) must not share the process with tests
//! that hit the same sites without a subscriber (it missed every line once
//! in twelve runs with four test threads).

mod util;

use std::sync::{Arc, Mutex};

use mdb::{github::Filer, proto::HostState, serve::metrics::Metrics};
use util::{
    fake_github::{Fault, TOKEN},
    filer_bench::{config, demo, fake, host, sweep},
};

const NEW_MAC: &str = "dc:a6:32:77:00:01";

/// Logs of a failing reconcile name the problem, never the token.
#[tokio::test]
async fn token_never_appears_in_logs() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gh = fake().await;
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 500,
        headers: vec![],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("POST"),
        status: 429,
        headers: vec![("retry-after", "1".into())],
        apply: false,
    });
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    f.reconcile(
        &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
        &demo(""),
    )
    .await
    .expect("reconcile");
    let log = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        log.contains("GitHub server error"),
        "the failure is logged:\n{log}"
    );
    assert!(log.contains("GitHub rate limit"), "{log}");
    assert!(!log.contains(TOKEN), "token leaked:\n{log}");
    assert!(!format!("{:?}", config(&gh)).contains(TOKEN));
}
