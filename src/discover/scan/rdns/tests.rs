use super::*;

#[test]
fn name_servers_and_hosts_are_read_as_the_c_library_reads_them() {
    let conf = "# comment\nsearch lan\nnameserver 198.18.0.53\nnameserver 2001:db8::53\n\
                nameserver fe80::1%eth0\nnameserver bogus\nnameserver 198.18.0.54\n\
                nameserver 198.18.0.55\n";
    let s = servers(conf);
    assert_eq!(
        s,
        [
            "198.18.0.53:53".parse().unwrap(),
            "[2001:db8::53]:53".parse().unwrap(),
            "198.18.0.54:53".parse().unwrap(),
        ],
        "three at most, scoped and malformed ones skipped"
    );
    assert_eq!(servers("search lan\n"), ["127.0.0.1:53".parse().unwrap()]);

    let h = hosts(
        "127.0.0.1 localhost\n198.18.0.5 printer printer.lan # the hall\n\
                   198.18.0.5 second\n# 198.18.0.6 commented\n198.18.0.7\nnot-an-ip name\n",
    );
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[&"198.18.0.5".parse::<IpAddr>().unwrap()], "printer");
}

#[test]
fn reverse_names_of_both_families() {
    assert_eq!(
        reverse_name("198.18.0.5".parse().unwrap()),
        "5.0.18.198.in-addr.arpa"
    );
    assert_eq!(
        reverse_name("2001:db8::567:89ab".parse().unwrap()),
        "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    );
}

/// A response to `q` (a query this module wrote) with `rcode` and the
/// answer records `(owner, type, rdata name)`, names written plain.
pub(super) fn response(q: &[u8], rcode: u8, answers: &[(&str, u16, &str)]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] = (r[3] & 0xf0) | rcode;
    r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for (owner, kind, target) in answers {
        push_name(&mut r, owner);
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 60]);
        let mut data = Vec::new();
        push_name(&mut data, target);
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
}

#[test]
fn only_the_answer_to_the_question_asked_is_read() {
    let qname = reverse_name("198.18.0.5".parse().unwrap());
    let q = query(0x1234, &qname);
    let ok = response(&q, 0, &[(&qname, TYPE_PTR, "printer.lan")]);
    assert_eq!(
        read_response(&ok, 0x1234, &qname),
        Some(Said::Answer(Some("printer.lan".into())))
    );
    assert_eq!(read_response(&ok, 0x1235, &qname), None, "another id");
    assert_eq!(
        read_response(&q, 0x1234, &qname),
        None,
        "a query, not a response"
    );
    let other = reverse_name("198.18.0.6".parse().unwrap());
    assert_eq!(read_response(&ok, 0x1234, &other), None, "another question");
    // A record for another name is not this host's.
    let stray = response(&q, 0, &[("6.0.18.198.in-addr.arpa", TYPE_PTR, "x")]);
    assert_eq!(
        read_response(&stray, 0x1234, &qname),
        Some(Said::Answer(None))
    );
    // A classless delegation is followed forwards.
    let cname = "5.0/25.0.18.198.in-addr.arpa";
    let delegated = response(&q, 0, &[(&qname, 5, cname), (cname, TYPE_PTR, "hall.lan")]);
    assert_eq!(
        read_response(&delegated, 0x1234, &qname),
        Some(Said::Answer(Some("hall.lan".into())))
    );
    let nx = response(&q, 3, &[]);
    assert_eq!(read_response(&nx, 0x1234, &qname), Some(Said::Answer(None)));
    let servfail = response(&q, 2, &[]);
    assert_eq!(read_response(&servfail, 0x1234, &qname), Some(Said::Failed));
    // Cut short anywhere: not an answer, and no panic.
    for cut in 0..ok.len() {
        assert_eq!(read_response(&ok[..cut], 0x1234, &qname), None, "{cut}");
    }
    // Truncated: the next server is asked.
    let mut truncated = ok.clone();
    truncated[2] |= 0x02;
    assert_eq!(
        read_response(&truncated, 0x1234, &qname),
        Some(Said::Failed)
    );
    // A compression pointer to itself is refused, not followed.
    let mut looped = ok.clone();
    let at = q.len();
    looped.truncate(at);
    looped.extend_from_slice(&[0xc0, at as u8]);
    looped.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, at as u8]);
    assert_eq!(read_response(&looped, 0x1234, &qname), None);
    // So is one pointing forwards.
    let mut forwards = looped.clone();
    let end = forwards.len() as u8;
    forwards[at + 1] = end;
    assert_eq!(read_response(&forwards, 0x1234, &qname), None);
}

