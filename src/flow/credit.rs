//! Receive-side and send-side credit.

/// The peer used more credit than it was granted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer exceeded its credit: offset {attempted} is past the limit {limit}")]
pub struct CreditError {
    /// The offset (or count) the peer reached.
    pub attempted: u64,
    /// The limit this side had announced.
    pub limit: u64,
}

/// Credit this side grants: how far the peer may send.
///
/// `received` counts what arrived, `released` what the application consumed
/// (or what was discarded), `announced` the limit the peer knows. The limit
/// this side could announce is `released + window`: it never grants more
/// than `window` bytes beyond what the application has taken, so buffered
/// data never exceeds the window (SPEC §9.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecvCredit {
    window: u64,
    received: u64,
    released: u64,
    announced: u64,
}

impl RecvCredit {
    /// Credit with an initial limit of `window`, as announced by SETTINGS.
    pub const fn new(window: u64) -> RecvCredit {
        RecvCredit {
            window,
            received: 0,
            released: 0,
            announced: window,
        }
    }

    /// Accounts for `n` arriving units. Fails if they go past the announced
    /// limit; the caller treats that as FLOW_CONTROL_ERROR (SPEC §9.3).
    pub fn receive(&mut self, n: u64) -> Result<(), CreditError> {
        self.check(n)?;
        self.received += n;
        Ok(())
    }

    /// Whether `n` more units would stay within the announced limit, as
    /// [`receive`](Self::receive) checks, without accounting for them.
    pub fn check(&self, n: u64) -> Result<(), CreditError> {
        let attempted = self.received.saturating_add(n);
        if attempted > self.announced {
            return Err(CreditError {
                attempted,
                limit: self.announced,
            });
        }
        Ok(())
    }

    /// Raises the received total to `offset` if it is higher (used for the
    /// stream count, where the peer opens by index).
    pub fn receive_up_to(&mut self, offset: u64) -> Result<(), CreditError> {
        match offset.checked_sub(self.received) {
            Some(n) => self.receive(n),
            None => Ok(()),
        }
    }

    /// The application consumed (or this side discarded) `n` units. Returns
    /// whether an update is now due; the caller schedules one.
    #[must_use = "an update may be due"]
    pub fn release(&mut self, n: u64) -> bool {
        debug_assert!(
            self.released + n <= self.received,
            "released more than received"
        );
        self.released = (self.released + n).min(self.received);
        self.update_due()
    }

    /// True when the unannounced credit reached half a window (SPEC §9.5):
    /// late enough to avoid silly-window traffic, early enough that the
    /// sender never stalls on a fast reader.
    pub fn update_due(&self) -> bool {
        // After the window shrank, the announced limit may be past
        // `released + window` for a while: nothing is due then.
        (self.released + self.window).saturating_sub(self.announced) >= (self.window / 2).max(1)
    }

    /// The limit to send now, recording that the peer will know it. The
    /// limit never moves backwards.
    pub fn announce(&mut self) -> u64 {
        self.announced = self.announced.max(self.released + self.window);
        self.announced
    }

    /// The limit the peer knows.
    pub fn limit(&self) -> u64 {
        self.announced
    }

    /// Units received but not yet released: what this side buffers.
    pub fn buffered(&self) -> u64 {
        self.received - self.released
    }

    /// Units received in total.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Units released in total.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// The window: how far past what was released the next limit goes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Changes the window (receive-window tuning). A larger one takes
    /// effect with the next update; a smaller one as the credit already
    /// announced is used up, since a limit never moves backwards.
    pub fn set_window(&mut self, window: u64) {
        self.window = window.max(1);
    }
}

/// Credit the peer grants: how far this side may send.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SendCredit {
    limit: u64,
    sent: u64,
}

impl SendCredit {
    /// Credit up to `limit`.
    pub const fn new(limit: u64) -> SendCredit {
        SendCredit { limit, sent: 0 }
    }

    /// Units that may be sent now.
    pub fn available(&self) -> u64 {
        self.limit - self.sent
    }

    /// Applies a limit from the peer. Lower or equal limits are stale and
    /// ignored (SPEC §9.3). Returns whether credit grew.
    pub fn raise(&mut self, limit: u64) -> bool {
        if limit > self.limit {
            self.limit = limit;
            true
        } else {
            false
        }
    }

    /// Records `n` units sent. The caller never sends more than
    /// [`SendCredit::available`]; this saturates rather than trusting it.
    pub fn consume(&mut self, n: u64) {
        debug_assert!(n <= self.available(), "sent past the peer's limit");
        self.sent = (self.sent + n).min(self.limit);
    }

    /// Gives back `n` units consumed for a send that did not happen (a
    /// reservation the transport took only part of).
    pub fn unconsume(&mut self, n: u64) {
        debug_assert!(n <= self.sent, "gave back more than was sent");
        self.sent = self.sent.saturating_sub(n);
    }

    /// The peer's limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units sent in total.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn receiving_past_the_limit_is_an_error_and_changes_nothing() {
        let mut credit = RecvCredit::new(100);
        credit.receive(60).unwrap();
        assert_eq!(
            credit.receive(41),
            Err(CreditError {
                attempted: 101,
                limit: 100
            })
        );
        assert_eq!(credit.buffered(), 60);
    }

    #[test]
    fn update_is_due_at_half_a_window() {
        let mut credit = RecvCredit::new(100);
        credit.receive(100).unwrap();
        assert!(!credit.release(49));
        assert!(credit.release(1));
        assert_eq!(credit.announce(), 150);
        assert!(!credit.update_due());
    }

    #[test]
    fn stale_limits_do_not_lower_send_credit() {
        let mut credit = SendCredit::new(100);
        credit.consume(100);
        assert!(credit.raise(150));
        assert!(!credit.raise(120));
        assert_eq!(credit.available(), 50);
    }

    #[test]
    fn a_window_of_one_updates_after_every_unit() {
        let mut credit = RecvCredit::new(1);
        credit.receive(1).unwrap();
        assert!(credit.release(1));
        assert_eq!(credit.announce(), 2);
    }

    proptest! {
        /// Whatever the order of receive and release, buffered data never
        /// exceeds the window and the announced limit never moves back.
        #[test]
        fn buffered_never_exceeds_the_window(window in 1u64..10_000, ops in proptest::collection::vec((any::<bool>(), 0u64..5_000), 0..200)) {
            let mut credit = RecvCredit::new(window);
            let mut last_limit = credit.limit();
            for (is_receive, n) in ops {
                if is_receive {
                    let n = n.min(credit.limit() - credit.received());
                    credit.receive(n).unwrap();
                } else {
                    let n = n.min(credit.buffered());
                    if credit.release(n) {
                        credit.announce();
                    }
                }
                prop_assert!(credit.buffered() <= window);
                prop_assert!(credit.limit() >= last_limit);
                prop_assert!(credit.limit() <= credit.released() + window);
                last_limit = credit.limit();
            }
        }
    }
}
