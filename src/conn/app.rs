//! Application commands of the sans-IO connection: open, accept, write,
//! finish, read, reset, release, ping, close. None of them does I/O; what
//! they owe the peer goes out on the next `poll_transmit`.

use std::time::Instant;

use bytes::Bytes;

use super::sched::Priority;
use super::stream::{Half, Probe, Queued, RecvState, SendState, StreamState};
use super::timer::Timer;
use super::{Closed, Connection, Flush, Phase, ReadOutcome};
use crate::error::{Initiator, OpenError, StreamError};
use crate::frame::{ErrorCode, StreamId};

impl Connection {
    /// Opens a stream. `Ok(None)`: the peer's stream-count limit is reached
    /// (or the handshake is not done); wait for [`Event::Connection`](super::Event::Connection) and
    /// call again.
    pub fn open(&mut self, now: Instant) -> Result<Option<StreamId>, OpenError> {
        match &self.error {
            Some(err) if !err.is_graceful() => return Err(OpenError::ConnectionLost(err.clone())),
            _ if self.is_going_away() => return Err(OpenError::GoingAway),
            Some(err) => return Err(OpenError::ConnectionLost(err.clone())),
            None => {}
        }
        let Some(peer) = self.handshake.peer else {
            return Ok(None);
        };
        let index = self.next_local_index;
        let Some(id) = self.side.id_at(index) else {
            return Err(OpenError::IdsExhausted);
        };
        if self.open_send.available() == 0 {
            // SPEC §11: probe the stream-count credit too.
            if self.probes.open.is_none() {
                self.probes.open = Some(Probe::start(now, self.config.probe_interval));
                self.stats.zero_window_events += 1;
                self.arm_probe_timer(now + self.config.probe_interval);
            }
            return Ok(None);
        }
        self.open_send.consume(1);
        self.next_local_index += 1;
        let mut stream = Box::new(StreamState::new(
            peer.stream_window,
            u64::from(self.config.stream_window),
        ));
        stream.needs_open = true;
        self.streams.insert(id, stream);
        self.schedule_data(id);
        Ok(Some(id))
    }

    /// Takes the next stream the peer opened, if any.
    pub fn accept(&mut self) -> Option<StreamId> {
        self.queues.accept.pop_front()
    }

    /// True when no more streams will arrive for `accept` (GOAWAY or closed)
    /// and the backlog is empty.
    pub fn accept_finished(&self) -> bool {
        self.queues.accept.is_empty()
            && (self.goaways.sent() || self.error.is_some() || self.phase == Phase::Closed)
    }

    /// Buffers bytes for sending on `id`, copying at most the free space of
    /// its send buffer. `Ok(0)` for a non-empty `data` means the buffer is
    /// full: wait for [`Event::Stream`](super::Event::Stream).
    pub fn write(&mut self, now: Instant, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        self.now = now;
        let n = data.len().min(self.writable(id)?);
        if n > 0 {
            self.push_send(id, Bytes::copy_from_slice(&data[..n]));
        } else if !data.is_empty() {
            self.note_writer_waiting(id);
        }
        Ok(n)
    }

    /// Buffers `data` without copying, if its send buffer has room for the
    /// whole of it; otherwise as much as fits is split off the front.
    /// Returns the bytes accepted; the rest stays in `data`.
    pub fn write_bytes(
        &mut self,
        now: Instant,
        id: StreamId,
        data: &mut Bytes,
    ) -> Result<usize, StreamError> {
        self.now = now;
        let n = data.len().min(self.writable(id)?);
        if n > 0 {
            let chunk = data.split_to(n);
            self.push_send(id, chunk);
        } else if !data.is_empty() {
            self.note_writer_waiting(id);
        }
        Ok(n)
    }

    pub(super) fn writable(&self, id: StreamId) -> Result<usize, StreamError> {
        let stream = self.streams.get(&id).ok_or_else(|| self.gone_error())?;
        if let SendState::Reset(code, initiator) = stream.send {
            return Err(StreamError::Reset { code, initiator });
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        if stream.send_finished() {
            return Err(StreamError::Finished);
        }
        Ok((self.config.send_buffer as usize).saturating_sub(stream.send_buffered))
    }

    pub(super) fn note_writer_waiting(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.writer_waiting = true;
        }
    }

