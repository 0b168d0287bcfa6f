//! Output of the sans-IO connection: control frames first, then DATA in
//! round-robin across the streams that have credit (SPEC §10.2).

use std::time::Instant;

use bytes::Bytes;

use super::stream::{Queued, RecvState, SendState, StreamState};
use super::transmit::TransmitBuf;
use super::{Closed, Connection, Phase};
use crate::frame::StreamId;
use crate::frame::{
    Blocked, BlockedOn, DIRECTIONAL_RESET, Data, ErrorCode, Frame, HEADER_LEN, MaxStreams,
    PRIORITY_UPDATES, Ping, Reset, ResetScope, Settings, SettingsValues, WindowUpdate,
    encode_preface,
};

/// Largest DATA payload the scheduler puts in one frame, whatever the peer
/// accepts: the round-robin turn of a stream (SPEC §10.2), so a stream
/// with a lot queued holds the others up by at most this much. A direct
/// write (see `direct_allowance`) happens only when no other stream waits,
/// so it uses frames as large as the peer takes.
const QUEUED_FRAME_MAX: usize = 16 * 1024;

impl Connection {
    /// Appends frames to `out` until it holds at least `max_bytes` bytes or
    /// nothing is left to send. Control frames always go first and are not
    /// limited by `max_bytes`; their number is bounded by the coalescing of
    /// owed frames (SPEC §10.3).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut TransmitBuf, max_bytes: usize) {
        self.now = now;
        let start = out.len();
        // The transport offset of `out`'s first byte: everything in it was
        // counted as sent when it was emitted.
        let base = self.stats.transport_bytes_sent - start as u64;
        if !self.handshake.preface_sent {
            self.handshake.preface_sent = true;
            self.note_settings_sent(now);
            out.put_slice(&encode_preface());
            let values = SettingsValues {
                initial_stream_window: Some(self.config.stream_window),
                connection_window: Some(self.config.connection_window),
                max_frame_payload: Some(self.config.max_frame_payload),
                max_streams: Some(self.config.max_incoming_streams),
                // SPEC §8.7.1: this side honours RESET SEND and RECEIVE;
                // §6.10: it takes PRIORITY_UPDATE.
                extensions: Some(DIRECTIONAL_RESET | PRIORITY_UPDATES),
            };
            self.put_frame(out, &Frame::Settings(Settings { ack: false, values }));
        }
        self.write_control(now, out);
        if self.phase != Phase::Closed && self.handshake.peer.is_some() {
            self.write_data(now, out, max_bytes, base);
        }
        self.stats.transport_bytes_sent += (out.len() - start) as u64;
        // A graceful close ends once what it owed is out (SPEC §13.2).
        self.check_drained();
    }

    pub(super) fn put_frame(&mut self, out: &mut TransmitBuf, frame: &Frame) {
        let header = frame.header();
        out.put_slice(&header.encode());
        let mut payload = [0u8; 64];
        let len = header.len as usize;
        if len <= payload.len() {
            frame.encode_payload(&mut &mut payload[..]);
            out.put_slice(&payload[..len]);
        } else {
            // Only GOAWAY with long debug data and SETTINGS get here.
            out.put_bytes(frame.to_bytes().slice(HEADER_LEN..));
        }
        self.stats.frames_sent += 1;
        match frame {
            Frame::Reset(reset) => self.stats.resets_sent.add(reset.code),
            Frame::GoAway(goaway) => self.goaways.note_written(goaway.code),
            _ => {}
        }
    }

    fn write_control(&mut self, now: Instant, out: &mut TransmitBuf) {
        if std::mem::take(&mut self.owed.settings_ack) {
            self.put_frame(
                out,
                &Frame::Settings(Settings {
                    ack: true,
                    values: SettingsValues::default(),
                }),
            );
        }
        // SPEC §13.2: the receiver of a graceful GOAWAY closes the transport
        // as soon as it has no stream, so the GOAWAY waits until every
        // stream this side opened before closing has gone out with its
        // first frame (write_data sends it below, no credit needed);
        // written ahead of them (control first, §10.2) it would let the
        // peer close while they are on their way.
        let side = self.side;
        let hold_goaway = self.phase != Phase::Closed
            && self
                .owed
                .goaway
                .as_ref()
                .is_some_and(|g| g.code == ErrorCode::NO_ERROR)
            && self
                .streams
                .iter()
                .any(|(&id, s)| side.owns(id) && s.needs_open && s.send_open());
        if !hold_goaway && let Some(goaway) = self.owed.goaway.take() {
            self.put_frame(out, &Frame::GoAway(goaway));
        }
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(payload) = self.pinger.take_ack() {
            self.put_frame(out, &Frame::Ping(Ping { ack: true, payload }));
        }
        if let Some(payload) = self.pinger.take_ping(now) {
            self.put_frame(
                out,
                &Frame::Ping(Ping {
                    ack: false,
                    payload,
                }),
            );
        }
        if std::mem::take(&mut self.owed.window_update) {
            self.tune_connection_window(now);
            let limit = self.conn_recv.announce();
            self.put_frame(
                out,
                &Frame::WindowUpdate(WindowUpdate {
                    stream: crate::frame::StreamId::CONNECTION,
                    limit,
                }),
            );
        }
        if std::mem::take(&mut self.owed.max_streams) {
            let count = self.open_recv.announce();
            self.put_frame(out, &Frame::MaxStreams(MaxStreams { count }));
        }
        if std::mem::take(&mut self.owed.blocked_connection) {
            self.probes.conn_unanswered = true;
            let limit = self.conn_send.limit();
            self.put_frame(
                out,
                &Frame::Blocked(Blocked {
                    on: BlockedOn::Connection,
                    limit,
                }),
            );
        }
        if std::mem::take(&mut self.owed.blocked_streams) {
            self.probes.open_unanswered = true;
            let limit = self.open_send.limit();
            self.put_frame(
                out,
                &Frame::Blocked(Blocked {
                    on: BlockedOn::StreamCount,
                    limit,
                }),
            );
        }
        while let Some(reset) = self.queues.stray_resets.pop_front() {
            self.put_frame(out, &Frame::Reset(reset));
        }
        let directional = self.peer_resets_directions();
        let tuning = self.stream_tuning(now);
        while let Some(id) = self.queues.control.pop_front() {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.in_control_queue = false;
            let resets = take_resets(id, stream, directional);
            let mut frames: [Option<Frame>; 2] = [None, None];
            // SPEC §6.3: no stream update once the receive side is finished
            // or reset (a FIN may have arrived since it was owed).
            let mut grown = None;
            if std::mem::take(&mut stream.owe_window_update) && stream.recv_open() {
                grown = tuning.apply(id, stream, &mut self.stats);
                let limit = stream.recv_credit.announce();
                frames[0] = Some(Frame::WindowUpdate(WindowUpdate { stream: id, limit }));
            }
            if std::mem::take(&mut stream.owe_blocked) {
                stream.blocked_unanswered = true;
                let limit = stream.send_credit.limit();
                frames[1] = Some(Frame::Blocked(Blocked {
                    on: BlockedOn::Stream(id),
                    limit,
                }));
            }
            for reset in resets.into_iter().flatten() {
                self.put_frame(out, &Frame::Reset(reset));
            }
            for frame in frames.into_iter().flatten() {
                self.put_frame(out, &frame);
            }
            if let Some(window) = grown {
                self.keep_connection_window_above(window);
            }
            self.maybe_reap(id);
        }
        if self.priority_requests.has_queued() {
            self.write_priority_requests(now, out);
        }
    }

    fn write_data(&mut self, now: Instant, out: &mut TransmitBuf, max_bytes: usize, base: u64) {
        let max_frame = self.peer_max_frame_payload().min(QUEUED_FRAME_MAX);
        let send_buffer = self.config.send_buffer as usize;
        let directional = self.peer_resets_directions();
        while out.len() < max_bytes {
            let Some(id) = self.queues.data.pop() else {
                break;
            };
            let conn_available = self.conn_send.available();
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            stream.queued = Queued::No;
            if stream.needs_open && stream.owe_reset {
                // Reset before it was announced (see `reset`): an empty
                // opening frame, then the RESET, close the id on both sides.
                stream.needs_open = false;
                out.put_slice(&Data::header_for(id, 0, false).encode());
                stream.emitted_until = base + out.len() as u64;
                self.stats.frames_sent += 1;
                for reset in take_resets(id, stream, directional).into_iter().flatten() {
                    self.put_frame(out, &Frame::Reset(reset));
                }
                // A RESET SEND leaves the peer's direction open: a
                // PRIORITY_UPDATE may follow (SPEC §6.10).
                self.priority_requests.ready(id);
                self.maybe_reap(id);
                continue;
            }
            if !stream.wants_to_send() {
                // Reset (or finished) while it sat in the queue: leaving the
                // queue may be all that kept it from being forgotten, and a
                // peer stream kept here would hold stream-count credit
                // forever (SPEC §8.8).
                self.maybe_reap(id);
                continue;
            }
            let want = stream.send_buffered;
            let allowed =
                (stream.send_credit.available().min(conn_available) as usize).min(max_frame);
            if want > 0 && allowed == 0 && !stream.needs_open {
                if stream.send_credit.available() == 0 {
                    self.start_stream_probe(now, id);
                } else {
                    stream.queued = Queued::ConnBlocked;
                    self.queues.conn_blocked.push_back(id);
                    self.start_connection_probe(now);
                }
                continue;
            }
            let payload: Bytes = stream.take_send(allowed);
            let n = payload.len();
            let fin = stream.send == SendState::Finishing && stream.send_buffered == 0;
            // A RESET RECEIVE owed since before the stream was announced
            // may follow the opening frame now (see `stop`).
            let opening = std::mem::take(&mut stream.needs_open);
            let opened_owing = opening && stream.owes_reset();
            out.put_slice(&Data::header_for(id, n, fin).encode());
            out.put_bytes(payload);
            stream.emitted_until = base + out.len() as u64;
            stream.send_credit.consume(n as u64);
            let completed = fin && stream.fin_received();
            if fin {
                stream.send = SendState::Finished;
            }
            let mut wake = stream.writer_waiting && stream.send_buffered < send_buffer;
            if wake {
                stream.writer_waiting = false;
            }
            if stream.flush_waiting && stream.send_emitted() {
                stream.flush_waiting = false;
                wake = true;
            }
            let cancel = fin && std::mem::take(&mut stream.cancel_after_fin);
            let again = stream.wants_to_send();
            self.count_data_sent(n as u64, 1);
            if completed {
                self.count_closed(Closed::Completed);
            }
            if wake {
                self.wake(id);
            }
            if opened_owing {
                self.queue_control(id);
            }
            if opening {
                // A PRIORITY_UPDATE may follow the opening frame now (SPEC
                // §6.10).
                self.priority_requests.ready(id);
            }
            if again {
                self.schedule_data(id);
            }
            if fin {
                // A writer that waited for credit with nothing buffered
                // and then finished leaves a probe behind: nothing is
                // blocked any more (SPEC §8.4: no BLOCKED once finished).
                self.end_stream_probe(now, id, false);
                self.watch_half_close(now, id);
                self.wake(id);
                if cancel {
                    // Released after finishing (see `release`): the peer
                    // may stop sending now that the FIN is out.
                    self.reset(now, id, ErrorCode::CANCEL);
                }
                self.maybe_reap(id);
            }
        }
        // Out of room with the connection credit used up: the streams still
        // queued with data wait on that credit from now (SPEC §11.1), though
        // they move to the connection-credit queue only at their turn.
        if self.probes.conn.is_none() && self.data_waits_on_connection() {
            self.start_connection_probe(now);
        }
    }
}

