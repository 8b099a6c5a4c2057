use super::{sender::*, *};

#[test]
fn the_finish_wait_follows_the_round_trips_within_its_bounds() {
    let ms = Duration::from_millis;
    assert_eq!(finish_wait(&[], Wait::Auto), GRACE, "nothing seen yet");
    assert_eq!(finish_wait(&[ms(1); 50], Wait::Auto), GRACE);
    // The 95th percentile, not the one slow outlier, sets the wait.
    let mut rtts = vec![ms(10); 99];
    rtts.push(ms(400));
    assert_eq!(finish_wait(&rtts, Wait::Auto), ms(40));
    assert_eq!(finish_wait(&[ms(200)], Wait::Auto), AUTO_CAP);
    // A given timeout is honoured as it is, short or long.
    assert_eq!(finish_wait(&rtts, Wait::Fixed(ms(1))), ms(1));
    assert_eq!(finish_wait(&[], Wait::Fixed(ms(900))), ms(900));
    assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 95), ms(3));
    assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 1), ms(1));
}

#[test]
fn a_lossy_pass_earns_another_up_to_the_limit() {
    let mut book = Book::new(3);
    let mut s = Sender::new(Passes::Fixed(2), Instant::now(), 3);
    // Pretend each retry pass finds something: loss.
    let order = drive(&mut s, &mut book, 3, &[], |s, _, _| {
        if s.pass > 0 {
            s.found_this_pass = 1;
        }
    });
    assert_eq!(order.len(), 3 * MAX_TRIES as usize, "{order:?}");
    assert!(s.done);
}

/// Every address `s` asks until it is done, `on_ask` told of each
/// (it may answer it).
fn drive(
    s: &mut Sender,
    book: &mut Book,
    len: usize,
    expected: &[usize],
    mut on_ask: impl FnMut(&mut Sender, &mut Book, usize),
) -> Vec<usize> {
    let mut order = Vec::new();
    for _ in 0..100 * len {
        match s.next_index(book, len, expected) {
            Some(i) => {
                if s.pass == 0 {
                    book.ask(i);
                }
                order.push(i);
                on_ask(s, book, i);
            }
            None if s.done => return order,
            None => {}
        }
    }
    panic!("never done: {order:?}");
}

#[test]
fn a_check_asks_again_only_the_neighbours_of_hosts_and_those_expected() {
    let mut book = Book::new(20);
    let mut s = Sender::new(Passes::Checked { retry: true }, Instant::now(), 20);
    let order = drive(&mut s, &mut book, 20, &[17, 6], |s, book, i| {
        if s.pass == 0 && [5, 6, 7, 12].contains(&i) {
            book.answer(i);
        }
    });
    let (first, check) = order.split_at(20);
    assert_eq!(first, (0..20).collect::<Vec<_>>(), "every address once");
    // Neighbours 4, 8, 11, 13 and the expected 17 (6 answered already).
    assert_eq!(check, [4, 8, 11, 13, 17]);
    assert!(s.done, "no loss seen: no further pass");
}

#[test]
fn an_answer_after_the_first_pass_adds_its_neighbours_to_the_check() {
    let mut book = Book::new(6);
    let mut s = Sender::new(Passes::Checked { retry: true }, Instant::now(), 6);
    let order = drive(&mut s, &mut book, 6, &[], |_, _, _| {});
    assert_eq!(order, (0..6).collect::<Vec<_>>(), "nothing answered yet");
    assert!(s.done, "an empty check");
    // The answer of 3 was on its way: 2 and 4 are checked, once.
    book.answer(3);
    s.found(3, &book, 6);
    s.found(3, &book, 6);
    assert!(!s.done, "the check goes on");
    assert_eq!(drive(&mut s, &mut book, 6, &[], |_, _, _| {}), [2, 4]);
    // A neighbour already asked by the check is not asked twice.
    book.answer(1);
    s.found(1, &book, 6);
    assert_eq!(drive(&mut s, &mut book, 6, &[], |_, _, _| {}), [0]);
    assert!(s.done);
}

#[test]
fn late_neighbours_added_to_a_check_are_bounded() {
    let len = 4 * MAX_CHECKS;
    let mut book = Book::new(len);
    let mut s = Sender::new(Passes::Checked { retry: false }, Instant::now(), len);
    drive(&mut s, &mut book, len, &[], |_, _, _| {});
    for i in (0..len).step_by(3) {
        book.answer(i);
        s.found(i, &book, len);
    }
    let late = drive(&mut s, &mut book, len, &[], |_, _, _| {});
    assert_eq!(late.len(), MAX_CHECKS, "{late:?}");
}