/// What the fake name server does with a query.
#[derive(Clone, Copy)]
enum Does {
    Name(&'static str),
    NoSuchName,
    Nothing,
}

/// A name server on loopback: does `does(qname)` with each query; a name
/// comes after an impostor's answer with another id.
async fn server(does: fn(&str) -> Does) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let q = &buf[..n];
            let (qname, _) = name_at(q, 12).unwrap();
            let answer = match does(&qname) {
                Does::Nothing => continue,
                Does::NoSuchName => response(q, 3, &[]),
                Does::Name(name) => {
                    let mut forged = response(q, 0, &[(&qname, TYPE_PTR, "impostor.lan")]);
                    forged[0] ^= 0xff;
                    let _ = sock.send_to(&forged, from).await;
                    response(q, 0, &[(&qname, TYPE_PTR, name)])
                }
            };
            let _ = sock.send_to(&answer, from).await;
        }
    });
    addr
}

/// A loopback port nothing listens on: the kernel refuses at once.
fn refusing() -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.local_addr().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn names_come_from_the_hosts_file_then_the_first_server_that_answers() {
    let named = server(|q| match q.split('.').next() {
        Some("5") => Does::Name("printer.lan"),
        _ => Does::NoSuchName,
    })
    .await;
    // Connecting to the broadcast address is refused (no SO_BROADCAST):
    // that server is never made, and the next one keeps its place.
    let unusable = "255.255.255.255:53".parse().unwrap();
    let hosts = HashMap::from([(ip("198.18.0.9"), "from-hosts".to_string())]);
    let dns = ReverseDns::with(vec![refusing(), unusable, named], hosts);
    let start = Instant::now();
    let a = dns.name(ip("198.18.0.5")).await;
    assert_eq!(
        a.as_deref(),
        Some("printer.lan"),
        "the impostor's id is not read"
    );
    assert!(
        start.elapsed() < TRY_WAIT / 2,
        "the refusal costs no try: {:?}",
        start.elapsed()
    );
    assert_eq!(
        dns.name(ip("198.18.0.9")).await.as_deref(),
        Some("from-hosts")
    );
    let start = Instant::now();
    assert_eq!(dns.name(ip("198.18.0.6")).await, None, "no such name");
    assert!(
        start.elapsed() < TRY_WAIT / 2,
        "an answer, not a try run out"
    );
}

#[tokio::test]
async fn a_refusing_server_ends_every_lookup_at_once() {
    let dns = ReverseDns::with(vec![refusing()], HashMap::new());
    let start = Instant::now();
    let names = futures::future::join_all(
        (2..100).map(|i| dns.name(IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)))),
    )
    .await;
    assert!(names.iter().all(Option::is_none));
    assert!(start.elapsed() < TRY_WAIT, "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_silent_server_is_given_up_after_its_tries_and_a_lost_answer_is_asked_again() {
    let silent = server(|_| Does::Nothing).await;
    let dns = ReverseDns::with(vec![silent], HashMap::new());
    let start = Instant::now();
    let first = futures::future::join_all(
        (2..20).map(|i| dns.name(IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)))),
    )
    .await;
    assert!(first.iter().all(Option::is_none));
    let waited = start.elapsed();
    let tries = TRY_WAIT * SILENT_TRIES;
    assert!(waited >= tries && waited < tries + TRY_WAIT, "{waited:?}");
    // Given up for the rest of the sweep: the next lookup ends at once.
    let start = Instant::now();
    assert_eq!(dns.name(ip("198.18.0.30")).await, None);
    assert!(start.elapsed() < TRY_WAIT / 2, "{:?}", start.elapsed());

    // A server that drops one query (the first try of .7) answers the
    // second: one lost datagram is not a dead server.
    static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let lossy = server(|q| {
        if q.starts_with("7.") && !SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Does::Nothing
        } else {
            Does::Name("found.lan")
        }
    })
    .await;
    let dns = ReverseDns::with(vec![lossy], HashMap::new());
    assert_eq!(
        dns.name(ip("198.18.0.7")).await.as_deref(),
        Some("found.lan")
    );
    assert_eq!(
        dns.name(ip("198.18.0.8")).await.as_deref(),
        Some("found.lan")
    );
}
