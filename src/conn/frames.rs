//! What each frame from the peer does (SPEC §6, §8, §9, §11.3): the
//! per-frame handlers, with the credit and flood accounting they share.

use std::time::Instant;

use bytes::Bytes;

use super::flood::Flood;
use super::stream::{Queued, RecvState, SendState, StreamState};
use super::timer::Timer;
use super::{Closed, Connection, Phase};
use crate::error::Initiator;
use crate::frame::{
    Blocked, BlockedOn, ErrorCode, Frame, MAX_STREAMS, Reset, ResetScope, StreamId, WindowUpdate,
};

/// Received payloads smaller than this are copied out of the read buffer,
/// so a small retained chunk cannot pin a large read allocation.
const COPY_BELOW: usize = 4096;

/// A DATA payload as it reaches [`Connection::on_data`].
pub(super) enum Payload {
    /// Bytes for the stream's receive buffer.
    Buffered(Bytes),
    /// This many bytes, read from the transport straight into the
    /// reader's buffer (see `commit_direct_payload`): the application has
    /// them already.
    Delivered(u64),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Buffered(bytes) => bytes.len() as u64,
            Payload::Delivered(n) => *n,
        }
    }
}

impl Connection {
    pub(super) fn count_flood(&mut self, now: Instant, what: Flood) {
        if let Err(what) = self.flood.count(now, what) {
            self.protocol_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                format!("flood limit exceeded: {}", what.name()),
            );
        }
    }

    /// A control frame for a stream this side does not hold: a protocol
    /// error if the id was never opened (SPEC §8.5), a stray frame on a
    /// closed and forgotten id otherwise (§16.1).
    pub(super) fn on_unheld_stream(&mut self, now: Instant, id: StreamId, kind: &str) {
        if self.is_idle(id) {
            self.protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                format!("{kind} on idle stream {id}"),
            );
        } else {
            self.count_flood(now, Flood::StrayFrame);
        }
    }

    /// True for ids no stream was ever opened on (SPEC §8.2).
    pub(super) fn is_idle(&self, id: StreamId) -> bool {
        if self.side.owns(id) {
            id.index() >= self.next_local_index
        } else {
            id.index() >= self.next_peer_index
        }
    }

    pub(super) fn on_frame(&mut self, now: Instant, frame: Frame) {
        if self.handshake.peer.is_none() && !matches!(frame, Frame::Settings(ref s) if !s.ack) {
            // SPEC §4: the first frame after the preface MUST be SETTINGS.
            self.protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "the first frame after the preface must be SETTINGS",
            );
            return;
        }
        match frame {
            Frame::Settings(settings) if settings.ack => {
                if self.handshake.settings_acked || !self.handshake.preface_sent {
                    self.protocol_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "unexpected SETTINGS acknowledgement",
                    );
                    return;
                }
                self.handshake.settings_acked = true;
                self.note_settings_acked(now);
                self.check_established();
            }
            Frame::Settings(settings) => {
                if self.handshake.peer.is_some() {
                    // SPEC §4: settings are fixed for the life of a connection.
                    self.protocol_error(ErrorCode::PROTOCOL_ERROR, "second SETTINGS frame");
                    return;
                }
                self.apply_peer_settings(&settings.values);
                self.owed.settings_ack = true;
                self.check_established();
            }
            Frame::Data(data) => {
                self.on_data(now, data.stream, data.fin, Payload::Buffered(data.payload))
            }
            Frame::WindowUpdate(update) => self.on_window_update(now, update),
            Frame::MaxStreams(max) => {
                let limit = max.count.min(u64::from(MAX_STREAMS.max));
                let answers_probe = std::mem::take(&mut self.probes.open_unanswered);
                if self.open_send.raise(limit) {
                    self.probes.open = None;
                    self.conn_event = true;
                } else if !answers_probe {
                    // SPEC §16.1: only the answer to a BLOCKED STREAMS sent
                    // since the last MAX_STREAMS may repeat the limit.
                    self.count_flood(now, Flood::UselessUpdate);
                }
            }
            Frame::Blocked(blocked) => self.on_blocked(now, blocked),
            Frame::Reset(reset) => self.on_reset(now, reset),
            Frame::Ping(ping) if ping.ack => {
                if self.pinger.on_ack(now, ping.payload) {
                    self.conn_event = true;
                } else {
                    // SPEC §16.1: an ACK matching no unanswered PING counts
                    // like a PING.
                    self.count_flood(now, Flood::Ping);
                }
            }
            Frame::Ping(ping) => {
                self.count_flood(now, Flood::Ping);
                // SPEC §12.1: one owed ack; the newest payload wins.
                self.pinger.on_ping(ping.payload);
            }
            Frame::GoAway(goaway) => self.on_goaway(goaway),
            Frame::PriorityUpdate(update) => self.on_priority_update(now, update),
        }
    }

    pub(super) fn check_established(&mut self) {
        if self.phase == Phase::Handshake
            && self.handshake.peer.is_some()
            && self.handshake.settings_acked
        {
            self.phase = Phase::Open;
            self.timers.stop(Timer::Handshake);
            self.conn_event = true;
        }
    }

    pub(super) fn on_data(&mut self, now: Instant, id: StreamId, fin: bool, payload: Payload) {
        let n = payload.len();
        // SPEC §16.1: empty DATA without FIN that opens no stream does
        // nothing, whatever the state of its stream.
        let no_op = n == 0 && !fin;
        let mut opened = false;
        if !self.streams.contains_key(&id) {
            if self.is_idle(id) {
                if self.side.owns(id) {
                    self.protocol_error(
                        ErrorCode::PROTOCOL_ERROR,
                        format!("DATA on stream {id}, which this side never opened"),
                    );
                    return;
                }
                if !self.open_peer_stream(id, n) {
                    return;
                }
                opened = true;
            } else {
                // A stream closed and forgotten: count the bytes, release at once.
                self.discard_data(n);
                self.count_closed_stream_data(now, n, no_op);
                return;
            }
        }
        if !self.receive_credit(id, n) {
            return;
        }
        self.stats.data_bytes_received += n;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.is_closed() {
            // SPEC §8.4 [e]: counted toward connection credit above,
            // released at once and dropped; no RESET on a closed stream.
            self.release_conn_credit(n);
            self.count_closed_stream_data(now, n, no_op);
            return;
        }
        stream.peer_frame(now);
        if stream.recv == RecvState::Discarding {
            // Nobody reads this stream any more: the bytes are dropped on
            // arrival and their credit, stream and connection, returned.
            if stream.recv_credit.release(n) {
                stream.owe_window_update = true;
                self.queue_control(id);
            }
            if fin {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.recv = RecvState::Finished;
                    stream.half_closed_at = None;
                    if stream.send == SendState::Finished {
                        self.count_closed(Closed::Completed);
                    }
                }
                self.maybe_reap(id);
            }
            self.release_conn_credit(n);
            if no_op {
                self.count_flood(now, Flood::EmptyData);
            }
            return;
        }
        if let RecvState::Reset(..) = stream.recv {
            // SPEC §8.7.1: this direction was reset while the other goes
            // on; what the peer sent before it saw the RESET is counted,
            // released at once and dropped, as on a closed stream (§8.4 [e]).
            self.release_conn_credit(n);
            self.count_closed_stream_data(now, n, no_op);
            return;
        }
        if stream.recv != RecvState::Open {
            // SPEC §14: DATA after FIN is a stream error.
            self.release_conn_credit(n);
            self.count_flood(now, Flood::Reset);
            self.reset(now, id, ErrorCode::STREAM_CLOSED);
            return;
        }
        let delivered = matches!(payload, Payload::Delivered(_));
        let mut owe_update = false;
        match payload {
            Payload::Buffered(bytes) if n > 0 => {
                let bytes = if bytes.len() < COPY_BELOW {
                    Bytes::copy_from_slice(&bytes)
                } else {
                    bytes
                };
                stream.recv_buf.push_back(bytes);
            }
            Payload::Buffered(_) => {}
            Payload::Delivered(_) => {
                // SPEC §9.4: released as the application has them.
                owe_update = stream.recv_credit.release(n);
                stream.owe_window_update |= owe_update;
            }
        }
        let completed = fin && stream.send == SendState::Finished;
        if fin {
            stream.recv = RecvState::Finished;
            stream.half_closed_at = None;
            if stream.probe.is_none() {
                // The stream may still be blocked sending: its probe stays.
                self.probes.watched.remove(&id);
            }
        }
        if completed {
            self.count_closed(Closed::Completed);
        }
        if delivered {
            if owe_update {
                self.queue_control(id);
            }
            self.release_conn_credit(n);
        }
        if no_op && !opened {
            self.count_flood(now, Flood::EmptyData);
        }
        // Delivered bytes are with the reader already; only their FIN is news.
        if !delivered || fin {
            self.wake(id);
        }
    }

    /// Accounts for `n` DATA payload bytes on the live stream `id`: in the
    /// connection credit, and in the stream credit while the stream still
    /// counts received bytes (not closed, no FIN received). SPEC §9.3:
    /// connection credit is checked first, then stream credit; a frame that
    /// breaks either fails the connection with FLOW_CONTROL_ERROR.
    ///
    /// Both checks come before either count changes. Counting the
    /// connection credit first and then failing on the stream credit left
    /// the frame's bytes in the connection's unreleased total with no stream
    /// holding them, so `recv_buffered` (§9.7 credit conservation) stayed
    /// off by that frame for good, even after every stream was read and
    /// released (found by fuzz target `session`, off by one 520-byte frame).
    pub(super) fn receive_credit(&mut self, id: StreamId, n: u64) -> bool {
        if let Err(err) = self.conn_recv.check(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return false;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        let counts_stream = !stream.is_closed() && stream.recv_open();
        if counts_stream && let Err(err) = stream.recv_credit.receive(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("stream {id}: {err}"));
            return false;
        }
        // Checked above: cannot fail.
        let _ = self.conn_recv.receive(n);
        true
    }

    /// SPEC §16.1: DATA on a closed stream counts as a frame on a closed
    /// id only when empty; non-empty DATA is already bounded by the
    /// connection credit it consumes (§9.3).
    pub(super) fn count_closed_stream_data(&mut self, now: Instant, n: u64, no_op: bool) {
        if n == 0 {
            self.count_flood(now, Flood::StrayFrame);
        }
        if no_op {
            self.count_flood(now, Flood::EmptyData);
        }
    }

    /// Opens the peer stream `id` on its first DATA (SPEC §8.2). Returns
    /// false if the frame was consumed otherwise (refused, or an error).
    pub(super) fn open_peer_stream(&mut self, id: StreamId, n: u64) -> bool {
        let index = id.index();
        if let Err(err) = self.open_recv.receive_up_to(index + 1) {
            self.protocol_error(
                ErrorCode::STREAM_LIMIT_ERROR,
                format!("stream {id} opened beyond the stream limit ({err})"),
            );
            return false;
        }
        // Skipped ids count as opened and closed at once.
        let skipped = index - self.next_peer_index;
        self.release_stream_credit(skipped);
        self.next_peer_index = index + 1;
        // SPEC §8.2 step 3: refused after this side's GOAWAY or beyond the
        // backlog; SPEC §13.2: also a stream the peer opens after its own
        // GOAWAY (which it must not do), so the opener learns it was not
        // processed before this side closes.
        let refuse = self.goaways.going_away()
            || self.phase == Phase::Closed
            || self.queues.accept.len() >= self.config.accept_backlog as usize;
        if refuse {
            // Their bytes still count toward connection credit.
            if let Err(err) = self.conn_recv.receive(n) {
                self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
                return false;
            }
            self.release_conn_credit(n);
            self.release_stream_credit(1);
            // SPEC §16.1: a refusal is not charged to the peer's RESET
            // budget. Refusals are bounded by the stream-count credit, which
            // returns only at the pace MAX_STREAMS grants it (and not at
            // all after this side's GOAWAY); a conformant peer may open
            // every stream it holds credit for while a GOAWAY is in flight.
            self.queue_stray_reset(id, ErrorCode::REFUSED_STREAM);
            return false;
        }
        let send_limit = self.handshake.peer.map_or(0, |p| p.stream_window);
        self.streams.insert(
            id,
            Box::new(StreamState::new(
                send_limit,
                u64::from(self.config.stream_window),
            )),
        );
        self.queues.accept.push_back(id);
        self.conn_event = true;
        true
    }

    pub(super) fn discard_data(&mut self, n: u64) {
        if let Err(err) = self.conn_recv.receive(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return;
        }
        self.stats.data_bytes_received += n;
        self.release_conn_credit(n);
    }

    pub(super) fn queue_stray_reset(&mut self, stream: StreamId, code: ErrorCode) {
        if self.queues.stray_resets.len() >= self.config.max_stray_control as usize {
            self.protocol_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                "too many control frames owed for closed streams",
            );
            return;
        }
        self.queues
            .stray_resets
            .push_back(Reset::both(stream, code));
    }

    pub(super) fn on_window_update(&mut self, now: Instant, update: WindowUpdate) {
        if update.stream.is_connection() {
            let answers_probe = std::mem::take(&mut self.probes.conn_unanswered);
            if self.conn_send.raise(update.limit) {
                if let Some(probe) = self.probes.conn.take() {
                    let blocked = now.saturating_duration_since(probe.since);
                    self.stats.blocked_on_connection += blocked;
                    tracing::debug!(side = ?self.side, ?blocked, "connection credit restored");
                }
                while let Some(id) = self.queues.conn_blocked.pop_front() {
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.queued = Queued::Data;
                        self.queues.data.push(id, stream.priority);
                    }
                }
            } else if !answers_probe {
                // SPEC §16.1: only the answer to a BLOCKED sent since the
                // last WINDOW_UPDATE for the scope may repeat the limit.
                self.count_flood(now, Flood::UselessUpdate);
            }
            return;
        }
        let id = update.stream;
        let Some(stream) = self.streams.get_mut(&id) else {
            self.on_unheld_stream(now, id, "WINDOW_UPDATE");
            return;
        };
        if stream.is_closed() {
            // SPEC §8.4: ignored on a closed stream; counted (§16.1).
            self.count_flood(now, Flood::StrayFrame);
            return;
        }
        stream.peer_frame(now);
        let answers_probe = std::mem::take(&mut stream.blocked_unanswered);
        if stream.send_credit.raise(update.limit) {
            self.end_stream_probe(now, id, true);
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            // A large write waits for credit with nothing buffered (see
            // `wait_for_credit`); buffered bytes wake it as they go out.
            let wake_writer = stream.writer_waiting && stream.send_buffered == 0;
            if wake_writer {
                stream.writer_waiting = false;
                self.wake(id);
            }
            self.schedule_data(id);
        } else if !answers_probe {
            self.count_flood(now, Flood::UselessUpdate);
        }
    }

    pub(super) fn on_blocked(&mut self, now: Instant, blocked: Blocked) {
        self.count_flood(now, Flood::Blocked);
        self.stats.probes_answered += 1;
        // SPEC §11: every probe is answered with the current limit, even if
        // unchanged; the owed frame is coalesced.
        match blocked.on {
            BlockedOn::Connection => self.owed.window_update = true,
            BlockedOn::StreamCount => self.owed.max_streams = true,
            BlockedOn::Stream(id) => {
                match self.streams.get_mut(&id) {
                    Some(stream) if stream.is_closed() => {
                        // SPEC §6.5: ignored; a frame on a closed id (§16.1).
                        self.count_flood(now, Flood::StrayFrame);
                    }
                    Some(stream) => {
                        // SPEC §12.4: a peer blocked by our credit keeps a
                        // half-closed(local) stream alive.
                        stream.peer_frame(now);
                        if stream.recv_open() {
                            stream.owe_window_update = true;
                            self.queue_control(id);
                        }
                    }
                    None => self.on_unheld_stream(now, id, "BLOCKED"),
                }
            }
        }
    }

    pub(super) fn on_reset(&mut self, now: Instant, reset: Reset) {
        self.stats.resets_received.add(reset.code);
        let id = reset.stream;
        // SPEC §16.1: RESETs on streams the peer opened are counted (rapid
        // reset). One on a stream this side opened is bounded by this
        // side's own opens (one per stream; later ones are stray frames):
        // a peer refusing the streams opened while its GOAWAY was on the
        // way is no flood.
        if !self.side.owns(id) {
            self.count_flood(now, Flood::Reset);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            self.on_unheld_stream(now, id, "RESET");
            return;
        };
        // SPEC §6.6: ignored on a closed stream, so data the application
        // has not read yet stays readable (§8.6); likewise a RESET whose
        // every direction already ended here.
        let aborts = match reset.scope {
            ResetScope::Both => !stream.is_closed(),
            // The peer's sending direction: this side's receiving one.
            ResetScope::Send => stream.recv_open(),
            // The peer's receiving direction: this side's sending one.
            ResetScope::Receive => stream.send_open(),
        };
        if !aborts {
            self.count_flood(now, Flood::StrayFrame);
            return;
        }
        tracing::debug!(
            side = ?self.side,
            stream = %id,
            code = %reset.code,
            scope = ?reset.scope,
            "stream reset by the peer"
        );
        let first = stream.reset().is_none();
        match reset.scope {
            ResetScope::Both => self.close_by_peer(id, reset.code),
            ResetScope::Send => {
                self.recv_reset_by_peer(id, reset.code);
                self.after_reset_by_peer(id, first);
            }
            ResetScope::Receive => {
                self.send_reset_by_peer(now, id, reset.code);
                self.after_reset_by_peer(id, first);
            }
        }
        self.maybe_reap(id);
    }

    /// The peer ended stream `id`, by RESET or by a GOAWAY that did not
    /// process it: both directions stop, unread data is released (SPEC
    /// §8.7, §9.7) and nothing is sent in reply.
    pub(super) fn close_by_peer(&mut self, id: StreamId, code: ErrorCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let first = stream.reset().is_none();
        // Writes fail with the peer's code, even after this side's FIN.
        if !matches!(stream.send, SendState::Reset(..)) {
            stream.send = SendState::Reset(code, Initiator::Remote);
        }
        self.drop_send(id);
        // SPEC §8.7: after the peer's FIN its direction is complete, and its
        // bytes stay readable; otherwise they go.
        self.recv_reset_by_peer(id, code);
        self.stop_watching(id);
        if first {
            self.count_closed(Closed::ResetRemote);
        }
        self.wake(id);
    }

    /// The peer aborted its sending direction of `id` (RESET, or RESET
    /// SEND): unless its FIN already arrived, unread bytes go and reads
    /// fail with `code` (SPEC §8.7, §8.7.1).
    fn recv_reset_by_peer(&mut self, id: StreamId, code: ErrorCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.recv_open() {
            return;
        }
        stream.recv = RecvState::Reset(code, Initiator::Remote);
        let discarded = self.drop_recv(id);
        self.release_conn_credit(discarded);
    }

    /// The peer stopped reading `id` (RESET RECEIVE, SPEC §8.7.1): unsent
    /// bytes go and writes fail with `code`; the stream probes no more.
    fn send_reset_by_peer(&mut self, now: Instant, id: StreamId, code: ErrorCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.send = SendState::Reset(code, Initiator::Remote);
        self.drop_send(id);
        self.end_stream_probe(now, id, false);
    }

    /// After a RESET for one direction of `id`: a stream now closed stops
    /// its half-close watch, a receive direction that ended stops waiting
    /// for the peer's FIN (SPEC §12.4), the stream is counted if this was
    /// its `first` reset, and the application hears of it.
    fn after_reset_by_peer(&mut self, id: StreamId, first: bool) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.is_closed() {
            self.stop_watching(id);
        } else if !stream.recv_open() {
            stream.half_closed_at = None;
        }
        if first {
            self.count_closed(Closed::ResetRemote);
        }
        self.wake(id);
    }
}
