//! The zero-window probe (SPEC §11) and the half-close timeout (§12.4):
//! which scopes are blocked, when their BLOCKED goes out, with backoff and
//! the sender's budget.

use std::time::Instant;

use super::Connection;
use super::stream::Probe;
use super::timer::Timer;
use crate::frame::{ErrorCode, StreamId};

impl Connection {
    /// Sends due probes and half-close resets, and re-arms the probe timer.
    pub(super) fn run_probes(&mut self, now: Instant) {
        let interval_cap = self.config.probe_max;
        let mut next: Option<Instant> = None;
        let mut earliest = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        if self.probes.conn.is_some()
            && !self.data_waits_on_connection()
            && let Some(probe) = self.probes.conn.take()
        {
            // SPEC §11.1: blocked on the connection only while a stream
            // waits for its credit; the ones that did were reset since.
            let blocked = now.saturating_duration_since(probe.since);
            self.stats.blocked_on_connection += blocked;
            tracing::debug!(side = ?self.side, ?blocked, "connection credit wait ended: no stream waits");
        }
        // SPEC §11.2: at most 50 BLOCKED in any 1 s; probes beyond that
        // wait for the budget. The connection and stream-count probes go
        // first: every stream waits on them.
        if let Some(probe) = &mut self.probes.conn {
            if probe.next_at <= now && self.probes.budget.try_take(now) {
                self.owed.blocked_connection = true;
                self.stats.probes_sent += 1;
                probe.backoff(now, interval_cap);
                tracing::debug!(side = ?self.side, scope = "connection", "probe sent (BLOCKED)");
            }
            earliest(probe.next_at.max(self.probes.budget.available_at(now)));
        }
        if let Some(probe) = &mut self.probes.open {
            if probe.next_at <= now && self.probes.budget.try_take(now) {
                self.owed.blocked_streams = true;
                self.stats.probes_sent += 1;
                probe.backoff(now, interval_cap);
                tracing::debug!(side = ?self.side, scope = "stream count", "probe sent (BLOCKED)");
            }
            earliest(probe.next_at.max(self.probes.budget.available_at(now)));
        }
        let ids: Vec<StreamId> = self.probes.watched.keys().copied().collect();
        let half_close = self.config.half_close_timeout;
        let mut due: Vec<(Instant, StreamId)> = Vec::new();
        let mut expired: Vec<StreamId> = Vec::new();
        for id in ids {
            let Some(stream) = self.streams.get_mut(&id) else {
                self.probes.watched.remove(&id);
                continue;
            };
            let mut watched = false;
            if let Some(probe) = &stream.probe {
                watched = true;
                if probe.next_at <= now {
                    due.push((probe.next_at, id));
                } else {
                    earliest(probe.next_at);
                }
            }
            if let (Some(at), Some(timeout)) = (stream.half_closed_at, half_close) {
                watched = true;
                if at + timeout <= now {
                    expired.push(id);
                } else {
                    earliest(at + timeout);
                }
            }
            if !watched {
                self.probes.watched.remove(&id);
            }
        }
        for id in expired {
            tracing::debug!(side = ?self.side, stream = %id, "half-close timeout");
            // SPEC §12.4. A RESET on this side's own timer is no reaction
            // to a peer frame: it does not count toward the flood limit
            // (§16.1), or many streams timing out at once would end the
            // connection.
            self.reset(now, id, ErrorCode::STREAM_TIMEOUT);
        }
        // Deferred probes go oldest first, so with more blocked streams
        // than the budget each still gets its turn.
        due.sort_unstable();
        for (_, id) in due {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            let Some(probe) = &mut stream.probe else {
                continue;
            };
            if !self.probes.budget.try_take(now) {
                earliest(self.probes.budget.available_at(now));
                break;
            }
            probe.backoff(now, interval_cap);
            earliest(probe.next_at);
            stream.owe_blocked = true;
            stream.stats.probes_sent = stream.stats.probes_sent.saturating_add(1);
            self.stats.probes_sent += 1;
            tracing::debug!(side = ?self.side, stream = %id, "probe sent (BLOCKED)");
            self.queue_control(id);
        }
        if let Some(at) = next {
            self.timers.set(Timer::Probe, at);
        }
    }

    /// Starts the probe of a stream stuck on zero stream credit.
    pub(super) fn start_stream_probe(&mut self, now: Instant, id: StreamId) {
        let interval = self.config.probe_interval;
        if let Some(stream) = self.streams.get_mut(&id)
            && stream.probe.is_none()
        {
            stream.probe = Some(Box::new(Probe::start(now, interval)));
            stream.stats.zero_window_events = stream.stats.zero_window_events.saturating_add(1);
            tracing::debug!(
                side = ?self.side,
                stream = %id,
                limit = stream.send_credit.limit(),
                "stream credit exhausted"
            );
            self.stats.zero_window_events += 1;
            self.probes.watched.insert(id, ());
            self.arm_probe_timer(now + interval);
        }
    }

    /// Ends the zero-window probe of stream `id`, if one runs: credit
    /// came (`restored`), or nothing is left to send (SPEC §11.1).
    pub(super) fn end_stream_probe(&mut self, now: Instant, id: StreamId, restored: bool) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(probe) = stream.probe.take() {
            let blocked = now.saturating_duration_since(probe.since);
            stream.stats.blocked_on_stream_ns = stream
                .stats
                .blocked_on_stream_ns
                .saturating_add(u64::try_from(blocked.as_nanos()).unwrap_or(u64::MAX));
            if restored {
                tracing::debug!(side = ?self.side, stream = %id, ?blocked, "stream credit restored");
            } else {
                tracing::debug!(side = ?self.side, stream = %id, ?blocked, "stream credit wait ended: nothing left to send");
            }
            if stream.half_closed_at.is_none() {
                self.probes.watched.remove(&id);
            }
        }
    }

    /// Whether data waits on connection credit (SPEC §11.1): a stream in
    /// the connection-credit queue, or one in the DATA queue that holds
    /// data and stream credit while the connection has none (it has not
    /// had its turn since the credit ran out; the next transmit moves it to
    /// the connection-credit queue). The scan stops at the first such
    /// stream; it is the first in the queue unless streams with only an
    /// opening frame or a FIN to send lead it.
    pub(super) fn data_waits_on_connection(&self) -> bool {
        if !self.queues.conn_blocked.is_empty() {
            return true;
        }
        self.conn_send.available() == 0
            && self.queues.data.iter().any(|id| {
                self.streams
                    .get(id)
                    .is_some_and(|s| s.send_buffered > 0 && s.send_credit.available() > 0)
            })
    }

    /// Starts the probe of the connection credit.
    pub(super) fn start_connection_probe(&mut self, now: Instant) {
        if self.probes.conn.is_none() {
            self.probes.conn = Some(Probe::start(now, self.config.probe_interval));
            self.stats.zero_window_events += 1;
            tracing::debug!(
                side = ?self.side,
                limit = self.conn_send.limit(),
                "connection credit exhausted"
            );
            self.arm_probe_timer(now + self.config.probe_interval);
        }
    }

    /// Watches a half-closed stream for the half-close timeout.
    pub(super) fn watch_half_close(&mut self, now: Instant, id: StreamId) {
        let Some(timeout) = self.config.half_close_timeout else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&id)
            && !stream.recv_done()
        {
            stream.half_closed_at = Some(now);
            self.probes.watched.insert(id, ());
            self.arm_probe_timer(now + timeout);
        }
    }
}
