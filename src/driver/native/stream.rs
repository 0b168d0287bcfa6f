//! The streams of a native session: one QUIC bidirectional stream each,
//! behind the public handles' backend traits (`driver/backend.rs`).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use quinn::VarInt;
use tokio::io::ReadBuf;

use super::{Shared, error_code};
use crate::conn::Priority;
use crate::driver::backend::{RecvBackend, SendBackend};
use crate::driver::now;
use crate::error::{ConnectionError, Initiator, PriorityRequestError, StreamError};
use crate::frame::{ErrorCode, StreamId};
use crate::stats::StreamStats;

/// Shared by the halves of one native stream.
pub(crate) struct StreamRef {
    pub(crate) id: StreamId,
    pub(super) shared: Arc<Shared>,
    /// The receive direction: here rather than in the read half so that a
    /// reset through the write half can stop it and wake its reader.
    pub(super) recv: Mutex<RecvSlot>,
    /// The peer's FIN was read.
    pub(super) recv_finished: AtomicBool,
    pub(super) bytes_sent: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    /// The code this side reset its sending direction with, if it did.
    pub(super) local_reset: Mutex<Option<ErrorCode>>,
    /// The peer stopped this side's sending direction (counted once).
    pub(super) remote_stop: AtomicBool,
    /// The peer's GOAWAY refused this stream (SPEC §13.1).
    pub(super) refused: AtomicBool,
    /// The peer's latest PRIORITY_UPDATE not applied yet: the write half
    /// applies it from its next write or wait (SPEC §18.3).
    pub(super) peer_priority: Mutex<Option<Priority>>,
    /// The write half waiting for its bytes to be delivered, woken to
    /// apply a request to what quinn still holds.
    pub(super) send_waker: Mutex<Option<Waker>>,
}

pub(super) struct RecvSlot {
    pub(super) stream: quinn::RecvStream,
    /// The task waiting to read, woken when the stream is reset locally
    /// (quinn's `stop` drops the reader's waker without waking it).
    pub(super) waker: Option<Waker>,
    /// The peer's RESET_STREAM code: quinn reports it once, every later
    /// read must report it again.
    pub(super) remote_reset: Option<ErrorCode>,
    /// The code this side stopped reading with (a reset of both
    /// directions, or a stop of this one): reads fail with it.
    pub(super) local_stop: Option<ErrorCode>,
}

impl StreamRef {
    fn local_reset(&self) -> Option<ErrorCode> {
        *self.local_reset_slot()
    }

    fn local_reset_slot(&self) -> MutexGuard<'_, Option<ErrorCode>> {
        self.local_reset
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot(&self) -> MutexGuard<'_, RecvSlot> {
        self.recv
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next chunk of the receive direction, without copying; `None` at
    /// the end. A reset from either side is reported on every call.
    fn poll_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, StreamError>> {
        let mut slot = self.slot();
        if let Some(code) = slot.local_stop {
            return Poll::Ready(Err(StreamError::Reset {
                code,
                initiator: Initiator::Local,
            }));
        }
        if let Some(code) = slot.remote_reset {
            return Poll::Ready(Err(StreamError::Reset {
                code,
                initiator: Initiator::Remote,
            }));
        }
        // read_chunk is cancel-safe: a pending future dropped here loses
        // nothing, and its waker stays registered with the connection.
        let read = std::pin::pin!(slot.stream.read_chunk(max, true)).poll(cx);
        match read {
            Poll::Pending => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Poll::Ready(Ok(Some(chunk))) => {
                drop(slot);
                let n = chunk.bytes.len() as u64;
                self.bytes_received.fetch_add(n, Ordering::Relaxed);
                self.shared.data_received.fetch_add(n, Ordering::Relaxed);
                Poll::Ready(Ok(Some(chunk.bytes)))
            }
            Poll::Ready(Ok(None)) => {
                drop(slot);
                self.recv_finished.store(true, Ordering::Relaxed);
                self.peer_done_sending();
                Poll::Ready(Ok(None))
            }
            Poll::Ready(Err(quinn::ReadError::Reset(code))) => {
                let code = error_code(code);
                slot.remote_reset = Some(code);
                drop(slot);
                self.peer_done_sending();
                self.shared.stream_reset_by_peer();
                Poll::Ready(Err(StreamError::Reset {
                    code,
                    initiator: Initiator::Remote,
                }))
            }
            Poll::Ready(Err(quinn::ReadError::ConnectionLost(err))) => {
                drop(slot);
                Poll::Ready(Err(self.shared.stream_error(&err)))
            }
            // Stopped by this side: reported above; or a 0-RTT or
            // unordered-read error that this mode cannot produce.
            Poll::Ready(Err(_)) => Poll::Ready(Err(StreamError::Reset {
                code: slot.local_stop.unwrap_or(ErrorCode::CANCEL),
                initiator: Initiator::Local,
            })),
        }
    }

