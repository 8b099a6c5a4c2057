//! When the sync loop asks the remote again: every poll while steps work,
//! sooner after a failure. It does not sleep itself; the loop does.

use std::time::Duration;

use super::Error;

/// First retry after a failed fetch; doubles up to the poll interval (Flux's
/// source-controller starts at 750 ms too).
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(750);

/// When the sync loop looks again: every poll while steps work; after a
/// failure sooner, from `FIRST_RETRY` doubling up to the poll.
pub(super) struct Backoff {
    next: Duration,
    poll: Duration,
}

impl Backoff {
    pub(super) fn new(poll: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY,
            poll,
        }
    }

    /// The wait after a step that worked; failures start over.
    pub(super) fn succeeded(&mut self) -> Duration {
        self.next = FIRST_RETRY;
        self.poll
    }

    /// The wait after a failed step.
    pub(super) fn failed(&mut self, e: &Error) -> Duration {
        if matches!(e, Error::Invalid { .. }) {
            // Retrying sooner cannot fix a bad commit; a new push will.
            return self.poll;
        }
        let wait = self.next.min(self.poll);
        self.next = (self.next * 2).min(self.poll);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Report;

    #[test]
    fn failures_retry_from_750_ms_doubling_up_to_the_poll() {
        let fetch = Error::Fetch {
            url: "file:///r".into(),
            message: "gone".into(),
        };
        let mut b = Backoff::new(Duration::from_secs(10));
        let waits: Vec<u64> = (0..6)
            .map(|_| b.failed(&fetch).as_millis() as u64)
            .collect();
        assert_eq!(waits, [750, 1500, 3000, 6000, 10_000, 10_000]);
        assert_eq!(b.succeeded(), Duration::from_secs(10));
        assert_eq!(b.failed(&fetch), FIRST_RETRY, "a success starts over");
        let invalid = Error::Invalid {
            revision: "abc".into(),
            report: Report(Vec::new()),
        };
        assert_eq!(
            b.failed(&invalid),
            Duration::from_secs(10),
            "a bad commit waits for a push"
        );
        assert_eq!(b.failed(&fetch), Duration::from_millis(1500));
        let mut fast = Backoff::new(Duration::from_millis(100));
        assert_eq!(
            fast.failed(&fetch),
            Duration::from_millis(100),
            "never past the poll"
        );
    }
}
