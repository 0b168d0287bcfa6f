//! The end of a connection (SPEC §13, §14.2): GOAWAY sent and received,
//! the graceful drain and its deadline, and failure.

use std::time::Instant;

use bytes::Bytes;

use super::stream::Queued;
use super::timer::Timer;
use super::{Connection, Phase};
use crate::error::ConnectionError;
use crate::frame::{ErrorCode, GoAway, StreamId};

use super::goaway::MAX_GOAWAYS_RECEIVED;

impl Connection {
    /// SPEC §13.2: the drain timeout of a graceful close expired. The
    /// streams still open are reset with CANCEL; the connection ends once
    /// those RESETs are written (`check_drained`, after `poll_transmit`).
    pub(super) fn drain_deadline(&mut self, now: Instant) {
        tracing::debug!(side = ?self.side, "drain timeout");
        let open: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in open {
            self.reset(now, id, ErrorCode::CANCEL);
            self.stats.streams_cancelled_at_drain += 1;
        }
        self.check_drained();
    }

    pub(super) fn on_goaway(&mut self, goaway: GoAway) {
        let Ok(last) = self.goaways.receive(goaway.last_stream, goaway.code) else {
            // SPEC §16.1: GOAWAY is capped per connection.
            self.protocol_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                format!("more than {MAX_GOAWAYS_RECEIVED} GOAWAY frames"),
            );
            return;
        };
        tracing::debug!(
            side = ?self.side,
            code = %goaway.code,
            last_stream = %last,
            "GOAWAY received"
        );
        self.conn_event = true;
        // SPEC §13.2: open() fails from now on; nothing waits for
        // stream-count credit, so nothing probes for it.
        self.probes.open = None;
        // SPEC §13.1: streams this side opened above `last` were not
        // processed, in a graceful or an error GOAWAY alike: they fail with
        // REFUSED_STREAM and may be retried on a new connection.
        let refused: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|&(&id, s)| self.side.owns(id) && id > last && s.reset().is_none())
            .map(|(&id, _)| id)
            .collect();
        for &id in &refused {
            self.close_by_peer(id, ErrorCode::REFUSED_STREAM);
        }
        if goaway.code != ErrorCode::NO_ERROR {
            let debug =
                String::from_utf8_lossy(&goaway.debug[..goaway.debug.len().min(1024)]).into_owned();
            self.fail(ConnectionError::ClosedByPeer {
                code: goaway.code,
                debug,
            });
            return;
        }
        for id in refused {
            self.maybe_reap(id);
        }
        if self.phase != Phase::Closed {
            self.phase = Phase::Draining;
            self.check_drained();
        }
    }

    /// Starts closing: sends GOAWAY with `code`. With NO_ERROR, streams in
    /// flight finish first (bounded by the drain timeout); with another
    /// code the connection ends as soon as the GOAWAY is written.
    pub fn close(&mut self, now: Instant, code: ErrorCode, debug: &[u8]) {
        self.now = now;
        if self.phase == Phase::Closed {
            return;
        }
        self.send_goaway(code, debug);
        if code == ErrorCode::NO_ERROR && self.handshake.preface_received {
            self.phase = Phase::Draining;
            self.timers
                .set(Timer::Drain, now + self.config.drain_timeout);
            self.refuse_backlog(now);
            self.check_drained();
        } else {
            self.fail(ConnectionError::LocallyClosed { code });
        }
    }

    pub(super) fn send_goaway(&mut self, code: ErrorCode, debug: &[u8]) {
        let last = if self.next_peer_index == 0 {
            StreamId::CONNECTION
        } else {
            self.side
                .peer()
                .id_at(self.next_peer_index - 1)
                .unwrap_or(StreamId::MAX)
        };
        let Some(last) = self.goaways.send(last, code) else {
            return;
        };
        // SPEC §5.2, §4.2: the frame fits the peer's MAX_FRAME_PAYLOAD, or
        // 1024 bytes before its SETTINGS; receivers keep at most 1024 bytes
        // of debug data anyway (§6.8).
        let max_payload = self.handshake.peer.map_or(1024, |p| p.max_frame_payload);
        let max_debug = max_payload.saturating_sub(8).min(1024);
        let debug = &debug[..debug.len().min(max_debug)];
        tracing::debug!(side = ?self.side, %code, last_stream = %last, "GOAWAY sent");
        self.owed.goaway = Some(GoAway {
            last_stream: last,
            code,
            debug: Bytes::copy_from_slice(debug),
        });
        self.conn_event = true;
    }

    /// Streams in the accept backlog when this side stops accepting are
    /// refused: the peer may retry them elsewhere.
    pub(super) fn refuse_backlog(&mut self, now: Instant) {
        while let Some(id) = self.queues.accept.pop_front() {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.released = true;
            }
            self.reset(now, id, ErrorCode::REFUSED_STREAM);
        }
    }

    /// In a graceful shutdown, ends the connection once every stream is
    /// closed (SPEC §13.2; the application may still hold some, with unread
    /// data, which stays readable) and every frame owed for them is
    /// written: a DATA frame or FIN still queued, an opening frame, a RESET
    /// (the drain deadline's CANCEL among them).
    pub(super) fn check_drained(&mut self) {
        if self.phase != Phase::Draining {
            return;
        }
        let drained = self.queues.control.is_empty()
            && self.queues.stray_resets.is_empty()
            && self.queues.data.is_empty()
            && self
                .streams
                .values()
                .all(|s| s.is_closed() && !s.needs_open);
        if drained {
            let err = if self.goaways.sent() {
                ConnectionError::LocallyClosed {
                    code: ErrorCode::NO_ERROR,
                }
            } else {
                ConnectionError::ClosedByPeer {
                    code: ErrorCode::NO_ERROR,
                    debug: String::new(),
                }
            };
            self.fail(err);
        }
    }

    /// Ends the connection with `err`: every stream and waiter sees it.
    /// Buffered received bytes stay readable.
    pub(super) fn fail(&mut self, err: ConnectionError) {
        if self.phase == Phase::Closed {
            return;
        }
        tracing::debug!(side = ?self.side, error = %err, "connection ended");
        self.phase = Phase::Closed;
        self.error = Some(err);
        self.timers.close();
        self.queues.data.clear();
        self.queues.conn_blocked.clear();
        self.queues.control.clear();
        self.queues.stray_resets.clear();
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.queued = Queued::No;
                stream.in_control_queue = false;
                stream.owe_window_update = false;
                stream.owe_blocked = false;
                stream.owe_reset = false;
                stream.owe_stop = false;
                stream.clear_send();
            }
            self.wake(id);
        }
        self.conn_event = true;
    }

    /// Connection error detected locally: GOAWAY with `code`, then end.
    pub(super) fn protocol_error(&mut self, code: ErrorCode, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(side = ?self.side, %code, %reason, "closing the connection on a protocol error");
        self.send_goaway(code, reason.as_bytes());
        self.fail(ConnectionError::ProtocolViolation { code, reason });
    }
}