    /// Whether the peer will send nothing more: its FIN (or a reset) has
    /// arrived. Reads and discards what is buffered to find out, so only
    /// for a stream whose read side is being dropped.
    fn peer_done(&self) -> bool {
        if self.recv_finished.load(Ordering::Relaxed) {
            return true;
        }
        let mut slot = self.slot();
        if slot.remote_reset.is_some() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match std::pin::pin!(slot.stream.read_chunk(usize::MAX, false)).poll(&mut cx) {
                Poll::Ready(Ok(Some(_))) => {}
                Poll::Ready(Ok(None) | Err(_)) => return true,
                Poll::Pending => return false,
            }
        }
    }

    /// This side stopped reading (reads fail with the code it gave).
    fn stopped_locally(&self) -> bool {
        self.slot().local_stop.is_some()
    }

    /// Stops reading with `code` (STOP_SENDING, SPEC §18.4): pending and
    /// later reads fail with it.
    fn stop_reading(&self, code: ErrorCode) {
        self.slot().local_stop.get_or_insert(code);
        self.stop(code);
        self.peer_done_sending();
    }

    /// Stops the receive direction with `code` and wakes its reader.
    fn stop(&self, code: ErrorCode) {
        let mut slot = self.slot();
        let _ = slot.stream.stop(VarInt::from_u32(code.0));
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    /// The peer's GOAWAY did not cover this stream (SPEC §13.1): reads and
    /// writes fail with REFUSED_STREAM from now on; the write half resets
    /// its QUIC side at its next use or when dropped.
    pub(super) fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
        let mut slot = self.slot();
        slot.remote_reset.get_or_insert(ErrorCode::REFUSED_STREAM);
        let _ = slot
            .stream
            .stop(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    /// Resets the stream both ways with `code` (SPEC §18.4: RESET_STREAM
    /// and STOP_SENDING).
    fn reset(&self, send: &mut quinn::SendStream, code: ErrorCode) {
        *self.local_reset_slot() = Some(code);
        let _ = send.reset(VarInt::from_u32(code.0));
        self.stop_reading(code);
    }

    fn stats(&self) -> StreamStats {
        // quinn keeps the stream's buffers and credit and does not report
        // them: those fields say so (`None`).
        StreamStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            send_buffered: None,
            recv_buffered: None,
            send_window: None,
            recv_window: None,
            blocked_on_stream: None,
            zero_window_events: None,
            probes_sent: None,
        }
    }

    fn write_error(&self, err: quinn::WriteError) -> StreamError {
        match err {
            quinn::WriteError::Stopped(code) => {
                if !self.remote_stop.swap(true, Ordering::Relaxed) {
                    self.shared.stream_reset_by_peer();
                }
                StreamError::Reset {
                    code: error_code(code),
                    initiator: Initiator::Remote,
                }
            }
            quinn::WriteError::ConnectionLost(err) => self.shared.stream_error(&err),
            _ => match self.local_reset() {
                Some(code) => StreamError::Reset {
                    code,
                    initiator: Initiator::Local,
                },
                None => StreamError::Finished,
            },
        }
    }
}

