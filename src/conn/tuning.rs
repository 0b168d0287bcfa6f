//! Receive-window tuning (SPEC §9.8, local policy): a window grows while
//! it is what limits the rate, and shrinks back when its reader slows or
//! stops, within the bounds and the memory budget in `Config`.
//!
//! A receiver announces new credit each time half its window was read
//! (§9.5), so a window of W bytes draining at R bytes/s is announced every
//! W / 2R seconds; and a window that limits the rate lets half of itself
//! through per round trip (the update takes half a round trip to reach
//! the sender, its data the other half), so its announcements come one
//! round trip apart. Under one and a half round trips, then, the window
//! is (nearly) what limits the rate: it grows fourfold, up to its maximum,
//! and settles between 3 and 8 bandwidth-delay products. Over four round
//! trips it is at least 8 bandwidth-delay products: it halves, down to the
//! initial window. A reader that stops announces nothing; its next
//! announcement, after the long gap, halves the window again each time.
//!
//! The connection window bounds everything this side buffers for the peer
//! (every stream's data counts against it, §9.4), so capping it at
//! `max_connection_window` keeps memory within that budget however the
//! stream windows move.

use std::time::{Duration, Instant};

use super::stream::StreamState;
use super::{Connection, ConnectionStats, Side};
use crate::flow::RecvCredit;
use crate::frame::StreamId;

/// Below this round trip no window is tuned: the initial windows already
/// allow gigabytes per second.
const MIN_TUNED_RTT: Duration = Duration::from_micros(500);

/// How much a window that limits the rate grows per announcement. Each
/// step costs a round trip at the old window's rate, so few large steps
/// reach a long path's window sooner (4: 1 MiB to 16 MiB in two round
/// trips); the overshoot is taken back by the shrink rule.
const GROWTH: u64 = 4;

/// A round trip sample older than this many round trips (and than
/// `RTT_REFRESH_MIN`) is measured again while windows are tuned.
const RTT_REFRESH_RTTS: u32 = 8;
const RTT_REFRESH_MIN: Duration = Duration::from_millis(100);

/// What the tuning keeps per connection.
#[derive(Debug, Default)]
pub(super) struct Tuning {
    /// When this side's SETTINGS went out: their acknowledgement gives the
    /// first round-trip sample, before any PING.
    pub(super) settings_sent_at: Option<Instant>,
    /// The round trip of the handshake.
    pub(super) handshake_rtt: Option<Duration>,
    /// When the connection window was last announced.
    pub(super) conn_announced_at: Option<Instant>,
}

/// Which way a window moved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Change {
    Grown,
    Shrunk,
}

/// The new window for `credit`, announced again `since` after its last
/// announcement, on a path with round trip `rtt`; `None` if it stays.
fn tuned(credit: &RecvCredit, since: Duration, rtt: Duration, min: u64, max: u64) -> Option<u64> {
    let window = credit.window();
    if since < rtt * 3 / 2 && window < max {
        Some(window.saturating_mul(GROWTH).min(max))
    } else if since > rtt * 4 && window > min {
        Some((window / 2).max(min))
    } else {
        None
    }
}

/// Sets `credit`'s window to `window` and counts the change.
fn retune(credit: &mut RecvCredit, window: u64, stats: &mut ConnectionStats) -> Change {
    let change = if window > credit.window() {
        stats.windows_grown += 1;
        Change::Grown
    } else {
        stats.windows_shrunk += 1;
        Change::Shrunk
    };
    credit.set_window(window);
    change
}

/// What tuning a stream's window needs from the connection, taken once
/// per transmit.
#[derive(Copy, Clone, Debug)]
pub(super) struct StreamTuning {
    side: Side,
    /// `None`: tuning is off, or no round trip worth tuning for is known.
    rtt: Option<Duration>,
    /// The time, in milliseconds since the connection began (never 0).
    now_ms: u32,
    min: u64,
    max: u64,
}

impl StreamTuning {
    /// Tunes `stream`'s window as its update is announced; returns the new
    /// window if it grew (the connection window may have to follow, see
    /// `keep_connection_window_above`).
    pub(super) fn apply(
        self,
        id: StreamId,
        stream: &mut StreamState,
        stats: &mut ConnectionStats,
    ) -> Option<u64> {
        let last = std::mem::replace(&mut stream.announced_at_ms, self.now_ms);
        let rtt = self.rtt?;
        if last == 0 {
            return None;
        }
        let since = Duration::from_millis(u64::from(self.now_ms.saturating_sub(last)));
        let window = tuned(&stream.recv_credit, since, rtt, self.min, self.max)?;
        let change = retune(&mut stream.recv_credit, window, stats);
        tracing::debug!(side = ?self.side, stream = %id, window, ?change, "stream window tuned");
        (change == Change::Grown).then_some(window)
    }
}

impl Connection {
    /// The round trip the tuning uses: the latest PING's, else the
    /// handshake's; `None` while neither is known or when tuning is off.
    fn tuning_rtt(&self) -> Option<Duration> {
        if !self.config.tunes_windows() {
            return None;
        }
        self.pinger
            .rtt()
            .or(self.tuning.handshake_rtt)
            .filter(|&rtt| rtt >= MIN_TUNED_RTT)
    }

