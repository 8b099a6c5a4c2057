//! The sending side of a sweep: which address is asked next, pass by
//! pass, and when a check for loss earns another full pass.

use std::time::Instant;

use super::{Passes, MAX_CHECKS, MAX_TRIES};

/// Per-address state of one sweep, indexed by position in the targets:
/// bounded by the range size, never by a copy of the address list.
pub(super) struct Book {
    answered: Vec<u64>,
    /// Asked at least once (a reply before its request was not solicited).
    asked: Vec<u64>,
    /// Asked more than once: its answer's round trip is ambiguous, and an
    /// answer shows loss.
    retried: Vec<u64>,
    /// Microseconds after the start when the first request went out: a
    /// reply names no request, and a late host answers the first one.
    pub(super) sent_at: Vec<u32>,
    pub(super) count: usize,
}

impl Book {
    pub(super) fn new(len: usize) -> Book {
        Book {
            answered: vec![0; len.div_ceil(64)],
            asked: vec![0; len.div_ceil(64)],
            retried: vec![0; len.div_ceil(64)],
            sent_at: vec![0; len],
            count: 0,
        }
    }
    pub(super) fn is_answered(&self, i: usize) -> bool {
        self.answered[i / 64] & (1 << (i % 64)) != 0
    }
    pub(super) fn answer(&mut self, i: usize) {
        self.answered[i / 64] |= 1 << (i % 64);
        self.count += 1;
    }
    pub(super) fn is_asked(&self, i: usize) -> bool {
        self.asked[i / 64] & (1 << (i % 64)) != 0
    }
    pub(super) fn ask(&mut self, i: usize) {
        self.asked[i / 64] |= 1 << (i % 64);
    }
    pub(super) fn is_retried(&self, i: usize) -> bool {
        self.retried[i / 64] & (1 << (i % 64)) != 0
    }
    pub(super) fn retry(&mut self, i: usize) {
        self.retried[i / 64] |= 1 << (i % 64);
    }
    /// The silent addresses a check asks again, in order: each expected
    /// one, and the silent neighbours of found ones (`MAX_CHECKS` at most,
    /// spread over the range when there are more).
    pub(super) fn checks(&self, len: usize, expected: &[usize]) -> Vec<usize> {
        let mut neighbours: Vec<usize> = Vec::new();
        for i in (0..len).filter(|i| self.is_answered(*i)) {
            for n in [i.checked_sub(1), i.checked_add(1).filter(|n| *n < len)] {
                if let Some(n) = n.filter(|n| !self.is_answered(*n)) {
                    neighbours.push(n);
                }
            }
        }
        neighbours.dedup();
        let spread = neighbours.len().div_ceil(MAX_CHECKS).max(1);
        let mut out: Vec<usize> = expected
            .iter()
            .copied()
            .filter(|i| *i < len && !self.is_answered(*i))
            .chain(neighbours.into_iter().step_by(spread))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Where a sweep with a check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// The first pass.
    First,
    /// The check's addresses are being asked, each a retry gap after its
    /// first request (the sweep's loop holds back those not due yet), so
    /// an answer on its way is not taken for loss. An answer arriving now
    /// adds its silent neighbours to the check.
    Asking,
    /// The check is sent; an answer to it, even a late one, is loss.
    Asked,
    /// Loss was seen: passes go on as `Passes::Fixed`.
    Passes,
}

/// The sending side: which address is next, pass by pass.
pub(super) struct Sender {
    pub(super) pass: u32,
    passes: u32,
    /// Whether loss a check finds earns a full pass; `None`: no check.
    retry: Option<bool>,
    pub(super) stage: Stage,
    /// The addresses of the check, in order; `None`: every address.
    order: Option<Vec<usize>>,
    /// How many of `order` were chosen when the first pass ended (sorted);
    /// the rest are neighbours of hosts that answered after it.
    chosen_at_end: usize,
    next: usize,
    pub(super) found_this_pass: usize,
    pub(super) next_send: Instant,
    pub(super) last_request: Instant,
    /// When the last request of the first pass went out.
    pub(super) first_pass_sent: Option<Instant>,
    pub(super) done: bool,
}

impl Sender {
    pub(super) fn new(passes: Passes, start: Instant, len: usize) -> Sender {
        let (passes, retry, stage) = match passes {
            Passes::Fixed(n) => (n.clamp(1, MAX_TRIES), None, Stage::Passes),
            Passes::Checked { retry } => (1, Some(retry), Stage::First),
        };
        Sender {
            pass: 0,
            passes,
            retry,
            stage,
            order: None,
            chosen_at_end: 0,
            next: 0,
            found_this_pass: 0,
            next_send: start,
            last_request: start,
            first_pass_sent: None,
            done: len == 0,
        }
    }

