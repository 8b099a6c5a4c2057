//! Reading the key a host offers, the way `ssh-keyscan` does: the version
//! exchange, KEXINIT, and one key-exchange request, whose reply carries the
//! host key. The exchange is never finished, so nothing is authenticated
//! here. Every read is bounded in size and time.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{algorithms_of, BadKey, HostKey, Reader};

/// The longest SSH identification line (RFC 4253: 255 with CR LF).
const MAX_LINE: usize = 255;
/// The longest banner kept: the line without its CR LF.
pub const MAX_BANNER: usize = 253;
/// Lines a server may send before its identification.
const MAX_PRELUDE_LINES: usize = 8;
/// The largest packet read (RFC 4253 asks every side to take 35,000).
const MAX_PACKET: usize = 35_000;
/// Packets read while waiting for the reply (ignore and debug messages).
const MAX_PACKETS: usize = 16;

/// Why a scan got no key.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an SSH server: {0}")]
    NotSsh(&'static str),
    #[error("the server offers none of the host key types {0}")]
    NoCommonKey(String),
    #[error("the server ended the exchange")]
    Closed,
    #[error("the server's host key {0}")]
    BadKey(#[from] BadKey),
}

/// What a scan found: the server's identification line and its key.
#[derive(Clone, Debug)]
pub struct Scanned {
    /// The identification line, cleaned (`SSH-2.0-OpenSSH_9.2p1 …`).
    pub banner: String,
    pub key: HostKey,
}

/// Asks the SSH server at `addr` for its host key of one of the types of
/// `want` (host key algorithms, preferred first; empty: any), within
/// `timeout` for the whole exchange.
pub async fn scan(
    addr: SocketAddr,
    want: &[&str],
    timeout: Duration,
) -> Result<Scanned, ScanError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ScanError::Timeout(timeout))??;
    let o = offer(&mut stream, want, deadline).await;
    Ok(Scanned {
        key: o.key?,
        banner: o.banner,
    })
}

/// What a server said on a connection: its identification line (empty
/// when it sent none) and its host key, or why there is none.
#[derive(Debug)]
pub struct Offer {
    pub banner: String,
    pub key: Result<HostKey, ScanError>,
}

/// Reads the banner and the host key (of the types `want`, empty: any)
/// on a connection whose server has not been read from yet, both by
/// `deadline`: a server that sends its banner and no more keeps its banner.
pub async fn offer(stream: &mut TcpStream, want: &[&str], deadline: tokio::time::Instant) -> Offer {
    let late =
        || ScanError::Timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
    let mut rd = Incoming::default();
    let sent =
        tokio::time::timeout_at(deadline, stream.write_all(b"SSH-2.0-mdb_keyscan\r\n")).await;
    let banner = match tokio::time::timeout_at(deadline, rd.identification(stream)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return Offer {
                banner: String::new(),
                key: Err(e),
            }
        }
        Err(_) => {
            return Offer {
                banner: String::new(),
                key: Err(late()),
            }
        }
    };
    let key = match sent {
        Ok(Ok(())) if banner.starts_with("SSH-2.0-") || banner.starts_with("SSH-1.99-") => {
            tokio::time::timeout_at(deadline, key_exchange(stream, &mut rd, want))
                .await
                .unwrap_or_else(|_| Err(late()))
        }
        Ok(Ok(())) => Err(ScanError::NotSsh("not SSH 2")),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(late()),
    };
    Offer { banner, key }
}

