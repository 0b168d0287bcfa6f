//! The connection's timers: a small fixed table indexed by an enum, so the
//! next deadline is a minimum over a few slots.

use std::time::Instant;

/// Every timer a connection arms.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The handshake must complete before this.
    Handshake = 0,
    /// Nothing received since the keepalive interval: send a PING.
    KeepAlive = 1,
    /// Nothing received within interval + timeout: the peer is dead.
    Idle = 2,
    /// Earliest zero-window probe or half-close deadline.
    Probe = 3,
    /// A graceful close gives up waiting for streams.
    Drain = 4,
    /// A PING held back by the sender budget may go out.
    PingPace = 5,
    /// The frame being received must be complete by then.
    Frame = 6,
    /// A PRIORITY_UPDATE held back by the sender budget may go out.
    PriorityPace = 7,
}

const COUNT: usize = 8;
const ALL: [Timer; COUNT] = [
    Timer::Handshake,
    Timer::KeepAlive,
    Timer::Idle,
    Timer::Probe,
    Timer::Drain,
    Timer::PingPace,
    Timer::Frame,
    Timer::PriorityPace,
];

#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; COUNT],
    /// The connection ended: no timer is armed again.
    closed: bool,
}

impl TimerTable {
    /// Arms `timer` at `at` (nothing once the table is closed).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if !self.closed {
            self.slots[timer as usize] = Some(at);
        }
    }

    /// Arms `timer` at `at` unless it is already armed earlier (nothing
    /// once the table is closed).
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.slots[timer as usize];
        if !self.closed && slot.is_none_or(|current| at < current) {
            *slot = Some(at);
        }
    }

    /// Disarms every timer for good: a finished connection keeps no timer,
    /// whatever path runs after the end was decided (a partly received
    /// frame, a later timer of the same `handle_timeout` call).
    pub(crate) fn close(&mut self) {
        self.slots = [None; COUNT];
        self.closed = true;
    }

    /// When `timer` is armed for, if it is.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer as usize]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer as usize] = None;
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarms and returns every timer due at `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut due = [None; COUNT];
        for timer in ALL {
            if self.slots[timer as usize].is_some_and(|at| at <= now) {
                self.slots[timer as usize] = None;
                due[timer as usize] = Some(timer);
            }
        }
        due.into_iter().flatten()
    }
}