impl StreamRef {
    /// The peer asks for `priority` (see `peer_priority`).
    pub(super) fn request_priority(&self, priority: Priority) {
        *self.peer_priority() = Some(priority);
        let waker = self.send_waker().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn peer_priority(&self) -> MutexGuard<'_, Option<Priority>> {
        self.peer_priority
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The peer sends no more on the stream: a priority request of this
    /// side not written yet is moot (SPEC §6.10).
    fn peer_done_sending(&self) {
        self.shared.lock().plane.forget_request(self.id);
    }

    fn send_waker(&self) -> MutexGuard<'_, Option<Waker>> {
        self.send_waker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.local_streams.remove(&self.id);
        state.peer_streams.remove(&self.id);
        state.plane.forget_request(self.id);
        state.open_streams -= 1;
        let open = state.open_streams;
        state.plane.set_open_streams(now(), open);
        drop(state);
        if open == 0 {
            self.shared.task.notify_one();
        }
    }
}

/// The read half of a native stream.
pub(crate) struct RecvHalf {
    pub(super) handle: Arc<StreamRef>,
    /// False while part of a whole `Stream`.
    pub(super) alone: bool,
}

/// The read half as the public handle holds it: with the part of a chunk
/// `poll_fill` has not copied out yet.
pub(crate) struct NativeRecv {
    pub(super) half: RecvHalf,
    pub(super) leftover: Bytes,
}

impl RecvBackend for NativeRecv {
    fn id(&self) -> StreamId {
        self.half.handle.id
    }

