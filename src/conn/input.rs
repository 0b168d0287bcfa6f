//! Inputs of the sans-IO connection: bytes from the transport (whole
//! frames, parts of a DATA payload, payloads read straight into a reader's
//! buffer), the transport's end or failure, and timer expiry.

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::flood::Flood;
use super::frames::Payload;
use super::timer::Timer;
use super::{Connection, Phase};
use crate::error::ConnectionError;
use crate::frame::{Decoded, ErrorCode, PREFACE_LEN, PrefaceError, StreamId, decode_preface};

impl Connection {
    /// Feeds bytes read from the transport. Consumes every complete frame
    /// from `buf`; a partial frame stays for the next call. Nothing is
    /// reserved in `buf`: before the next read the caller makes room for
    /// [`input_missing`](Connection::input_missing) bytes (and whatever
    /// more it wants to read at once).
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        if self.phase == Phase::Closed {
            buf.clear();
            return;
        }
        self.now = now;
        // Bytes of a partial frame left in `buf` by the previous call were
        // counted then (found by fuzz target `session`: they were counted
        // again on every call until the frame completed).
        let carried = std::mem::take(&mut self.input.carried);
        self.stats.transport_bytes_received += buf.len().saturating_sub(carried) as u64;
        self.touch(now);
        if !self.handshake.preface_received {
            match decode_preface(buf) {
                Ok(None) => {
                    self.input.carried = buf.len();
                    return;
                }
                Ok(Some(_)) => {
                    buf.advance(PREFACE_LEN);
                    self.handshake.preface_received = true;
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
            match self.input.decoder.decode_next(buf) {
                Ok(None) => {
                    self.take_data_part(now, buf);
                    self.input.carried = buf.len();
                    let partial =
                        !buf.is_empty() || self.input.decoder.data_in_progress().is_some();
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
                    if self.handshake.peer.is_none() {
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
    pub(super) fn take_data_part(&mut self, now: Instant, buf: &mut BytesMut) {
        let Some((id, rest)) = self.input.decoder.data_in_progress() else {
            return;
        };
        if buf.is_empty() || !self.streams.get(&id).is_some_and(|s| s.takes_data()) {
            return;
        }
        if !self.whole_frame_fits(id, rest) {
            buf.clear();
            return;
        }
        if let Some(part) = self.input.decoder.take_data_part(buf) {
            self.on_data(now, id, false, Payload::Buffered(part.payload));
        }
    }

    /// Before any part of a DATA frame is handed out: its whole length
    /// must be within the credit announced (SPEC §9.3), as it would be
    /// checked on the complete frame, so credit announced while the frame
    /// arrives cannot cover a frame sent beyond it. Fails the connection
    /// with FLOW_CONTROL_ERROR otherwise.
    pub(super) fn whole_frame_fits(&mut self, id: StreamId, rest: usize) -> bool {
        if self.input.decoder.data_part_taken() {
            return true;
        }
        let n = rest as u64;
        if let Err(err) = self.conn_recv.check(n) {
            self.protocol_error(ErrorCode::FLOW_CONTROL_ERROR, format!("connection {err}"));
            return false;
        }
        // Stream credit counts while the stream does (SPEC §6.2): not for
        // a stream closed (or closed and forgotten) since the frame began.
        let Some(stream) = self
            .streams
            .get(&id)
            .filter(|s| !s.is_closed() && s.recv_open())
        else {
            return true;
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
        let Some((sid, rest)) = self.input.decoder.data_in_progress() else {
            return 0;
        };
        match self.streams.get(&id) {
            Some(stream) if sid == id && stream.takes_data() && stream.recv_buf.is_empty() => rest,
            _ => 0,
        }
    }

    /// Accounts for `n` payload bytes of stream `id` that the caller read
    /// from the transport into the application's buffer, after
    /// [`direct_payload`](Connection::direct_payload) allowed it (and
    /// without the caller holding the core in between, so the stream may
    /// have been reset or stopped since): exactly as if they had arrived
    /// in a DATA frame, then read at once if the stream still takes data,
    /// or dropped and their credit released if it does not. Returns
    /// whether they are delivered to the reader: false if the stream no
    /// longer takes them, or they break the peer's credit (the connection
    /// fails with FLOW_CONTROL_ERROR, as it would for the frame), or the
    /// bytes are not the rest of a DATA payload of `id` in progress.
    pub fn commit_direct_payload(&mut self, now: Instant, id: StreamId, n: usize) -> bool {
        if self.phase == Phase::Closed || n == 0 {
            return false;
        }
        let Some((sid, rest)) = self.input.decoder.data_in_progress() else {
            return false;
        };
        if sid != id || n > rest {
            return false;
        }
        let delivered = self.direct_payload(id) > 0;
        self.now = now;
        self.touch(now);
        // Read from the transport, whatever becomes of them.
        self.stats.transport_bytes_received += n as u64;
        if !self.whole_frame_fits(id, rest) {
            return false;
        }
        let done = self.input.decoder.consume_data_payload(n);
        if done.is_some() {
            self.stats.frames_received += 1;
            // The caller had no other input waiting: it ends on a boundary.
            self.track_partial_frame(now, false, true);
        }
        let fin = done == Some(true);
        // Delivered, or for a stream that stopped taking data meanwhile,
        // counted and released as DATA on a closed stream is.
        self.on_data(now, id, fin, Payload::Delivered(n as u64));
        delivered && self.error.is_none()
    }

    /// The bytes a reader should make room for before its next read, with
    /// `buffered` bytes of input not yet taken (see
    /// [`FrameDecoder::missing`](crate::frame::FrameDecoder::missing)): the
    /// rest of a frame that is handed on whole. 0 for a DATA payload that
    /// goes to its stream part by part as it arrives, or is being skipped.
    pub fn input_missing(&self, buffered: usize) -> usize {
        if let Some((id, _)) = self.input.decoder.data_in_progress()
            && self.streams.get(&id).is_some_and(|s| s.takes_data())
        {
            return 0;
        }
        self.input.decoder.missing(buffered)
    }

    /// The transport reached end of file.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let all_closed = self.streams.values().all(|s| s.is_closed());
        if self.goaways.received().is_some() {
            self.fail(ConnectionError::ClosedByPeer {
                code: ErrorCode::NO_ERROR,
                debug: String::new(),
            });
        } else if self.goaways.sent() && self.phase == Phase::Draining && all_closed {
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
                // others, already taken off the table, must not run (their
                // actions are for a live connection; re-arming is refused
                // by the closed table anyway).
                break;
            }
            match timer {
                Timer::Handshake => {
                    if !self.is_established() {
                        tracing::debug!(side = ?self.side, "handshake timeout");
                        self.send_goaway(ErrorCode::SETTINGS_TIMEOUT, b"handshake timed out");
                        self.fail(ConnectionError::HandshakeTimeout);
                    }
                }
                Timer::KeepAlive => self.ping(now),
                Timer::Idle => {
                    // SPEC §12.2: nothing received within interval + timeout.
                    tracing::debug!(side = ?self.side, "idle timeout");
                    self.send_goaway(
                        ErrorCode::IDLE_TIMEOUT,
                        b"nothing received within the idle timeout",
                    );
                    self.fail(ConnectionError::IdleTimeout);
                }
                Timer::Probe => self.run_probes(now),
                Timer::PingPace => self.send_deferred_ping(now),
                // Pending PRIORITY_UPDATEs may go out (`wants_transmit`).
                Timer::PriorityPace => {}
                Timer::Drain => self.drain_deadline(now),
                Timer::Frame => {
                    // SPEC §12.2: a frame that does not complete within the
                    // frame timeout (a peer trickling bytes to look alive).
                    let timeout = self.config.frame_timeout.unwrap_or_default();
                    tracing::debug!(side = ?self.side, ?timeout, "frame timeout");
                    self.protocol_error(
                        ErrorCode::IDLE_TIMEOUT,
                        format!("a frame stayed incomplete for {timeout:?}"),
                    );
                }
            }
        }
    }

    /// Notes where the input ended (SPEC §12.2): inside a frame, the frame
    /// timeout runs from the first byte of that frame; on a frame boundary
    /// it stops. `completed` says a frame ended during this input, so an
    /// incomplete one now began with it.
    pub(super) fn track_partial_frame(&mut self, now: Instant, partial: bool, completed: bool) {
        let Some(timeout) = self.config.frame_timeout else {
            return;
        };
        // The part just taken may have ended the connection (a DATA frame
        // beyond credit, SPEC §9.3); the closed timer table then arms
        // nothing (a finished connection keeping the frame timer armed was
        // found by fuzz target `session`).
        if !partial {
            self.input.frame_started = None;
            self.timers.stop(Timer::Frame);
        } else if completed || self.input.frame_started.is_none() {
            self.input.frame_started = Some(now);
            self.timers.set(Timer::Frame, now + timeout);
        }
    }

    /// Something arrived: the peer is alive (SPEC §12.2).
    pub(super) fn touch(&mut self, now: Instant) {
        if let Some(interval) = self.config.keepalive_interval {
            self.timers.set(Timer::KeepAlive, now + interval);
            self.timers
                .set(Timer::Idle, now + interval + self.config.keepalive_timeout);
        }
    }
}
