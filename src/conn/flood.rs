//! Counters of peer-triggered frames against the flood limits (SPEC §16.1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::FloodLimits;

/// What a counted frame was.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Flood {
    Ping = 0,
    EmptyData = 1,
    UselessUpdate = 2,
    Blocked = 3,
    Reset = 4,
    UnknownFrame = 5,
    StrayFrame = 6,
    PriorityUpdate = 7,
}

impl Flood {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Flood::Ping => "PING",
            Flood::EmptyData => "empty DATA",
            Flood::UselessUpdate => "credit updates that raise nothing",
            Flood::Blocked => "BLOCKED",
            Flood::Reset => "stream resets",
            Flood::UnknownFrame => "unknown frame types",
            Flood::StrayFrame => "frames on closed streams",
            Flood::PriorityUpdate => "PRIORITY_UPDATE",
        }
    }

    fn limit(self, limits: &FloodLimits) -> u32 {
        match self {
            Flood::Ping => limits.pings,
            Flood::EmptyData => limits.empty_data,
            Flood::UselessUpdate => limits.useless_updates,
            Flood::Blocked => limits.blocked,
            Flood::Reset => limits.resets,
            Flood::UnknownFrame => limits.unknown_frames,
            Flood::StrayFrame => limits.stray_frames,
            Flood::PriorityUpdate => limits.priority_updates,
        }
    }
}

/// Counts per fixed one-second window of the injected clock.
#[derive(Clone, Debug)]
pub(crate) struct FloodCounters {
    limits: FloodLimits,
    window_start: Option<Instant>,
    counts: [u32; 8],
}

impl FloodCounters {
    pub(crate) fn new(limits: FloodLimits) -> FloodCounters {
        FloodCounters {
            limits,
            window_start: None,
            counts: [0; 8],
        }
    }

    /// Counts one event; `Err` when the limit for this window is exceeded.
    pub(crate) fn count(&mut self, now: Instant, what: Flood) -> Result<(), Flood> {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            self.window_start = Some(now);
            self.counts = [0; 8];
        }
        let count = &mut self.counts[what as usize];
        *count = count.saturating_add(1);
        if *count > what.limit(&self.limits) {
            Err(what)
        } else {
            Ok(())
        }
    }
}

/// Frames of one kind a conformant sender may send in any 1 s: half of the
/// smallest flood limit a receiver may enforce for them (SPEC §16.1), so
/// that neither clock alignment nor some bunching in transit can trip it.
pub(crate) const SEND_BUDGET_PER_SECOND: usize = 50;

/// Sender side of a flood limit: at most [`SEND_BUDGET_PER_SECOND`] frames
/// in any 1 s of the injected clock (a sliding window, SPEC §11.2, §12.1).
#[derive(Clone, Debug, Default)]
pub(crate) struct SendBudget {
    /// Times of the recent sends, oldest first; never more than the budget.
    sent: VecDeque<Instant>,
}

impl SendBudget {
    /// The earliest time, not before `now`, at which one more frame fits.
    pub(crate) fn available_at(&self, now: Instant) -> Instant {
        match self.sent.front() {
            Some(&oldest) if self.sent.len() >= SEND_BUDGET_PER_SECOND => {
                now.max(oldest + Duration::from_secs(1))
            }
            _ => now,
        }
    }

    /// Takes one send if it fits at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|&at| at + Duration::from_secs(1) <= now)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= SEND_BUDGET_PER_SECOND {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// Requests the bucket holds when full, and adds per second: at most twice
/// this in any 1 s (SPEC §6.10: 500).
pub(crate) const BURST: u32 = 250;
// One token per whole number of milliseconds, so that BURST a second is
// exact (and with the burst, 500 in any second).
const _: () = assert!(1000 % BURST == 0);

/// The sender's pacing of PRIORITY_UPDATE frames.
#[derive(Clone, Debug)]
pub(crate) struct RequestBudget {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Option<Instant>,
}

impl Default for RequestBudget {
    fn default() -> Self {
        RequestBudget {
            tokens: BURST,
            at: None,
        }
    }
}

impl RequestBudget {
    /// Time for one token.
    const PERIOD: Duration = Duration::from_millis(1000 / BURST as u64);

    fn refill(&mut self, now: Instant) {
        let Some(at) = self.at else {
            self.at = Some(now);
            return;
        };
        let earned = now.saturating_duration_since(at).as_millis() / Self::PERIOD.as_millis();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            // Keep the remainder toward the next token; a full bucket
            // earns nothing while it waits.
            self.at = Some(if self.tokens == BURST {
                now
            } else {
                at + Self::PERIOD * earned
            });
        }
    }

    /// Takes a token if one is there at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When the next token is earned (only meaningful when empty).
    pub(crate) fn next_at(&self, now: Instant) -> Instant {
        self.at.map_or(now, |at| at + Self::PERIOD).max(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BURST, Flood, FloodCounters, RequestBudget, SEND_BUDGET_PER_SECOND, SendBudget};
    use crate::config::FloodLimits;

    #[test]
    fn flood_limits_apply_per_second_of_the_injected_clock() {
        let limits = FloodLimits {
            pings: 2,
            ..FloodLimits::default()
        };
        let mut counters = FloodCounters::new(limits);
        let t0 = crate::test_epoch();
        assert!(counters.count(t0, Flood::Ping).is_ok());
        assert!(counters.count(t0, Flood::Ping).is_ok());
        assert_eq!(counters.count(t0, Flood::Ping), Err(Flood::Ping));
        // Other counters are independent.
        assert!(counters.count(t0, Flood::Blocked).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(counters.count(t1, Flood::Ping).is_ok());
    }

    #[test]
    fn the_send_budget_allows_fifty_frames_in_any_second() {
        let mut budget = SendBudget::default();
        let t0 = crate::test_epoch();
        for i in 0..SEND_BUDGET_PER_SECOND as u32 {
            assert!(budget.try_take(t0 + Duration::from_millis(10) * i));
        }
        let t = t0 + Duration::from_millis(600);
        assert!(!budget.try_take(t));
        // The oldest send leaves the window 1 s after it was made.
        assert_eq!(budget.available_at(t), t0 + Duration::from_secs(1));
        assert!(budget.try_take(t0 + Duration::from_secs(1)));
        assert!(!budget.try_take(t0 + Duration::from_secs(1)));
        assert!(budget.try_take(t0 + Duration::from_millis(1010)));
    }

    #[test]
    fn the_request_budget_allows_a_burst_then_its_rate() {
        let mut budget = RequestBudget::default();
        let t0 = crate::test_epoch();
        for _ in 0..BURST {
            assert!(budget.try_take(t0));
        }
        assert!(!budget.try_take(t0));
        let next = budget.next_at(t0);
        assert_eq!(next, t0 + Duration::from_millis(4));
        assert!(!budget.try_take(next - Duration::from_micros(1)));
        assert!(budget.try_take(next));
        // Over the following second, one token per 4 ms: BURST more, so
        // never more than 2 * BURST (500) in any second.
        let mut taken = 0;
        for ms in 1..=1000 {
            while budget.try_take(next + Duration::from_millis(ms)) {
                taken += 1;
            }
        }
        assert_eq!(taken, BURST);
        // Idle for a while, the bucket is full again, and no fuller.
        let later = next + Duration::from_secs(60);
        let mut burst = 0;
        while budget.try_take(later) {
            burst += 1;
        }
        assert_eq!(burst, BURST);
    }
}