/// Direct writes: DATA the application task writes to the transport itself,
/// from its own buffer, instead of queueing a copy for the driver. The core
/// decides whether that may happen and accounts for what was written, so a
/// direct write is indistinguishable on the wire from a queued one.
impl Connection {
    /// How many bytes of stream `id` may go out directly now; 0 means "use
    /// the send buffer". Nonzero only when nothing else waits to go out (no
    /// control frame owed, no stream queued or waiting for connection
    /// credit), so a direct write never overtakes a control frame or another
    /// stream's turn (SPEC §10.2); when the stream has nothing buffered, so
    /// its bytes stay in order; and within the stream's and the
    /// connection's credit.
    pub(crate) fn direct_allowance(&self, id: StreamId) -> usize {
        if self.wants_transmit() || !self.queues.conn_blocked.is_empty() {
            return 0;
        }
        let Some(stream) = self.direct_sender(id) else {
            return 0;
        };
        if stream.queued != Queued::No {
            return 0;
        }
        stream
            .send_credit
            .available()
            .min(self.conn_send.available()) as usize
    }

    /// True if a write of `len` bytes to stream `id` should wait for
    /// stream credit instead of being copied into the send buffer; if so,
    /// the writer is noted as waiting (woken by the next WINDOW_UPDATE that
    /// raises the stream's limit) and the zero-window probe starts, as it
    /// would for buffered bytes (SPEC §11).
    ///
    /// Only a large write (a full scheduler frame or more) to a stream with nothing
    /// buffered and no credit waits: once credit comes, it goes out
    /// directly from the caller's buffer, where copying it ahead of the
    /// credit would cost a copy of every byte. Small writes are still
    /// buffered, where they coalesce into full frames.
    pub(crate) fn wait_for_credit(&mut self, now: Instant, id: StreamId, len: usize) -> bool {
        self.now = now;
        let full_frame = self.peer_max_frame_payload().min(QUEUED_FRAME_MAX);
        if len < full_frame
            || self
                .direct_sender(id)
                .is_none_or(|stream| stream.send_credit.available() > 0)
        {
            return false;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        stream.writer_waiting = true;
        self.start_stream_probe(now, id);
        true
    }

    /// Stream `id`, if its bytes could go out from the writer's own
    /// buffer: the connection is open and knows the peer, and the stream
    /// is announced, not finished or reset, with nothing buffered ahead.
    fn direct_sender(&self, id: StreamId) -> Option<&StreamState> {
        if !matches!(self.phase, Phase::Open | Phase::Draining)
            || self.handshake.peer.is_none()
            || self.error.is_some()
        {
            return None;
        }
        self.streams.get(&id).map(Box::as_ref).filter(|stream| {
            stream.send == SendState::Open && !stream.needs_open && stream.send_buffered == 0
        })
    }

    /// The largest DATA payload the peer accepts in one frame.
    pub fn peer_max_frame_payload(&self) -> usize {
        self.handshake.peer.map_or(0, |p| p.max_frame_payload)
    }

    /// Accounts for `frames` DATA frames (no FIN) carrying `bytes` of stream
    /// `id` that were written directly, within [`direct_allowance`], exactly
    /// as `poll_transmit` accounts for the frames it emits.
    ///
    /// [`direct_allowance`]: Connection::direct_allowance
    ///
    /// The driver calls it *before* writing, as a reservation, so that the
    /// write itself can happen without the core's lock (whoever holds the
    /// transport's writer is the only one who can emit bytes meanwhile),
    /// and gives back what the transport did not take with
    /// [`rollback_direct`](Connection::rollback_direct). The connection
    /// credit is counted even if the stream is gone by then: the peer
    /// counts every DATA byte it receives (SPEC §9.3).
    pub(crate) fn commit_direct(&mut self, id: StreamId, bytes: usize, frames: usize) {
        let n = bytes as u64;
        self.count_data_sent(n, frames as u64);
        self.stats.transport_bytes_sent += n + (frames * HEADER_LEN) as u64;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_credit.consume(n);
            stream.emitted_until = self.stats.transport_bytes_sent;
        }
    }