    fn set_alone(&mut self) {
        self.half.alone = true;
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>> {
        if !self.leftover.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.leftover))));
        }
        self.half.handle.poll_chunk(cx, usize::MAX)
    }

    fn stop(&mut self, code: ErrorCode) {
        self.leftover = Bytes::new();
        self.half.handle.stop_reading(code);
    }

    fn request_priority(&mut self, priority: Priority) -> Result<(), PriorityRequestError> {
        let handle = &self.half.handle;
        let ended = {
            let slot = handle.slot();
            slot.local_stop.is_some() || slot.remote_reset.is_some()
        };
        if ended || handle.recv_finished.load(Ordering::Relaxed) {
            return Err(PriorityRequestError::Finished);
        }
        let id = handle.id;
        handle
            .shared
            .with_plane(|plane| plane.request_priority(now(), id, priority))
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.leftover.is_empty() {
            match ready!(self.half.handle.poll_chunk(cx, buf.remaining())) {
                Ok(Some(bytes)) => self.leftover = bytes,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(err) => return Poll::Ready(Err(err.into())),
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover[..n]);
        self.leftover.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvHalf {
    /// Dropped alone, the read half keeps the stream's incoming bytes
    /// flowing and discards them (as in framed mode), on a task of its own,
    /// for at most the half-close timeout; without a runtime it stops the
    /// peer's direction instead.
    fn drop(&mut self) {
        if !self.alone
            || self.handle.recv_finished.load(Ordering::Relaxed)
            || self.handle.stopped_locally()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.handle.stop(ErrorCode::CANCEL);
            return;
        };
        let handle = self.handle.clone();
        let limit = handle.shared.lock().plane.config().half_close_timeout();
        runtime.spawn(async move {
            let discard = poll_fn(|cx| {
                loop {
                    match ready!(handle.poll_chunk(cx, usize::MAX)) {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => return Poll::Ready(()),
                    }
                }
            });
            let finished = match limit {
                Some(limit) => tokio::time::timeout(limit, discard).await.is_ok(),
                None => {
                    discard.await;
                    true
                }
            };
            if !finished {
                handle.stop(ErrorCode::CANCEL);
            }
        });
    }
}

/// The write half of a native stream. Dropped alone, it finishes the
/// stream, which stays open until its bytes are delivered.
pub(crate) struct SendHalf {
    pub(super) handle: Arc<StreamRef>,
    pub(super) send: quinn::SendStream,
    /// False while part of a whole `Stream`.
    pub(super) alone: bool,
    /// The write side was finished (FIN queued in quinn).
    pub(super) finished: bool,
    /// Resolves once the peer acknowledged every byte and the FIN (quinn's
    /// `stopped`), for `poll_shutdown`.
    pub(super) delivered: Option<Delivered>,
    pub(super) priority: Priority,
}

/// quinn's `SendStream::stopped` future.
pub(super) type Delivered = Pin<
    Box<dyn Future<Output = Result<Option<VarInt>, quinn::StoppedError>> + Send + Sync + 'static>,
>;

impl SendHalf {
    fn count_sent(&self, n: usize) {
        let n = n as u64;
        self.handle.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.handle.shared.data_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Before a write: applies the peer's priority request, if one came;
    /// REFUSED_STREAM if the peer's GOAWAY refused the stream, resetting
    /// the QUIC send side then (harmless when repeated).
    fn refused(&mut self) -> Result<(), StreamError> {
        self.apply_peer_priority();
        if !self.handle.refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _ = self
            .send
            .reset(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
        Err(StreamError::Reset {
            code: ErrorCode::REFUSED_STREAM,
            initiator: Initiator::Remote,
        })
    }
}

impl SendBackend for SendHalf {
    fn id(&self) -> StreamId {
        self.handle.id
    }

    fn set_alone(&mut self) {
        self.alone = true;
    }

    async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.refused()?;
        let n = data.len();
        self.send
            .write_chunk(data)
            .await
            .map_err(|err| self.handle.write_error(err))?;
        self.count_sent(n);
        Ok(())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.refused()?;
        match ready!(Pin::new(&mut self.send).poll_write(cx, buf)) {
            Ok(n) => {
                self.count_sent(n);
                Poll::Ready(Ok(n))
            }
            Err(err) => Poll::Ready(Err(self.handle.write_error(err).into())),
        }
    }

    /// Bytes written are with quinn, which sends and resends them.
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.refused()?;
        let finished = self
            .send
            .finish()
            .map_err(|_| match self.handle.local_reset() {
                Some(code) => StreamError::Reset {
                    code,
                    initiator: Initiator::Local,
                },
                None => StreamError::Finished,
            });
        if matches!(finished, Ok(()) | Err(StreamError::Finished)) {
            self.finished = true;
        }
        finished
    }

    /// Finishes the write side and waits until the peer has acknowledged
    /// every byte and the FIN: quinn keeps unacknowledged data only as long
    /// as the connection lives, so in native mode this, not the hand-over
    /// to quinn, is what makes the bytes safe from a closing process.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.finish() {
            Ok(()) | Err(StreamError::Finished) => {}
            Err(err) => return Poll::Ready(Err(err.into())),
        }
        Poll::Ready(match ready!(self.poll_stopped(cx)) {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(StreamError::Reset {
                code,
                initiator: Initiator::Remote,
            }
            .into()),
            Err(err) => Err(err.into()),
        })
    }

    /// quinn's `stopped`: the peer's STOP_SENDING, or every byte and the
    /// FIN acknowledged.
    fn poll_stopped(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<ErrorCode>, StreamError>> {
        // Registered first: a request arriving from here on wakes this
        // task to apply it to the bytes quinn still holds.
        *self.handle.send_waker() = Some(cx.waker().clone());
        self.apply_peer_priority();
        let send = &self.send;
        let delivered = self
            .delivered
            .get_or_insert_with(|| Box::pin(send.stopped()));
        let outcome = ready!(delivered.as_mut().poll(cx));
        self.handle.send_waker().take();
        self.delivered = None;
        Poll::Ready(match outcome {
            Ok(None) => Ok(None),
            Ok(Some(code)) => Ok(Some(error_code(code))),
            Err(quinn::StoppedError::ConnectionLost(err)) => {
                Err(self.handle.shared.stream_error(&err))
            }
            Err(quinn::StoppedError::ZeroRttRejected) => Err(StreamError::ConnectionLost(
                ConnectionError::TransportClosed,
            )),
        })
    }

    /// Aborts the stream with `code` (SPEC §18.4). After `finish` only the
    /// peer's direction is stopped (STOP_SENDING): a RESET after the FIN
    /// keeps the finished direction (§8.7), while QUIC's RESET_STREAM would
    /// let the peer discard it.
    fn reset(&mut self, code: ErrorCode) {
        if self.finished {
            *self.handle.local_reset_slot() = Some(code);
            self.handle.stop_reading(code);
        } else {
            self.handle.reset(&mut self.send, code);
        }
    }

    /// Aborts only the writing (RESET_STREAM, SPEC §8.7.1, §18.4); nothing
    /// once the write side is finished.
    fn reset_send(&mut self, code: ErrorCode) {
        if self.finished || self.handle.local_reset().is_some() {
            return;
        }
        *self.handle.local_reset_slot() = Some(code);
        let _ = self.send.reset(VarInt::from_u32(code.0));
    }

    fn stats(&self) -> Option<StreamStats> {
        Some(self.handle.stats())
    }

    fn set_priority(&mut self, priority: Priority) {
        // The later of this and a request of the peer wins (SPEC §10.2).
        self.handle.peer_priority().take();
        self.apply_priority(priority);
    }

    /// The peer's request not applied yet, or the latest set.
    fn priority(&self) -> Priority {
        self.handle.peer_priority().unwrap_or(self.priority)
    }
}