#[test]
fn a_check_answered_is_loss_and_earns_a_full_pass_when_allowed() {
    for (retry, late) in [(true, false), (true, true), (false, false), (false, true)] {
        let mut book = Book::new(10);
        let mut s = Sender::new(Passes::Checked { retry }, Instant::now(), 10);
        let mut order = drive(&mut s, &mut book, 10, &[], |s, book, i| {
            if s.pass == 0 && i == 3 {
                book.answer(3);
            }
            if s.pass == 1 && i == 4 && !late {
                // The check of 4 is answered: it was lost the first time.
                book.answer(4);
                s.loss_seen();
            }
        });
        if late {
            // The check's answer comes after the check was sent.
            book.answer(4);
            s.loss_seen();
            order.extend(drive(&mut s, &mut book, 10, &[], |_, _, _| {}));
        }
        let mut want: Vec<usize> = (0..10).collect();
        want.extend([2, 4]);
        if retry {
            want.extend((0..10).filter(|i| ![3, 4].contains(i)));
        }
        assert_eq!(order, want, "retry allowed: {retry}, late answer: {late}");
        assert!(s.done);
    }
}

#[test]
fn a_check_is_bounded_and_spread_however_many_hosts_answered() {
    let mut book = Book::new(1000);
    for i in (0..1000).step_by(3) {
        book.answer(i);
    }
    let checks = book.checks(1000, &[]);
    assert!(
        (MAX_CHECKS / 2..=MAX_CHECKS).contains(&checks.len()),
        "{checks:?}"
    );
    assert!(
        checks[0] < 50 && checks[checks.len() - 1] > 950,
        "{checks:?}"
    );
    // Expected addresses are all checked, beyond the bound.
    let expected: Vec<usize> = (1..1000).step_by(3).collect();
    let checks = book.checks(1000, &expected);
    assert!(expected.iter().all(|i| checks.contains(i)));
    assert!(checks.len() <= expected.len() + MAX_CHECKS, "{checks:?}");
}

#[test]
fn reply_is_parsed_from_a_request_turned_around() {
    let iface = super::super::iface::test_scanner();
    let mut f = request_frame(&iface, Ipv4Addr::new(198, 18, 0, 9));
    assert!(parse_reply(&f).is_none(), "a request is not a reply");
    f[21] = 2;
    let (ip, mac) = parse_reply(&f).unwrap();
    assert_eq!(ip, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(mac.to_string(), "02:00:00:00:00:01");
}

/// A reply as a host's kernel sends it to the scanner's request.
fn reply_to(iface: &Interface, ip: Ipv4Addr, mac: [u8; 6]) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&iface.mac.0);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&iface.mac.0);
    f[38..42].copy_from_slice(&iface.ip.octets());
    f
}

#[test]
fn only_a_reply_addressed_in_full_to_the_scanner_is_one_to_us() {
    let iface = super::super::iface::test_scanner();
    let host = [0x00, 0x16, 0x3e, 0, 0, 9];
    let good = reply_to(&iface, Ipv4Addr::new(198, 18, 0, 9), host);
    assert!(is_reply_to_us(&good, &iface));
    let spoiled = |at: usize, bytes: &[u8]| {
        let mut f = good;
        f[at..at + bytes.len()].copy_from_slice(bytes);
        is_reply_to_us(&f, &iface)
    };
    assert!(!spoiled(0, &[0xff; 6]), "broadcast");
    assert!(
        !spoiled(6, &[0x00, 0x16, 0x3e, 0, 0, 8]),
        "header and body disagree"
    );
    assert!(!spoiled(32, &[0; 6]), "another target MAC");
    assert!(!spoiled(38, &[198, 18, 0, 2]), "another target address");
    assert!(!spoiled(20, &[0, 1]), "a request");
    for (mac, why) in [
        ([0x01, 0, 0x5e, 0, 0, 1], "multicast"),
        ([0; 6], "zero"),
        (iface.mac.0, "the scanner's own"),
    ] {
        let f = reply_to(&iface, Ipv4Addr::new(198, 18, 0, 9), mac);
        assert!(!is_reply_to_us(&f, &iface), "{why}");
    }
    for ip in [[198, 18, 0, 0], [198, 18, 0, 255], [198, 18, 0, 1]] {
        let f = reply_to(&iface, Ipv4Addr::from(ip), host);
        assert!(!is_reply_to_us(&f, &iface), "{ip:?}");
    }
}