    /// Gives back the part of a [`commit_direct`] reservation the transport
    /// did not take: `bytes` payload bytes in `frames` frames that were not
    /// begun (a frame the transport took part of counts as sent; its rest
    /// goes out before anything else).
    ///
    /// [`commit_direct`]: Connection::commit_direct
    pub(crate) fn rollback_direct(&mut self, id: StreamId, bytes: usize, frames: usize) {
        if bytes == 0 && frames == 0 {
            return;
        }
        let n = bytes as u64;
        self.conn_send.unconsume(n);
        self.stats.data_bytes_sent -= n;
        self.stats.frames_sent -= frames as u64;
        self.stats.transport_bytes_sent -= n + (frames * HEADER_LEN) as u64;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_credit.unconsume(n);
            stream.emitted_until = stream.emitted_until.min(self.stats.transport_bytes_sent);
        }
    }

    /// Connection credit and counters for `frames` DATA frames carrying
    /// `n` payload bytes, whoever wrote them.
    fn count_data_sent(&mut self, n: u64, frames: u64) {
        self.conn_send.consume(n);
        self.stats.data_bytes_sent += n;
        self.stats.frames_sent += frames;
    }
}

/// The driver's direct-write hooks, reachable from fuzz targets (built with
/// `--cfg fuzzing`, as cargo-fuzz does) and from nothing else: the async
/// driver is their only caller, and their call order is its contract
/// (`driver/direct.rs`): [`direct_allowance`](Connection::direct_allowance),
/// then [`commit_direct`](Connection::commit_direct) for the frames about
/// to be written, then [`rollback_direct`](Connection::rollback_direct) for
/// the whole frames the transport did not take; or
/// [`wait_for_credit`](Connection::wait_for_credit) for a large write that
/// found no credit.
#[cfg(fuzzing)]
impl Connection {
    /// See [`direct_allowance`](Connection::direct_allowance).
    pub fn fuzz_direct_allowance(&self, id: StreamId) -> usize {
        self.direct_allowance(id)
    }