async fn key_exchange(
    stream: &mut TcpStream,
    rd: &mut Incoming,
    want: &[&str],
) -> Result<HostKey, ScanError> {
    let want: Vec<&str> = if want.is_empty() {
        ALL_ALGORITHMS.to_vec()
    } else {
        want.to_vec()
    };
    let theirs = rd.packet(stream).await?;
    let offered = ServerKexInit::read(&theirs).ok_or(ScanError::NotSsh("a bad KEXINIT"))?;
    let kex = KEX
        .iter()
        .find(|k| offered.kex.iter().any(|o| o == k.name))
        .ok_or(ScanError::NotSsh("no key exchange method in common"))?;
    if !want.iter().any(|w| offered.host_key.iter().any(|o| o == w)) {
        return Err(ScanError::NoCommonKey(want.join(",")));
    }
    stream.write_all(&packet(&kexinit(&want))).await?;
    stream.write_all(&packet(&(kex.init)())).await?;
    for _ in 0..MAX_PACKETS {
        let p = rd.packet(stream).await?;
        match p.first() {
            // KEXDH_REPLY and KEX_ECDH_REPLY share the number.
            Some(31) => {
                let blob = Reader(&p[1..])
                    .string()
                    .ok_or(ScanError::NotSsh("a bad reply"))?;
                let key = HostKey::from_blob(blob)?;
                if !want.iter().any(|w| algorithms_of(key.kind).contains(w)) {
                    return Err(ScanError::BadKey(BadKey::Mismatch));
                }
                return Ok(key);
            }
            Some(1) => return Err(ScanError::Closed),
            // Ignore, debug, unimplemented, a guessed packet: skipped.
            _ => continue,
        }
    }
    Err(ScanError::NotSsh("no key exchange reply"))
}

/// Every host key algorithm asked for when any key will do, preferred first.
pub const ALL_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// A key exchange method and its first message. The client's value only
/// has to be one the server accepts: the exchange is never finished.
struct Kex {
    name: &'static str,
    init: fn() -> Vec<u8>,
}

const KEX: &[Kex] = &[
    Kex {
        name: "curve25519-sha256",
        init: curve25519_init,
    },
    Kex {
        name: "curve25519-sha256@libssh.org",
        init: curve25519_init,
    },
    Kex {
        name: "ecdh-sha2-nistp256",
        init: p256_init,
    },
    Kex {
        name: "diffie-hellman-group14-sha256",
        init: dh_init,
    },
    Kex {
        name: "diffie-hellman-group14-sha1",
        init: dh_init,
    },
];

/// KEX_ECDH_INIT with a random X25519 public value (any 32 bytes are one).
fn curve25519_init() -> Vec<u8> {
    let mut m = vec![30];
    put_string(&mut m, &rand::random::<[u8; 32]>());
    m
}

/// KEX_ECDH_INIT with the generator of P-256, a point on the curve.
fn p256_init() -> Vec<u8> {
    const G: [u8; 65] = [
        0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4,
        0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8,
        0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a,
        0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40,
        0x68, 0x37, 0xbf, 0x51, 0xf5,
    ];
    let mut m = vec![30];
    put_string(&mut m, &G);
    m
}

/// KEXDH_INIT with a random e of 2,039 bits: below the group's p (2,048
/// bits, its top bits set), and with enough bits set for OpenSSH's check.
fn dh_init() -> Vec<u8> {
    let mut e = [0u8; 255];
    rand::fill(&mut e[..]);
    e[0] &= 0x7f;
    e[0] |= 0x40;
    let mut m = vec![30];
    put_string(&mut m, &e);
    m
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Our KEXINIT: the key exchange methods above, the host key algorithms
/// wanted, and ordinary ciphers (never used).
fn kexinit(host_key: &[&str]) -> Vec<u8> {
    let mut m = vec![20];
    m.extend_from_slice(&rand::random::<[u8; 16]>());
    let kex: Vec<&str> = KEX.iter().map(|k| k.name).collect();
    let ciphers = "aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com";
    let macs = "hmac-sha2-256,hmac-sha2-512,hmac-sha1,hmac-sha2-256-etm@openssh.com";
    let lists = [
        kex.join(","),
        host_key.join(","),
        ciphers.into(),
        ciphers.into(),
        macs.into(),
        macs.into(),
        "none".into(),
        "none".into(),
        String::new(),
        String::new(),
    ];
    for l in &lists {
        put_string(&mut m, l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&[0, 0, 0, 0]);
    m
}

/// A binary packet before keys are in use: no MAC, padding to 8 bytes.
fn packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut p = Vec::with_capacity(payload.len() + pad + 5);
    p.extend_from_slice(&((payload.len() + pad + 1) as u32).to_be_bytes());
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0u8, pad));
    p
}

