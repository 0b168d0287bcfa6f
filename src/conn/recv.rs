//! Inputs of the sans-IO connection: bytes from the transport, its end,
//! and timer expiry.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::flood::Flood;
use super::stream::{Probe, Queued, StreamState};
use super::timer::Timer;
use super::{Closed, Connection, Phase};
use crate::error::{ConnectionError, Initiator};
use crate::frame::{
    Blocked, BlockedOn, Decoded, ErrorCode, Frame, GoAway, MAX_STREAMS, PREFACE_LEN, PrefaceError,
    Reset, StreamId, WindowUpdate, decode_preface,
};

/// Received payloads smaller than this are copied out of the read buffer,
/// so a small retained chunk cannot pin a large read allocation.
const COPY_BELOW: usize = 4096;

/// A DATA payload as it reaches [`Connection::on_data`].
enum Payload {
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

/// GOAWAY frames accepted per connection (SPEC §16.1); a conformant peer
/// sends at most 5 (§13.2).
const MAX_GOAWAYS_RECEIVED: u32 = 10;

impl Connection {
    /// Feeds bytes read from the transport. Consumes every complete frame
    /// from `buf`; a partial frame stays for the next call.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        if self.phase == Phase::Closed {
            buf.clear();
            return;
        }
        self.now = now;
        // Bytes of a partial frame left in `buf` by the previous call were
        // counted then (found by fuzz target `session`: they were counted
        // again on every call until the frame completed).
        let carried = std::mem::take(&mut self.input_carried);
        self.stats.transport_bytes_received += buf.len().saturating_sub(carried) as u64;
        self.touch(now);
        if !self.preface_received {
            match decode_preface(buf) {
                Ok(None) => {
                    self.input_carried = buf.len();
                    return;
                }
                Ok(Some(_)) => {
                    buf.advance(PREFACE_LEN);
                    self.preface_received = true;
                }
                Err(err) => {
                    if let PrefaceError::UnsupportedVersion { .. } = err {
                        // SPEC §3: answer in version-1 framing, then close.
                        self.send_goaway(ErrorCode::VERSION_MISMATCH, b"supported: 1");
                    }
                    buf.clear();
                    self.fail(ConnectionError::Preface(err));
                    return;
                }
            }
        }
        let frames_before = self.stats.frames_received;
        while self.phase != Phase::Closed {
            match self.decoder.decode_next(buf) {
                Ok(None) => {
                    self.take_data_part(now, buf);
                    self.input_carried = buf.len();
                    let partial = !buf.is_empty() || self.decoder.data_in_progress().is_some();
                    let completed = self.stats.frames_received > frames_before;
                    self.track_partial_frame(now, partial, completed);
                    return;
                }
                Ok(Some(Decoded::Frame(frame))) => {
                    self.stats.frames_received += 1;
                    self.on_frame(now, frame);
                }
                Ok(Some(Decoded::Ignored(_))) => {
                    self.stats.frames_received += 1;
                    if self.peer.is_none() {
                        // SPEC §4.1 rule 2, §5.4: an unknown frame type is
                        // no exception to SETTINGS coming first.
                        self.protocol_error(
                            ErrorCode::PROTOCOL_ERROR,
                            "the first frame after the preface must be SETTINGS",
                        );
                    } else {
                        self.count_flood(now, Flood::UnknownFrame);
                    }
                }
                Err(err) => {
                    self.send_goaway(err.code(), err.to_string().as_bytes());
                    self.fail(ConnectionError::Frame(err));
                }
            }
        }
        buf.clear();
    }

    /// Delivers the part of an incomplete DATA payload that `buf` holds,
    /// for an open stream still receiving: its reader gets the bytes now,
    /// and the rest may then be read straight into the reader's buffer
    /// (see [`commit_direct_payload`](Connection::commit_direct_payload)).
    /// Frames for streams in any other state (including the frame that
    /// opens a stream) stay whole, as before.
    fn take_data_part(&mut self, now: Instant, buf: &mut BytesMut) {
        let Some((id, rest)) = self.decoder.data_in_progress() else {
            return;
        };
        if buf.is_empty() || !self.streams.get(&id).is_some_and(|s| s.takes_data()) {
            return;
        }
        if !self.whole_frame_fits(id, rest) {
            buf.clear();
            return;
        }
        if let Some(part) = self.decoder.take_data_part(buf) {
            self.on_data(now, id, false, Payload::Buffered(part.payload));
        }
    }

    /// Before any part of a DATA frame is handed out: its whole length
    /// must be within the credit announced (SPEC §9.3), as it would be
    /// checked on the complete frame, so credit announced while the frame
    /// arrives cannot cover a frame sent beyond it. Fails the connection
    /// with FLOW_CONTROL_ERROR otherwise.
    fn whole_frame_fits(&mut self, id: StreamId, rest: usize) -> bool {
        if self.decoder.data_part_taken() {
            return true;
        }
        let n = rest as u64;
        if let Err(err) = self.conn_recv.check(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return false;
        }
        let Some(stream) = self.streams.get(&id) else {
            return false;
        };
        if let Err(err) = stream.recv_credit.check(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("stream {id}: {err}"));
            return false;
        }
        true
    }

    /// How many bytes of stream `id` the caller may read from the
    /// transport straight into its own buffer: the rest of the DATA
    /// payload in progress, if it belongs to `id`, the stream is being
    /// read and has nothing buffered. 0 otherwise. The caller also makes
    /// sure no input it read earlier is still waiting to be handled.
    pub fn direct_payload(&self, id: StreamId) -> usize {
        if self.phase == Phase::Closed || self.error.is_some() {
            return 0;
        }
        let Some((sid, rest)) = self.decoder.data_in_progress() else {
            return 0;
        };
        match self.streams.get(&id) {
            Some(stream) if sid == id && stream.takes_data() && stream.recv_buf.is_empty() => rest,
            _ => 0,
        }
    }

    /// Accounts for `n` payload bytes of stream `id`, within
    /// [`direct_payload`](Connection::direct_payload), that the caller read
    /// from the transport into the application's buffer: exactly as if
    /// they had arrived in a DATA frame and been read at once (credit
    /// checked, then released). Returns false if they must not be
    /// delivered: they break the peer's credit (the connection fails with
    /// FLOW_CONTROL_ERROR, as it would for the frame).
    pub fn commit_direct_payload(&mut self, now: Instant, id: StreamId, n: usize) -> bool {
        let rest = self.direct_payload(id);
        if n == 0 || n > rest {
            return false;
        }
        self.now = now;
        self.touch(now);
        // Read from the transport, whatever becomes of them.
        self.stats.transport_bytes_received += n as u64;
        if !self.whole_frame_fits(id, rest) {
            return false;
        }
        let done = self.decoder.consume_data_payload(n);
        if done.is_some() {
            self.stats.frames_received += 1;
            // The caller had no other input waiting: it ends on a boundary.
            self.track_partial_frame(now, false, true);
        }
        let fin = done == Some(true);
        self.on_data(now, id, fin, Payload::Delivered(n as u64));
        // `direct_payload` said the stream takes data: only a credit
        // violation, which fails the connection, keeps the bytes back.
        self.error.is_none()
    }

    /// The transport reached end of file.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let all_closed = self
            .streams
            .values()
            .all(|s| s.reset.is_some() || (s.fin_sent && s.fin_received));
        if self.goaway_received.is_some() {
            self.fail(ConnectionError::ClosedByPeer {
                code: ErrorCode::NO_ERROR,
                debug: String::new(),
            });
        } else if self.goaway_sent && self.phase == Phase::Draining && all_closed {
            // SPEC §13.2: the receiver of our graceful GOAWAY closes the
            // transport, without a GOAWAY of its own, once its streams are
            // closed. With ours closed too, that end of input completes the
            // shutdown we started; streams the application still holds only
            // kept us from closing first.
            self.fail(ConnectionError::LocallyClosed {
                code: ErrorCode::NO_ERROR,
            });
        } else {
            self.fail(ConnectionError::TransportClosed);
        }
    }

    /// The transport failed.
    pub fn handle_transport_error(&mut self, err: ConnectionError) {
        self.fail(err);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for timer in self.timers.expired(now) {
            if self.phase == Phase::Closed {
                // An earlier timer of this call ended the connection: the
                // others, already taken off the table, must not run and
                // re-arm themselves (found by fuzz target `session`).
                break;
            }
            match timer {
                Timer::Handshake => {
                    if !self.is_established() {
                        self.send_goaway(ErrorCode::SETTINGS_TIMEOUT, b"handshake timed out");
                        self.fail(ConnectionError::HandshakeTimeout);
                    }
                }
                Timer::KeepAlive => self.ping(),
                Timer::Idle => {
                    // SPEC §12.2: nothing received within interval + timeout.
                    self.send_goaway(
                        ErrorCode::IDLE_TIMEOUT,
                        b"nothing received within the idle timeout",
                    );
                    self.fail(ConnectionError::IdleTimeout);
                }
                Timer::Probe => self.run_probes(now),
                Timer::PingPace => self.send_deferred_ping(now),
                Timer::Drain => self.drain_deadline(),
                Timer::Frame => {
                    // SPEC §12.2: a frame that does not complete within the
                    // frame timeout (a peer trickling bytes to look alive).
                    let timeout = self.config.frame_timeout.unwrap_or_default();
                    self.protocol_error(
                        ErrorCode::IDLE_TIMEOUT,
                        format!("a frame stayed incomplete for {timeout:?}"),
                    );
                }
            }
        }
    }

    /// SPEC §13.2: the drain timeout of a graceful close expired. The
    /// streams still open are reset with CANCEL; the connection ends once
    /// those RESETs are written (`check_drained`, after `poll_transmit`).
    fn drain_deadline(&mut self) {
        let open: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in open {
            self.reset(id, ErrorCode::CANCEL);
            self.stats.streams_cancelled_at_drain += 1;
        }
        self.check_drained();
    }

    /// Notes where the input ended (SPEC §12.2): inside a frame, the frame
    /// timeout runs from the first byte of that frame; on a frame boundary
    /// it stops. `completed` says a frame ended during this input, so an
    /// incomplete one now began with it.
    fn track_partial_frame(&mut self, now: Instant, partial: bool, completed: bool) {
        let Some(timeout) = self.config.frame_timeout else {
            return;
        };
        if !partial {
            self.frame_started = None;
            self.timers.stop(Timer::Frame);
        } else if completed || self.frame_started.is_none() {
            self.frame_started = Some(now);
            self.timers.set(Timer::Frame, now + timeout);
        }
    }

    /// Something arrived: the peer is alive (SPEC §12.2).
    fn touch(&mut self, now: Instant) {
        if let Some(interval) = self.config.keepalive_interval {
            self.timers.set(Timer::KeepAlive, now + interval);
            self.timers
                .set(Timer::Idle, now + interval + self.config.keepalive_timeout);
        }
    }

    fn count_flood(&mut self, now: Instant, what: Flood) {
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
    fn on_unheld_stream(&mut self, now: Instant, id: StreamId, kind: &str) {
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
    fn is_idle(&self, id: StreamId) -> bool {
        if self.side.owns(id) {
            id.index() >= self.next_local_index
        } else {
            id.index() >= self.next_peer_index
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame) {
        if self.peer.is_none() && !matches!(frame, Frame::Settings(ref s) if !s.ack) {
            // SPEC §4: the first frame after the preface MUST be SETTINGS.
            self.protocol_error(
                ErrorCode::PROTOCOL_ERROR,
                "the first frame after the preface must be SETTINGS",
            );
            return;
        }
        match frame {
            Frame::Settings(settings) if settings.ack => {
                if self.settings_acked || !self.preface_sent {
                    self.protocol_error(
                        ErrorCode::PROTOCOL_ERROR,
                        "unexpected SETTINGS acknowledgement",
                    );
                    return;
                }
                self.settings_acked = true;
                self.check_established();
            }
            Frame::Settings(settings) => {
                if self.peer.is_some() {
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
                let answers_probe = std::mem::take(&mut self.open_blocked_unanswered);
                if self.open_send.raise(limit) {
                    self.open_probe = None;
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
                if let Some((payload, sent_at)) = self.ping_sent
                    && payload == ping.payload
                {
                    self.ping_sent = None;
                    self.stats.rtt = Some(now.saturating_duration_since(sent_at));
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
                self.owed.ping_ack = Some(ping.payload);
            }
            Frame::GoAway(goaway) => self.on_goaway(goaway),
        }
    }

    fn check_established(&mut self) {
        if self.phase == Phase::Handshake && self.peer.is_some() && self.settings_acked {
            self.phase = Phase::Open;
            self.timers.stop(Timer::Handshake);
            self.conn_event = true;
        }
    }

    fn on_data(&mut self, now: Instant, id: StreamId, fin: bool, payload: Payload) {
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
        if stream.recv_discard && !stream.fin_received {
            // Nobody reads this stream any more: the bytes are dropped on
            // arrival and their credit, stream and connection, returned.
            if stream.recv_credit.release(n) {
                stream.owe_window_update = true;
                self.queue_control(id);
            }
            if fin {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.fin_received = true;
                    stream.half_closed_at = None;
                    if stream.fin_sent {
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
        if stream.fin_received {
            // SPEC §14: DATA after FIN is a stream error.
            self.release_conn_credit(n);
            self.count_flood(now, Flood::Reset);
            self.reset(id, ErrorCode::STREAM_CLOSED);
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
        let completed = fin && stream.fin_sent;
        if fin {
            stream.fin_received = true;
            stream.half_closed_at = None;
            if stream.probe.is_none() {
                // The stream may still be blocked sending: its probe stays.
                self.probing.remove(&id);
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
    fn receive_credit(&mut self, id: StreamId, n: u64) -> bool {
        if let Err(err) = self.conn_recv.check(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return false;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        let counts_stream = !stream.is_closed() && !stream.fin_received;
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
    fn count_closed_stream_data(&mut self, now: Instant, n: u64, no_op: bool) {
        if n == 0 {
            self.count_flood(now, Flood::StrayFrame);
        }
        if no_op {
            self.count_flood(now, Flood::EmptyData);
        }
    }

    /// Opens the peer stream `id` on its first DATA (SPEC §8.2). Returns
    /// false if the frame was consumed otherwise (refused, or an error).
    fn open_peer_stream(&mut self, id: StreamId, n: u64) -> bool {
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
        let refuse = self.goaway_sent
            || self.goaway_received.is_some()
            || self.phase == Phase::Closed
            || self.accept_queue.len() >= self.config.accept_backlog as usize;
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
        let send_limit = self.peer.map_or(0, |p| p.stream_window);
        self.streams.insert(
            id,
            Box::new(StreamState::new(
                send_limit,
                u64::from(self.config.stream_window),
            )),
        );
        self.accept_queue.push_back(id);
        self.conn_event = true;
        true
    }

    fn discard_data(&mut self, n: u64) {
        if let Err(err) = self.conn_recv.receive(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return;
        }
        self.stats.data_bytes_received += n;
        self.release_conn_credit(n);
    }

    pub(super) fn queue_stray_reset(&mut self, stream: StreamId, code: ErrorCode) {
        if self.stray_resets.len() >= self.config.max_stray_control as usize {
            self.protocol_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                "too many control frames owed for closed streams",
            );
            return;
        }
        self.stray_resets.push_back(Reset { stream, code });
    }

    fn on_window_update(&mut self, now: Instant, update: WindowUpdate) {
        if update.stream.is_connection() {
            let answers_probe = std::mem::take(&mut self.conn_blocked_unanswered);
            if self.conn_send.raise(update.limit) {
                if let Some(probe) = self.conn_probe.take() {
                    self.stats.blocked_on_connection += now.saturating_duration_since(probe.since);
                }
                while let Some(id) = self.conn_blocked_queue.pop_front() {
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.queued = Queued::Data;
                        self.data_queue.push_back(id);
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
            self.end_stream_probe(now, id);
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

    fn on_blocked(&mut self, now: Instant, blocked: Blocked) {
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
                        if !stream.fin_received {
                            stream.owe_window_update = true;
                            self.queue_control(id);
                        }
                    }
                    None => self.on_unheld_stream(now, id, "BLOCKED"),
                }
            }
        }
    }

    fn on_reset(&mut self, now: Instant, reset: Reset) {
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
        if stream.is_closed() {
            // SPEC §8.4: ignored on a closed stream, so data the application
            // has not read yet stays readable (§8.6).
            self.count_flood(now, Flood::StrayFrame);
            return;
        }
        self.close_by_peer(id, reset.code);
        self.maybe_reap(id);
    }

    /// The peer ended stream `id`, by RESET or by a GOAWAY that did not
    /// process it: both directions stop, unread data is released (SPEC
    /// §8.7, §9.7) and nothing is sent in reply.
    fn close_by_peer(&mut self, id: StreamId, code: ErrorCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.reset = Some((code, Initiator::Remote));
        stream.clear_send();
        // SPEC §8.7: after the peer's FIN its direction is complete, and its
        // bytes stay readable; otherwise they go.
        let discarded = if stream.keeps_recv_after_reset() {
            0
        } else {
            stream.discard_recv()
        };
        let _ = stream.recv_credit.release(discarded);
        stream.owe_window_update = false;
        stream.owe_blocked = false;
        if stream.queued == Queued::ConnBlocked {
            // Not waiting for connection credit any more (SPEC §11.1).
            stream.queued = Queued::No;
            self.conn_blocked_queue.retain(|&queued| queued != id);
        }
        self.stop_watching(id);
        self.release_conn_credit(discarded);
        self.count_closed(Closed::ResetRemote);
        self.wake(id);
    }

    fn on_goaway(&mut self, goaway: GoAway) {
        self.goaways_received += 1;
        if self.goaways_received > MAX_GOAWAYS_RECEIVED {
            // SPEC §16.1: GOAWAY is capped per connection.
            self.protocol_error(
                ErrorCode::ENHANCE_YOUR_CALM,
                format!("more than {MAX_GOAWAYS_RECEIVED} GOAWAY frames"),
            );
            return;
        }
        let last = match self.goaway_received {
            // SPEC §13: a later GOAWAY may only lower last_stream_id.
            Some(previous) => previous.min(goaway.last_stream),
            None => goaway.last_stream,
        };
        self.goaway_received = Some(last);
        self.conn_event = true;
        // SPEC §13.2: open() fails from now on; nothing waits for
        // stream-count credit, so nothing probes for it.
        self.open_probe = None;
        // SPEC §13.1: streams this side opened above `last` were not
        // processed, in a graceful or an error GOAWAY alike: they fail with
        // REFUSED_STREAM and may be retried on a new connection.
        let refused: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|&(&id, s)| self.side.owns(id) && id > last && s.reset.is_none())
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

    /// Sends due probes and half-close resets, and re-arms the probe timer.
    fn run_probes(&mut self, now: Instant) {
        let interval_cap = self.config.probe_max;
        let mut next: Option<Instant> = None;
        let mut earliest = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        if self.conn_blocked_queue.is_empty()
            && let Some(probe) = self.conn_probe.take()
        {
            // SPEC §11.1: blocked on the connection only while a stream
            // waits for its credit; the ones that did were reset since.
            self.stats.blocked_on_connection += now.saturating_duration_since(probe.since);
        }
        // SPEC §11.2: at most 50 BLOCKED in any 1 s; probes beyond that
        // wait for the budget. The connection and stream-count probes go
        // first: every stream waits on them.
        if let Some(probe) = &mut self.conn_probe {
            if probe.next_at <= now && self.blocked_budget.try_take(now) {
                self.owed.blocked_connection = true;
                self.stats.probes_sent += 1;
                probe.backoff(now, interval_cap);
            }
            earliest(probe.next_at.max(self.blocked_budget.available_at(now)));
        }
        if let Some(probe) = &mut self.open_probe {
            if probe.next_at <= now && self.blocked_budget.try_take(now) {
                self.owed.blocked_streams = true;
                self.stats.probes_sent += 1;
                probe.backoff(now, interval_cap);
            }
            earliest(probe.next_at.max(self.blocked_budget.available_at(now)));
        }
        let ids: Vec<StreamId> = self.probing.keys().copied().collect();
        let half_close = self.config.half_close_timeout;
        let mut due: Vec<(Instant, StreamId)> = Vec::new();
        let mut expired: Vec<StreamId> = Vec::new();
        for id in ids {
            let Some(stream) = self.streams.get_mut(&id) else {
                self.probing.remove(&id);
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
                self.probing.remove(&id);
            }
        }
        for id in expired {
            // SPEC §12.4. A RESET on this side's own timer is no reaction
            // to a peer frame: it does not count toward the flood limit
            // (§16.1), or many streams timing out at once would end the
            // connection.
            self.reset(id, ErrorCode::STREAM_TIMEOUT);
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
            if !self.blocked_budget.try_take(now) {
                earliest(self.blocked_budget.available_at(now));
                break;
            }
            probe.backoff(now, interval_cap);
            earliest(probe.next_at);
            stream.owe_blocked = true;
            stream.stats.probes_sent = stream.stats.probes_sent.saturating_add(1);
            self.stats.probes_sent += 1;
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
            self.stats.zero_window_events += 1;
            self.probing.insert(id, ());
            self.arm_probe_timer(now + interval);
        }
    }

    /// Ends the zero-window probe of stream `id`, if one runs: credit
    /// came, or nothing is left to send (SPEC §11.1).
    pub(super) fn end_stream_probe(&mut self, now: Instant, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(probe) = stream.probe.take() {
            let blocked = now.saturating_duration_since(probe.since);
            stream.stats.blocked_on_stream_ns = stream
                .stats
                .blocked_on_stream_ns
                .saturating_add(u64::try_from(blocked.as_nanos()).unwrap_or(u64::MAX));
            if stream.half_closed_at.is_none() {
                self.probing.remove(&id);
            }
        }
    }

    /// Starts the probe of the connection credit.
    pub(super) fn start_connection_probe(&mut self, now: Instant) {
        if self.conn_probe.is_none() {
            self.conn_probe = Some(Probe::start(now, self.config.probe_interval));
            self.stats.zero_window_events += 1;
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
            self.probing.insert(id, ());
            self.arm_probe_timer(now + timeout);
        }
    }
}