    /// See [`wait_for_credit`](Connection::wait_for_credit).
    pub fn fuzz_wait_for_credit(&mut self, now: Instant, id: StreamId, len: usize) -> bool {
        self.wait_for_credit(now, id, len)
    }

    /// See [`commit_direct`](Connection::commit_direct).
    pub fn fuzz_commit_direct(&mut self, id: StreamId, bytes: usize, frames: usize) {
        self.commit_direct(id, bytes, frames)
    }

    /// See [`rollback_direct`](Connection::rollback_direct).
    pub fn fuzz_rollback_direct(&mut self, id: StreamId, bytes: usize, frames: usize) {
        self.rollback_direct(id, bytes, frames)
    }
}

/// The RESETs owed for `stream` (SPEC §6.6), taken: one for both directions
/// when both are owed with the same code, or when the peer cannot tell
/// directions apart (then only one direction is still open on this side,
/// and a RESET for both says the same, §8.7); otherwise one per direction.
fn take_resets(id: StreamId, stream: &mut StreamState, directional: bool) -> [Option<Reset>; 2] {
    let reset = |code, scope| Reset {
        stream: id,
        code,
        scope,
    };
    let owe_send = std::mem::take(&mut stream.owe_reset);
    let owe_stop = std::mem::take(&mut stream.owe_stop);
    // An owed RESET carries the code its direction was reset with.
    let send = match stream.send {
        SendState::Reset(code, _) if owe_send => Some(code),
        _ => None,
    };
    let stop = match stream.recv {
        RecvState::Reset(code, _) if owe_stop => Some(code),
        _ => None,
    };
    match (send, stop) {
        (Some(send), Some(stop)) if send == stop || !directional => {
            [Some(Reset::both(id, send)), None]
        }
        (Some(send), Some(stop)) => [
            Some(reset(send, ResetScope::Send)),
            Some(reset(stop, ResetScope::Receive)),
        ],
        (Some(send), None) if directional => [Some(reset(send, ResetScope::Send)), None],
        (None, Some(stop)) if directional => [Some(reset(stop, ResetScope::Receive)), None],
        (Some(code), None) | (None, Some(code)) => [Some(Reset::both(id, code)), None],
        (None, None) => [None, None],
    }
}