/// What the server offers in its KEXINIT.
struct ServerKexInit {
    kex: Vec<String>,
    host_key: Vec<String>,
}

impl ServerKexInit {
    fn read(p: &[u8]) -> Option<ServerKexInit> {
        if p.first() != Some(&20) || p.len() < 17 {
            return None;
        }
        let mut r = Reader(&p[17..]);
        let list = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .split(',')
                .take(64)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let kex = list(r.string()?);
        let host_key = list(r.string()?);
        Some(ServerKexInit { kex, host_key })
    }
}

/// Bytes read from the server and not used yet.
#[derive(Default)]
struct Incoming {
    buf: Vec<u8>,
}

impl Incoming {
    async fn fill(&mut self, stream: &mut TcpStream, want: usize) -> Result<(), ScanError> {
        let mut chunk = [0u8; 4096];
        while self.buf.len() < want {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ScanError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// The server's `SSH-` line (lines before it are skipped, bounded).
    async fn identification(&mut self, stream: &mut TcpStream) -> Result<String, ScanError> {
        for _ in 0..=MAX_PRELUDE_LINES {
            let end = loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    break i;
                }
                if self.buf.len() > MAX_LINE {
                    return Err(ScanError::NotSsh("a line too long"));
                }
                let have = self.buf.len();
                self.fill(stream, have + 1).await?;
            };
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if line.starts_with(b"SSH-") {
                // The device's own words: kept bounded, without controls.
                return Ok(crate::escape::clean_bytes(&line, MAX_BANNER));
            }
        }
        Err(ScanError::NotSsh("no identification"))
    }