    /// The next silent address to ask, starting the next pass or the
    /// check when one ends.
    pub(super) fn next_index(
        &mut self,
        book: &Book,
        len: usize,
        expected: &[usize],
    ) -> Option<usize> {
        loop {
            let end = self.order.as_ref().map_or(len, Vec::len);
            while self.next < end {
                let i = self.order.as_ref().map_or(self.next, |o| o[self.next]);
                self.next += 1;
                if !book.is_answered(i) {
                    return Some(i);
                }
            }
            if self.pass == 0 {
                self.first_pass_sent.get_or_insert(self.last_request);
            }
            if book.count == len {
                self.done = true;
                return None;
            }
            match self.stage {
                Stage::First => {
                    let order = book.checks(len, expected);
                    self.chosen_at_end = order.len();
                    self.order = Some(order);
                    self.stage = Stage::Asking;
                    self.start_pass(1, 2);
                }
                Stage::Asking if self.found_this_pass > 0 && self.retry == Some(true) => {
                    self.full_pass_after_loss();
                }
                Stage::Asking | Stage::Asked => {
                    self.stage = Stage::Asked;
                    self.done = true;
                    return None;
                }
                Stage::Passes => {
                    if self.found_this_pass > 0 && self.passes < MAX_TRIES {
                        self.passes += 1;
                    }
                    if self.pass + 1 >= self.passes {
                        self.pass += 1;
                        self.done = true;
                        return None;
                    }
                    let (pass, passes) = (self.pass + 1, self.passes);
                    self.start_pass(pass, passes);
                }
            }
        }
    }

    fn start_pass(&mut self, pass: u32, passes: u32) {
        self.pass = pass;
        self.passes = passes;
        self.next = 0;
        self.found_this_pass = 0;
    }

    /// Every silent address once more: a check was answered.
    fn full_pass_after_loss(&mut self) {
        self.order = None;
        self.stage = Stage::Passes;
        let pass = self.pass + 1;
        self.start_pass(pass, (pass + 1).min(MAX_TRIES));
        self.done = false;
    }

    /// Address `i` answered for the first time: once the check is chosen,
    /// its silent neighbours join it (`MAX_CHECKS` such late ones at most),
    /// as they would have had the answer come before the first pass ended.
    pub(super) fn found(&mut self, i: usize, book: &Book, len: usize) {
        if !matches!(self.stage, Stage::Asking | Stage::Asked) {
            return;
        }
        let Some(order) = self.order.as_mut() else {
            return;
        };
        for n in [i.checked_sub(1), i.checked_add(1).filter(|n| *n < len)] {
            let Some(n) = n.filter(|n| book.is_asked(*n) && !book.is_answered(*n)) else {
                continue;
            };
            let (chosen, late) = order.split_at(self.chosen_at_end);
            if late.len() >= MAX_CHECKS || chosen.binary_search(&n).is_ok() || late.contains(&n) {
                continue;
            }
            order.push(n);
            self.stage = Stage::Asking;
            self.done = false;
        }
    }

    /// An address asked more than once answered: loss. After the check
    /// was sent, a late answer to it still earns the full pass.
    pub(super) fn loss_seen(&mut self) {
        self.found_this_pass += 1;
        if self.stage == Stage::Asked && self.retry == Some(true) {
            self.full_pass_after_loss();
        }
    }

    /// Steps back to the address just taken (not due yet).
    pub(super) fn put_back(&mut self) {
        self.next -= 1;
    }
}