impl SendHalf {
    /// Applies the peer's request, if one came since.
    fn apply_peer_priority(&mut self) {
        let requested = self.handle.peer_priority().take();
        if let Some(priority) = requested {
            self.apply_priority(priority);
        }
    }

    /// quinn's stream priority: higher goes first, and every stream
    /// starts at 0, so the default urgency maps to 0 and urgency `u` to
    /// `3 - u` (urgency 0 is 3, urgency 7 is -4). quinn shares a level
    /// round-robin (its `send_fairness`, on), so a stream that is not
    /// incremental still takes turns with its level.
    fn apply_priority(&mut self, priority: Priority) {
        self.priority = priority;
        let default = i32::from(Priority::default().urgency());
        let _ = self
            .send
            .set_priority(default - i32::from(priority.urgency()));
    }
}

impl Drop for SendHalf {
    /// A whole `Stream` dropped (SPEC §18.4): if the peer may still send,
    /// the stream is reset with CANCEL both ways, since nobody would read
    /// what it sends; otherwise the write side is finished after the bytes
    /// already written, as for a write half dropped alone, and the stream
    /// stays open until they are delivered.
    fn drop(&mut self) {
        if self.refused().is_err() {
            return;
        }
        if !self.alone && self.handle.local_reset().is_none() && !self.handle.peer_done() {
            if self.finished {
                // SPEC §8.7: what was finished is delivered; only the
                // peer's direction is stopped (STOP_SENDING).
                self.handle.stop(ErrorCode::CANCEL);
            } else {
                self.reset(ErrorCode::CANCEL);
            }
        }
        if self.handle.local_reset().is_none() {
            self.hold_until_delivered();
        }
    }
}

impl SendHalf {
    /// Finishes the write side and, until the peer's QUIC has acknowledged
    /// every byte and the FIN (or stopped the stream), keeps the stream
    /// counted as open on a task of its own: a graceful close must not
    /// close the connection over them, since QUIC discards unacknowledged
    /// data then (SPEC §18.6). The connection's end, at the latest the
    /// drain timeout's, ends the wait, and so does the half-close timeout
    /// (a peer that neither reads nor stops the stream holds nothing for
    /// longer; QUIC goes on sending it until the connection ends). Without
    /// a runtime, or with nothing left to deliver, nothing is held.
    fn hold_until_delivered(&mut self) {
        let _ = self.send.finish();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut delivered = Box::pin(self.send.stopped());
        let mut cx = Context::from_waker(Waker::noop());
        if delivered.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        let handle = self.handle.clone();
        let limit = handle.shared.lock().plane.config().half_close_timeout();
        runtime.spawn(async move {
            match limit {
                Some(limit) => {
                    let _ = tokio::time::timeout(limit, delivered).await;
                }
                None => {
                    let _ = delivered.await;
                }
            }
            drop(handle);
        });
    }
}