    /// What tuning stream windows at `now` needs.
    pub(super) fn stream_tuning(&self, now: Instant) -> StreamTuning {
        let since_start = now.saturating_duration_since(self.epoch).as_millis();
        StreamTuning {
            side: self.side,
            rtt: self.tuning_rtt(),
            now_ms: u32::try_from(since_start).unwrap_or(u32::MAX).max(1),
            min: u64::from(self.config.stream_window()),
            max: u64::from(self.config.max_stream_window()),
        }
    }

    /// Keeps the quarter rule of §7.3 for grown windows: the connection
    /// window at least four times the largest stream window, within the
    /// budget, so one fast stream is not held back by the connection
    /// window it would otherwise have to grow separately.
    pub(super) fn keep_connection_window_above(&mut self, stream_window: u64) {
        let budget = u64::from(self.config.max_connection_window());
        let wanted = stream_window.saturating_mul(4).min(budget);
        if wanted > self.conn_recv.window() {
            self.retune_connection(wanted);
            if self.conn_recv.update_due() {
                self.owed.window_update = true;
            }
        }
    }

    /// Tunes the connection window as its update is announced at `now`.
    pub(super) fn tune_connection_window(&mut self, now: Instant) {
        let last = self.tuning.conn_announced_at.replace(now);
        self.refresh_rtt(now);
        let Some(rtt) = self.tuning_rtt() else {
            return;
        };
        let Some(last) = last else {
            return;
        };
        let min = u64::from(self.config.connection_window());
        let max = u64::from(self.config.max_connection_window());
        let since = now.saturating_duration_since(last);
        if let Some(window) = tuned(&self.conn_recv, since, rtt, min, max) {
            self.retune_connection(window);
        }
    }

    /// Sets the connection's receive window to `window`, counted and
    /// traced.
    fn retune_connection(&mut self, window: u64) {
        let change = retune(&mut self.conn_recv, window, &mut self.stats);
        tracing::debug!(side = ?self.side, window, ?change, "connection window tuned");
    }

    /// Measures the round trip again with a PING when the latest sample is
    /// stale. A round trip measured while the path was idle (the
    /// handshake's) misses the queueing a loaded path adds; with it, a
    /// window announced once per loaded round trip, which limits its
    /// stream's rate, looks slow enough to keep, and a stream whose window
    /// did not grow before the queue filled never gets its share of the
    /// budget.
    ///
    /// It goes on whenever the path was found long (the handshake's or a
    /// later sample at least `MIN_TUNED_RTT`), so one short sample (an
    /// idle moment) does not switch the tuning off for good.
    fn refresh_rtt(&mut self, now: Instant) {
        if !self.config.tunes_windows() {
            return;
        }
        let longest = self.tuning.handshake_rtt.max(self.pinger.rtt());
        let Some(rtt) = longest.filter(|&rtt| rtt >= MIN_TUNED_RTT) else {
            return;
        };
        let stale_after = (rtt * RTT_REFRESH_RTTS).max(RTT_REFRESH_MIN);
        let stale = self
            .pinger
            .sampled_at()
            .is_none_or(|at| now.saturating_duration_since(at) >= stale_after);
        if stale && !self.pinger.in_flight() {
            self.ping(now);
        }
    }

    /// This side's SETTINGS went out at `now`.
    pub(super) fn note_settings_sent(&mut self, now: Instant) {
        self.tuning.settings_sent_at = Some(now);
    }

    /// The peer acknowledged this side's SETTINGS at `now`: one round trip.
    pub(super) fn note_settings_acked(&mut self, now: Instant) {
        if let Some(sent) = self.tuning.settings_sent_at.take() {
            self.tuning.handshake_rtt = Some(now.saturating_duration_since(sent));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(window: u64) -> RecvCredit {
        RecvCredit::new(window)
    }

    const RTT: Duration = Duration::from_millis(50);

    #[test]
    fn a_window_announced_within_one_and_a_half_round_trips_grows_fourfold_up_to_its_maximum() {
        let ms = Duration::from_millis;
        assert_eq!(
            tuned(&credit(1 << 20), ms(20), RTT, 1 << 20, 16 << 20),
            Some(4 << 20)
        );
        assert_eq!(
            tuned(&credit(8 << 20), ms(20), RTT, 1 << 20, 16 << 20),
            Some(16 << 20)
        );
        assert_eq!(
            tuned(&credit(16 << 20), ms(20), RTT, 1 << 20, 16 << 20),
            None
        );
    }

    #[test]
    fn a_window_between_one_and_a_half_and_four_round_trips_stays() {
        for since in [RTT * 3 / 2, RTT * 2, RTT * 4] {
            assert_eq!(tuned(&credit(4 << 20), since, RTT, 1 << 20, 16 << 20), None);
        }
    }

    #[test]
    fn a_window_announced_after_four_round_trips_halves_down_to_its_minimum() {
        let long = RTT * 5;
        assert_eq!(
            tuned(&credit(8 << 20), long, RTT, 1 << 20, 16 << 20),
            Some(4 << 20)
        );
        assert_eq!(
            tuned(&credit(3 << 19), long, RTT, 1 << 20, 16 << 20),
            Some(1 << 20)
        );
        assert_eq!(tuned(&credit(1 << 20), long, RTT, 1 << 20, 16 << 20), None);
    }
}