    /// One packet's payload.
    async fn packet(&mut self, stream: &mut TcpStream) -> Result<Vec<u8>, ScanError> {
        self.fill(stream, 5).await?;
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let pad = self.buf[4] as usize;
        if !(5..=MAX_PACKET).contains(&len) || pad + 1 > len {
            return Err(ScanError::NotSsh("a bad packet length"));
        }
        self.fill(stream, 4 + len).await?;
        let packet: Vec<u8> = self.buf.drain(..4 + len).collect();
        Ok(packet[5..4 + len - pad].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostkey::tests::ED25519;

    #[test]
    fn packets_are_padded_to_eight_bytes_with_at_least_four() {
        for n in 0..40 {
            let p = packet(&vec![7u8; n]);
            assert_eq!(p.len() % 8, 0);
            let pad = p[4] as usize;
            assert!(pad >= 4);
            assert_eq!(
                u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
                p.len() - 4
            );
            assert_eq!(&p[5..5 + n], &vec![7u8; n][..]);
        }
    }

    /// A server that speaks SSH until its reply, with a key given.
    async fn fake_server(reply_key: Vec<u8>, host_key_algs: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"hello\r\nSSH-2.0-Fake_1.0\r\n").await.unwrap();
            let mut init = vec![20];
            init.extend_from_slice(&[0; 16]);
            for l in [
                "curve25519-sha256",
                host_key_algs,
                "x",
                "x",
                "x",
                "x",
                "none",
                "none",
                "",
                "",
            ] {
                put_string(&mut init, l.as_bytes());
            }
            init.extend_from_slice(&[0, 0, 0, 0, 0]);
            s.write_all(&packet(&init)).await.unwrap();
            let mut reply = vec![31];
            put_string(&mut reply, &reply_key);
            put_string(&mut reply, &[9; 32]);
            put_string(&mut reply, b"sig");
            s.write_all(&packet(&[2, 0, 0, 0, 0])).await.unwrap();
            s.write_all(&packet(&reply)).await.unwrap();
            let mut sink = vec![0u8; 4096];
            while s.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        addr
    }

    #[tokio::test]
    async fn a_scan_reads_the_key_of_the_reply_and_checks_its_type() {
        let key: HostKey = ED25519.parse().unwrap();
        let addr = fake_server(key.blob.clone(), "ssh-ed25519").await;
        let got = scan(addr, &[], Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.key, key);
        assert_eq!(got.banner, "SSH-2.0-Fake_1.0");
        // Asked for RSA only, of a server offering ed25519 only.
        let addr = fake_server(key.blob.clone(), "ssh-ed25519").await;
        let e = scan(addr, &["rsa-sha2-512"], Duration::from_secs(5)).await;
        assert!(matches!(e, Err(ScanError::NoCommonKey(_))), "{e:?}");
        // A reply whose key is not of the type negotiated.
        let addr = fake_server(key.blob.clone(), "ssh-ed25519,rsa-sha2-512").await;
        let e = scan(addr, &["rsa-sha2-512"], Duration::from_secs(5)).await;
        assert!(matches!(e, Err(ScanError::BadKey(_))), "{e:?}");
    }

    #[tokio::test]
    async fn a_real_sshd_offers_its_own_host_key_of_each_type() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sshd, port) = test_sshd::start(dir.path());
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let timeout = Duration::from_secs(5);
        for (kind, want) in [
            ("ed25519", &["ssh-ed25519"][..]),
            ("ecdsa", &["ecdsa-sha2-nistp256"]),
            ("rsa", &["rsa-sha2-512", "rsa-sha2-256"]),
        ] {
            let public = std::fs::read_to_string(dir.path().join(format!("{kind}.pub"))).unwrap();
            let expected: HostKey = public.parse().unwrap();
            let got = scan(addr, want, timeout).await.unwrap();
            assert_eq!(got.key, expected, "{kind}");
            assert!(got.banner.starts_with("SSH-2.0-OpenSSH"), "{}", got.banner);
        }
        let any = scan(addr, &[], timeout).await.unwrap();
        assert_eq!(any.key.kind(), "ssh-ed25519", "the preferred type first");
        let _ = sshd.kill();
        let _ = sshd.wait();
    }

    #[tokio::test]
    async fn a_silent_or_endless_server_is_a_bounded_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            // A line that never ends.
            let _ = s.write_all(&[b'x'; 4096]).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let e = scan(addr, &[], Duration::from_secs(5)).await;
        assert!(matches!(e, Err(ScanError::NotSsh(_))), "{e:?}");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let e = scan(addr, &[], Duration::from_millis(300)).await;
        assert!(matches!(e, Err(ScanError::Timeout(_))), "{e:?}");
    }
}

/// A real sshd for the tests of the code that dials one.
#[cfg(test)]
pub(crate) mod test_sshd {
    use std::time::Duration;

    /// Debian's sshd on a loopback port, with host keys of three types in
    /// `dir` (`ed25519`, `ecdsa`, `rsa` and their `.pub`), accepting the
    /// keys in `dir/authorized_keys`.
    pub fn start(dir: &std::path::Path) -> (std::process::Child, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args = vec![
            "-D".to_string(),
            "-e".into(),
            "-f".into(),
            "/dev/null".into(),
        ];
        for (kind, bits) in [("ed25519", "256"), ("ecdsa", "256"), ("rsa", "2048")] {
            let key = dir.join(kind);
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-b", bits, "-N", "", "-f"])
                .arg(&key)
                .status()
                .expect("ssh-keygen (.ci/run installs openssh)");
            assert!(ok.success());
            args.extend(["-o".into(), format!("HostKey={}", key.display())]);
        }
        args.extend(
            [
                format!("ListenAddress=127.0.0.1:{port}"),
                "PidFile=none".into(),
                "UsePAM=no".into(),
                "StrictModes=no".into(),
                format!(
                    "AuthorizedKeysFile={}",
                    dir.join("authorized_keys").display()
                ),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_string(), o]),
        );
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = std::process::Command::new("/usr/sbin/sshd")
            .args(&args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd (.ci/run installs openssh-server)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, port)
    }
}