    pub(super) fn push_send(&mut self, id: StreamId, chunk: Bytes) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_buffered += chunk.len();
            stream.send_buf.push_back(chunk);
            self.schedule_data(id);
        }
    }

    /// Finishes the send direction: a FIN follows the buffered bytes.
    pub fn finish(&mut self, now: Instant, id: StreamId) -> Result<(), StreamError> {
        self.now = now;
        let gone = self.gone_error();
        let stream = self.streams.get_mut(&id).ok_or(gone)?;
        match stream.send {
            SendState::Reset(code, initiator) => {
                return Err(StreamError::Reset { code, initiator });
            }
            // Again: nothing new (the connection may have ended since).
            SendState::Finishing | SendState::Finished => return Ok(()),
            SendState::Open => {}
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        stream.send = SendState::Finishing;
        self.schedule_data(id);
        Ok(())
    }

    /// The reset that ended `id`, with who sent it, if one did.
    pub fn stream_reset(&self, id: StreamId) -> Option<(ErrorCode, Initiator)> {
        self.streams.get(&id).and_then(|s| s.reset())
    }

    /// The reset that ended the writing of `id` (a RESET either way, or the
    /// peer's RESET RECEIVE), with who sent it, if one did.
    pub fn send_reset(&self, id: StreamId) -> Option<(ErrorCode, Initiator)> {
        match self.streams.get(&id)?.send {
            SendState::Reset(code, initiator) => Some((code, initiator)),
            _ => None,
        }
    }

    /// True once the FIN of `id` went out (or the stream is gone).
    pub fn is_finish_sent(&self, id: StreamId) -> bool {
        self.streams
            .get(&id)
            .is_none_or(|s| s.send == SendState::Finished)
    }

    /// Where stream `id`'s send side stands for a flush: everything the
    /// application wrote (and a FIN it queued) has been emitted, up to a
    /// transport offset the driver compares with what the transport took
    /// ([`Flush::Emitted`]); or some of it still waits in the core
    /// ([`Flush::Waiting`]: an [`Event::Stream`](super::Event::Stream) follows once it went out).
    /// Fails if the stream was reset, or the connection ended with bytes
    /// of the stream still unsent.
    ///
    /// [`Event::Stream`](super::Event::Stream): super::Event::Stream
    pub fn flush_state(&mut self, id: StreamId) -> Result<Flush, StreamError> {
        let error = self.error.clone();
        let Some(stream) = self.streams.get_mut(&id) else {
            // Forgotten: everything of it was sent (or it was reset and
            // released, and nobody holds it to ask).
            return Ok(Flush::Emitted(0));
        };
        if let SendState::Reset(code, initiator) = stream.send {
            return Err(StreamError::Reset { code, initiator });
        }
        if stream.send_emitted() {
            return Ok(Flush::Emitted(stream.emitted_until));
        }
        if let Some(err) = error {
            return Err(StreamError::ConnectionLost(err));
        }
        stream.flush_waiting = true;
        Ok(Flush::Waiting)
    }

    /// Reads up to `max` bytes from `id`. Buffered bytes are delivered even
    /// after the connection failed; the error follows them.
    pub fn read(
        &mut self,
        now: Instant,
        id: StreamId,
        max: usize,
    ) -> Result<ReadOutcome, StreamError> {
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(self.gone_error());
        };
        if let RecvState::Reset(code, initiator) = stream.recv {
            return Err(StreamError::Reset { code, initiator });
        }
        if let Some(chunk) = stream.take_recv(max.max(1)) {
            let n = chunk.len() as u64;
            // SPEC §9.4: credit is released when the application reads.
            if stream.recv_credit.release(n) && !stream.fin_received() {
                stream.owe_window_update = true;
                self.queue_control(id);
            }
            if self.conn_recv.release(n) {
                self.owed.window_update = true;
            }
            self.maybe_reap(id);
            return Ok(ReadOutcome::Data(chunk));
        }
        if stream.fin_received() {
            self.maybe_reap(id);
            return Ok(ReadOutcome::Finished);
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        Ok(ReadOutcome::Blocked)
    }

    pub(super) fn gone_error(&self) -> StreamError {
        match &self.error {
            Some(err) => StreamError::ConnectionLost(err.clone()),
            None => StreamError::Reset {
                code: ErrorCode::CANCEL,
                initiator: Initiator::Local,
            },
        }
    }

    /// Sets the send priority of `id` (see [`Priority`]): from its next
    /// turn, the DATA scheduler serves it at its new urgency. Only this
    /// side's sending is affected; nothing goes on the wire (to ask the
    /// peer, see [`request_priority`](Self::request_priority)). No effect
    /// on a stream the connection does not know. A later PRIORITY_UPDATE
    /// from the peer replaces it, as this replaces the peer's.
    pub fn set_priority(&mut self, now: Instant, id: StreamId, priority: Priority) {
        self.now = now;
        self.apply_priority(id, priority);
    }

    /// Moves `id` to `priority` in the DATA scheduler.
    pub(super) fn apply_priority(&mut self, id: StreamId, priority: Priority) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut stream.priority, priority);
        // A stream not yet announced waits for its opening turn, in id
        // order; its priority applies from the turn after.
        if stream.queued == Queued::Data && !stream.needs_open && old != priority {
            self.queues.data.remove(id, old);
            self.queues.data.push(id, priority);
        }
    }

    /// The send priority of `id`, while the connection knows it.
    pub fn priority(&self, id: StreamId) -> Option<Priority> {
        self.streams.get(&id).map(|s| s.priority)
    }

    /// Aborts `id` in both directions with `code` (SPEC §8.7): unsent and
    /// unread bytes are dropped, and writes and reads fail with the code.
    /// The RESET covers the directions still open; none goes out on a
    /// closed stream (both FINs exchanged, only unread data left).
    pub fn reset(&mut self, now: Instant, id: StreamId, code: ErrorCode) {
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let both_reset = matches!(stream.send, SendState::Reset(..))
            && matches!(stream.recv, RecvState::Reset(..));
        if both_reset || (stream.send_done() && stream.recv_done()) {
            return;
        }
        tracing::debug!(side = ?self.side, stream = %id, %code, "stream reset (both directions)");
        let first = stream.reset().is_none();
        let owe_send = stream.send_open();
        let owe_recv = stream.recv_open();
        if !matches!(stream.send, SendState::Reset(..)) {
            stream.send = SendState::Reset(code, Initiator::Local);
        }
        if !matches!(stream.recv, RecvState::Reset(..)) {
            stream.recv = RecvState::Reset(code, Initiator::Local);
        }
        if owe_send {
            stream.owe_reset = true;
        }
        if owe_recv {
            stream.owe_stop = true;
        }
        self.drop_send(id);
        let discarded = self.drop_recv(id);
        if owe_send || owe_recv {
            // A stream the peer has not heard of yet: its id used
            // stream-count credit (SPEC §9.6) that only a frame on it
            // returns, so write_data still sends the opening frame, in id
            // order (§8.2), with this RESET right behind it.
            if self.streams.get(&id).is_some_and(|s| !s.needs_open) {
                self.queue_control(id);
            }
            if first {
                self.count_closed(Closed::ResetLocal);
            }
        }
        self.release_conn_credit(discarded);
        self.stop_watching(id);
        self.wake(id);
        self.maybe_reap(id);
    }

    /// Aborts only the writing of `id` with `code` (SPEC §8.7.1, RESET
    /// SEND): unsent bytes are dropped and writes fail with the code, while
    /// the peer's direction stays readable. A peer that did not announce
    /// DIRECTIONAL_RESET cannot be told one direction apart: then both are
    /// reset ([`Connection::reset`]). Nothing happens once the FIN went out.
    pub fn reset_send(&mut self, now: Instant, id: StreamId, code: ErrorCode) {
        if !self.peer_resets_directions() {
            self.reset(now, id, code);
            return;
        }
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.send_open() {
            return;
        }
        tracing::debug!(side = ?self.side, stream = %id, %code, "stream reset (sending)");
        let first = stream.reset().is_none();
        stream.send = SendState::Reset(code, Initiator::Local);
        stream.owe_reset = true;
        let announced = !stream.needs_open;
        self.drop_send(id);
        if announced {
            self.queue_control(id);
        }
        self.end_stream_probe(now, id, false);
        if first {
            self.count_closed(Closed::ResetLocal);
        }
        self.wake(id);
        self.maybe_reap(id);
    }

    /// Stops reading `id` with `code` (SPEC §8.7.1, RESET RECEIVE): unread
    /// bytes are dropped, reads fail with the code, and the peer stops
    /// sending (its writes fail with the code); this side's writing goes
    /// on. A peer that did not announce DIRECTIONAL_RESET keeps sending,
    /// and what arrives is dropped with its credit returned
    /// ([`Connection::stop_reading`]).
    pub fn stop(&mut self, now: Instant, id: StreamId, code: ErrorCode) {
        let open = self.streams.get(&id).is_some_and(|s| s.recv_open());
        if !self.peer_resets_directions() || !open {
            self.stop_reading(now, id);
            return;
        }
        self.now = now;
        tracing::debug!(side = ?self.side, stream = %id, %code, "stream reset (receiving)");
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let first = stream.reset().is_none();
        stream.recv = RecvState::Reset(code, Initiator::Local);
        stream.owe_stop = true;
        // Not waiting for the peer's FIN any more (SPEC §12.4).
        stream.half_closed_at = None;
        let announced = !stream.needs_open;
        let discarded = self.drop_recv(id);
        if announced {
            self.queue_control(id);
        }
        self.release_conn_credit(discarded);
        if first {
            self.count_closed(Closed::ResetLocal);
        }
        self.wake(id);
        self.maybe_reap(id);
    }

    /// The peer announced DIRECTIONAL_RESET (SPEC §7.1).
    pub(super) fn peer_resets_directions(&self) -> bool {
        self.handshake.peer.is_some_and(|p| p.directional_reset)
    }

    /// The send direction of `id` ended by a reset: its unsent bytes, a
    /// BLOCKED owed for it and its place in the connection-credit queue go.
    pub(super) fn drop_send(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.clear_send();
        stream.owe_blocked = false;
        if stream.queued == Queued::ConnBlocked {
            // Leave the connection-credit queue now, so the stream can be
            // forgotten without waiting for connection credit (§11.1).
            stream.queued = Queued::No;
            self.queues.conn_blocked.retain(|&queued| queued != id);
        }
    }

    /// The receive direction of `id` ended by a reset: its unread bytes go,
    /// and with them a WINDOW_UPDATE owed for it. Returns the byte count,
    /// whose connection credit the caller releases (SPEC §9.7).
    pub(super) fn drop_recv(&mut self, id: StreamId) -> u64 {
        let Some(stream) = self.streams.get_mut(&id) else {
            return 0;
        };
        let discarded = stream.discard_recv();
        let _ = stream.recv_credit.release(discarded);
        stream.owe_window_update = false;
        discarded
    }

    /// The application dropped its handle to `id` (SPEC §8.8). Unread
    /// data is discarded. If the peer may still send and the application
    /// had not already stopped reading, the stream is reset with CANCEL;
    /// otherwise buffered bytes and a FIN still go out, and the stream is
    /// forgotten once the peer finishes too.
    pub fn release(&mut self, now: Instant, id: StreamId) {
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.released = true;
        // Unread data goes, whatever happens to the stream (SPEC §9.7);
        // after a peer's RESET that followed its FIN, some may be left.
        let discarded = stream.discard_recv();
        let _ = stream.recv_credit.release(discarded);
        self.release_conn_credit(discarded);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.takes_data() {
            // The peer may still send, to a reader that is gone.
            match stream.send {
                SendState::Finishing => {
                    // The write side was finished: its bytes and FIN still
                    // go out, and nothing is read any more. RESET CANCEL
                    // then stops the peer's direction; the peer keeps ours
                    // (§8.7).
                    stream.recv = RecvState::Discarding;
                    stream.cancel_after_fin = true;
                }
                // Finished, or abandoned mid-write, or the writing was
                // reset already: the RESET stops what is still open (§8.7;
                // only the peer's direction, if the writing is over).
                SendState::Finished | SendState::Open | SendState::Reset(..) => {
                    self.reset(now, id, ErrorCode::CANCEL);
                }
            }
        } else if stream.send == SendState::Open {
            // The peer finished or reset its direction, or nobody reads any
            // more (arriving bytes are dropped): this side finishes too,
            // after what it buffered.
            stream.send = SendState::Finishing;
            self.schedule_data(id);
        }
        self.maybe_reap(id);
    }

    /// One half of the application's handle to `id` was dropped. The
    /// second half dropped releases the stream ([`Connection::release`]).
    /// Before that, a half dropped `alone` (the halves were split) ends
    /// its direction: a read half stops reading, a write half finishes.
    pub fn drop_half(&mut self, now: Instant, id: StreamId, half: Half, alone: bool) {
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let (mine, other) = match half {
            Half::Recv => (&mut stream.recv_handle_dropped, stream.send_handle_dropped),
            Half::Send => (&mut stream.send_handle_dropped, stream.recv_handle_dropped),
        };
        if other {
            self.release(now, id);
            return;
        }
        *mine = true;
        if alone {
            match half {
                Half::Recv => self.stop_reading(now, id),
                Half::Send => {
                    // Already finished or reset: nothing more to end.
                    let _ = self.finish(now, id);
                }
            }
        }
    }

    /// The application will not read `id` any more (its read half was
    /// dropped): buffered and future bytes are discarded and their credit
    /// returned at once. The send direction is unaffected.
    pub fn stop_reading(&mut self, now: Instant, id: StreamId) {
        self.now = now;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.recv == RecvState::Open {
            stream.recv = RecvState::Discarding;
        }
        let discarded = stream.discard_recv();
        let _ = stream.recv_credit.release(discarded);
        self.release_conn_credit(discarded);
        self.maybe_reap(id);
    }

    /// Sends a PING unless one is in flight. Its RTT shows in
    /// [`Connection::rtt`] when the acknowledgement arrives. Beyond 50
    /// PINGs in 1 s the next one waits (SPEC §12.1), and counts as in
    /// flight meanwhile.
    pub fn ping(&mut self, now: Instant) {
        self.now = now;
        if self.error.is_some() {
            return;
        }
        if let Some(at) = self.pinger.request(now) {
            self.timers.set(Timer::PingPace, at);
        }
    }

    /// Lets the deferred PING out if the sender budget allows, otherwise
    /// arms the timer for when it will.
    pub(super) fn send_deferred_ping(&mut self, now: Instant) {
        if let Some(at) = self.pinger.release(now) {
            self.timers.set(Timer::PingPace, at);
        }
    }
}
