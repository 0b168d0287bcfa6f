//! The byte-stream engine behind the public handles: a session is the
//! [`Shared`] state of one connection (the sans-IO core behind its lock,
//! the transport's halves, the waiters), a stream half is its id and a
//! reference to that state. Every operation locks the core for a moment,
//! asks it, and parks the task's waker if it must wait.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::ReadBuf;

use super::backend::{RecvBackend, RecvImp, SendBackend, SendImp, SessionBackend};
use super::direct::DIRECT_PAYLOAD_MIN;
use super::{Shared, now};
use crate::conn::{Flush, Half, Priority, ReadOutcome, Side};
use crate::error::{ConnectionError, Initiator, OpenError, PriorityRequestError, StreamError};
use crate::frame::{ErrorCode, StreamId};
use crate::session::CloseReport;
use crate::stats::{SessionStats, StreamStats};
use crate::stream::Stream;

/// A session of the byte-stream engine.
pub(crate) struct MuxSession(pub(crate) Arc<Shared>);

impl MuxSession {
    fn stream(&self, id: StreamId) -> Stream {
        let shared = &self.0;
        // The halves of a whole stream are built with `alone: false`:
        // dropped together, the second releases the stream.
        Stream::from_parts(
            RecvImp::Mux(MuxRecv {
                handle: StreamRef {
                    id,
                    shared: shared.clone(),
                },
                alone: false,
            }),
            SendImp::Mux(MuxSend {
                handle: StreamRef {
                    id,
                    shared: shared.clone(),
                },
                alone: false,
                priority: Priority::default(),
            }),
        )
    }
}

impl SessionBackend for MuxSession {
    async fn open(&self) -> Result<Stream, OpenError> {
        let shared = &self.0;
        let id = poll_fn(|cx| {
            let mut inner = shared.lock();
            match inner.conn.open(now()) {
                Ok(Some(id)) => {
                    inner.after_command();
                    Poll::Ready(Ok(id))
                }
                Ok(None) => {
                    inner.after_command();
                    inner.wait_conn(cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            }
        })
        .await?;
        Ok(self.stream(id))
    }

    async fn accept(&self) -> Result<Option<Stream>, ConnectionError> {
        let shared = &self.0;
        let id = poll_fn(|cx| {
            let mut inner = shared.lock();
            if let Some(id) = inner.conn.accept() {
                return Poll::Ready(Ok(Some(id)));
            }
            if inner.conn.accept_finished() || inner.driver_done {
                return Poll::Ready(match inner.conn.error() {
                    Some(err) if !err.is_graceful() => Err(err.clone()),
                    _ => Ok(None),
                });
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(id.map(|id| self.stream(id)))
    }

    async fn ping(&self) -> Result<Duration, ConnectionError> {
        let shared = &self.0;
        let target = {
            let mut inner = shared.lock();
            inner.conn.ping(now());
            inner.after_command();
            inner.conn.pings_completed() + 1
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.conn.pings_completed() >= target {
                return Poll::Ready(Ok(inner.conn.rtt().unwrap_or_default()));
            }
            if let Some(err) = inner.conn.error() {
                return Poll::Ready(Err(err.clone()));
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await
    }

    async fn close(&self, code: ErrorCode, reason: &[u8]) -> Result<CloseReport, ConnectionError> {
        {
            let mut inner = self.0.lock();
            inner.conn.close(now(), code, reason);
            inner.after_command();
        }
        let cause = self.closed().await;
        match cause {
            ConnectionError::LocallyClosed { .. }
            | ConnectionError::ClosedByPeer {
                code: ErrorCode::NO_ERROR,
                ..
            } => {
                let stats = self.0.lock().conn.stats();
                Ok(CloseReport {
                    cause,
                    streams_completed: Some(stats.streams_completed),
                    streams_reset: Some(stats.streams_reset_local + stats.streams_reset_remote),
                    streams_cancelled_at_drain: Some(stats.streams_cancelled_at_drain),
                })
            }
            err => Err(err),
        }
    }

    async fn closed(&self) -> ConnectionError {
        let shared = &self.0;
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.driver_done {
                return Poll::Ready(
                    inner
                        .conn
                        .error()
                        .cloned()
                        .unwrap_or(ConnectionError::TransportClosed),
                );
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn error(&self) -> Option<ConnectionError> {
        self.0.lock().conn.error().cloned()
    }

    fn stats(&self) -> SessionStats {
        self.0.lock().conn.stats().into()
    }

    fn side(&self) -> Side {
        self.0.lock().conn.side()
    }

    fn clone_handle(&self) -> Self {
        self.0.lock().session_handles += 1;
        MuxSession(self.0.clone())
    }

    fn drop_handle(&self) {
        let mut inner = self.0.lock();
        inner.session_handles -= 1;
        if inner.session_handles == 0 && !inner.conn.is_finished() {
            inner.conn.close(now(), ErrorCode::NO_ERROR, b"");
            inner.after_command();
        }
    }
}

/// What each half of a core stream holds. The core counts the halves
/// (`Connection::drop_half`), so a stream costs no allocation of its own
/// here.
struct StreamRef {
    id: StreamId,
    shared: Arc<Shared>,
}

impl StreamRef {
    /// One half of the handle is dropped: its waker goes, and the core
    /// ends its direction (alone) or releases the stream (the second half).
    fn drop_half(&self, half: Half, alone: bool) {
        let mut inner = self.shared.lock();
        match half {
            Half::Recv => inner.unpark_reader(self.id),
            Half::Send => inner.unpark_writer(self.id),
        }
        inner.conn.drop_half(now(), self.id, half, alone);
        inner.after_command();
    }
}

/// Error for a handle whose session task is gone without a recorded cause.
fn driver_gone() -> StreamError {
    StreamError::ConnectionLost(ConnectionError::TransportClosed)
}

/// The read half of a stream of the creditmux core.
pub(crate) struct MuxRecv {
    handle: StreamRef,
    /// False while part of a whole `Stream`.
    alone: bool,
}

/// Direct reads one poll makes before it parks (each handles whatever the
/// transport had, for any stream).
const DIRECT_READS: usize = 4;

impl RecvBackend for MuxRecv {
    fn id(&self) -> StreamId {
        self.handle.id
    }

    fn set_alone(&mut self) {
        self.alone = true;
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let mut waiting = Waiting::default();
        loop {
            let mut inner = shared.lock_for("recv: read");
            match inner.conn.read(now(), id, usize::MAX) {
                Ok(ReadOutcome::Data(bytes)) => {
                    inner.after_command();
                    return Poll::Ready(Ok(Some(bytes)));
                }
                Ok(ReadOutcome::Finished) => {
                    inner.after_command();
                    return Poll::Ready(Ok(None));
                }
                Ok(ReadOutcome::Blocked) if inner.driver_done => {
                    return Poll::Ready(Err(driver_gone()));
                }
                Ok(ReadOutcome::Blocked) => {
                    if !waiting.read_or_park(shared, inner, id, cx) {
                        return Poll::Pending;
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    fn stop(&mut self, code: ErrorCode) {
        let mut inner = self.handle.shared.lock();
        inner.conn.stop(now(), self.handle.id, code);
        inner.after_command();
    }

    fn request_priority(&mut self, priority: Priority) -> Result<(), PriorityRequestError> {
        let mut inner = self.handle.shared.lock();
        let result = inner.conn.request_priority(now(), self.handle.id, priority);
        inner.after_command();
        result
    }

    /// Copies as many buffered bytes as fit into `buf` under one lock (a
    /// chunk is at most one frame, so a large read would otherwise take one
    /// call per frame). Pending only when nothing was buffered.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let mut copied = false;
        let mut waiting = Waiting::default();
        let mut inner = shared.lock_for("recv: fill");
        let t = now();
        while buf.remaining() > 0 {
            match inner.conn.read(t, id, buf.remaining()) {
                Ok(ReadOutcome::Data(bytes)) => {
                    buf.put_slice(&bytes);
                    copied = true;
                }
                Ok(ReadOutcome::Finished) => break,
                Ok(ReadOutcome::Blocked) if copied => break,
                Ok(ReadOutcome::Blocked) if inner.driver_done => {
                    return Poll::Ready(Err(driver_gone().into()));
                }
                Ok(ReadOutcome::Blocked) => {
                    // The rest of a large DATA payload for this stream
                    // goes straight into the caller's buffer, read with
                    // the core unlocked.
                    let want = inner.conn.direct_payload(id);
                    if want.min(buf.remaining()) >= DIRECT_PAYLOAD_MIN {
                        drop(inner);
                        let read = shared.read_payload_direct(id, want, buf);
                        inner = shared.lock_for("recv: fill after a direct payload");
                        if let Some(n) = read {
                            copied |= n > 0;
                            continue;
                        }
                    }
                    if !waiting.read_or_park(shared, inner, id, cx) {
                        return Poll::Pending;
                    }
                    inner = shared.lock_for("recv: fill after input");
                }
                // Reported on the next read, after the bytes before it.
                Err(_) if copied => break,
                Err(err) => return Poll::Ready(Err(err.into())),
            }
        }
        inner.after_command();
        Poll::Ready(Ok(()))
    }
}

/// How a read that found nothing buffered waits: it reads the transport
/// itself a few times (`DIRECT_READS`) when it is the lone reader, then
/// parks.
#[derive(Default)]
struct Waiting {
    tries: usize,
    /// The last direct read found nothing: the next look parks.
    nothing: bool,
}

impl Waiting {
    /// Nothing is buffered for stream `id` (`inner` says so, and is given
    /// up here): reads the transport from this task, with the core
    /// unlocked, if it may (true: look again); else parks the task's waker
    /// (false). After a direct read that found nothing it returns true
    /// once more, so the caller looks again (input may have come in
    /// meanwhile) before the next call parks.
    fn read_or_park(
        &mut self,
        shared: &Shared,
        mut inner: super::shared::CoreGuard<'_>,
        id: StreamId,
        cx: &mut Context<'_>,
    ) -> bool {
        // This task is polling now: input for the stream must not wake it
        // again.
        inner.unpark_reader(id);
        if !self.nothing && self.tries < DIRECT_READS && inner.parked_readers == 0 {
            self.tries += 1;
            drop(inner);
            if !shared.read_direct(cx.waker()) {
                self.nothing = true;
            }
            return true;
        }
        self.nothing = false;
        inner.park_reader(id, cx.waker());
        false
    }
}

impl Drop for MuxRecv {
    fn drop(&mut self) {
        // The last half releases the stream; a read half dropped alone
        // stops reading.
        self.handle.drop_half(Half::Recv, self.alone);
    }
}

/// The write half of a stream of the creditmux core.
pub(crate) struct MuxSend {
    handle: StreamRef,
    /// False while part of a whole `Stream`.
    alone: bool,
    priority: Priority,
}

impl SendBackend for MuxSend {
    fn id(&self) -> StreamId {
        self.handle.id
    }

    fn set_alone(&mut self) {
        self.alone = true;
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let direct = shared.write_direct(id, buf);
        if direct > 0 {
            return Poll::Ready(Ok(direct));
        }
        let mut inner = shared.lock_for("send: write");
        if shared.direct_writes
            && !inner.driver_done
            && inner.conn.wait_for_credit(now(), id, buf.len())
        {
            // Written directly once credit comes, not copied now.
            inner.park_writer(id, cx.waker());
            inner.after_task_change();
            return Poll::Pending;
        }
        match inner.conn.write(now(), id, buf) {
            Ok(0) if inner.driver_done => Poll::Ready(Err(driver_gone().into())),
            Ok(0) => {
                inner.park_writer(id, cx.waker());
                Poll::Pending
            }
            Ok(n) => {
                inner.after_command();
                Poll::Ready(Ok(n))
            }
            Err(err) => Poll::Ready(Err(err.into())),
        }
    }

    async fn send(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        poll_fn(|cx| {
            let id = self.handle.id;
            let shared = &*self.handle.shared;
            while !data.is_empty() {
                let direct = shared.write_direct(id, &data);
                if direct > 0 {
                    data.advance(direct);
                    continue;
                }
                let mut inner = shared.lock_for("send: buffer");
                let n = inner.conn.write_bytes(now(), id, &mut data)?;
                if n == 0 {
                    if inner.driver_done {
                        return Poll::Ready(Err(driver_gone()));
                    }
                    inner.after_command();
                    inner.park_writer(id, cx.waker());
                    return Poll::Pending;
                }
                inner.after_command();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Ready once every byte written so far (and a queued FIN) was taken
    /// by the transport and the transport flushed: the core emitted it,
    /// and the transport has taken and flushed up to where it ends.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.handle.id;
        let mut transmitted = false;
        loop {
            let mut inner = self.handle.shared.lock();
            match inner.conn.flush_state(id) {
                Err(err) => return Poll::Ready(Err(err.into())),
                Ok(Flush::Emitted(upto)) if inner.flushed >= upto => return Poll::Ready(Ok(())),
                Ok(_) if inner.driver_done => return Poll::Ready(Err(inner.lost().into())),
                Ok(_) if !transmitted => {
                    // Write (and flush) what is owed from this task if the
                    // writer is free, rather than wait for the driver's
                    // turn; then look again.
                    drop(inner);
                    transmitted = true;
                    self.handle.shared.transmit_direct();
                }
                Ok(Flush::Waiting) => {
                    // Woken when the core has emitted the rest.
                    inner.park_writer(id, cx.waker());
                    inner.after_task_change();
                    return Poll::Pending;
                }
                Ok(Flush::Emitted(_)) => {
                    // The driver (or a direct write) flushes and wakes us.
                    inner.wait_flush(cx.waker());
                    inner.wake_driver();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Finishes the write side, then waits as `poll_flush` does, for the
    /// FIN too.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.finish() {
            Ok(()) | Err(StreamError::Finished) => self.poll_flush(cx),
            Err(err) => Poll::Ready(Err(err.into())),
        }
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        let mut inner = self.handle.shared.lock();
        let result = inner.conn.finish(now(), self.handle.id);
        inner.after_command();
        result
    }

    fn reset(&mut self, code: ErrorCode) {
        let mut inner = self.handle.shared.lock();
        inner.conn.reset(now(), self.handle.id, code);
        inner.after_command();
    }

    fn reset_send(&mut self, code: ErrorCode) {
        let mut inner = self.handle.shared.lock();
        inner.conn.reset_send(now(), self.handle.id, code);
        inner.after_command();
    }

    /// The peer's RESET (`Some`), or this side's FIN on the transport
    /// (`None`); a local reset or the end of the connection is an error.
    fn poll_stopped(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<ErrorCode>, StreamError>> {
        let id = self.handle.id;
        let mut inner = self.handle.shared.lock();
        match inner.conn.send_reset(id) {
            Some((code, Initiator::Remote)) => return Poll::Ready(Ok(Some(code))),
            Some((code, initiator)) => {
                return Poll::Ready(Err(StreamError::Reset { code, initiator }));
            }
            None => {}
        }
        if inner.conn.is_finish_sent(id)
            && let Ok(Flush::Emitted(upto)) = inner.conn.flush_state(id)
        {
            if inner.flushed >= upto {
                return Poll::Ready(Ok(None));
            }
            inner.wait_flush(cx.waker());
        }
        if let Some(err) = inner.conn.error() {
            return Poll::Ready(Err(StreamError::ConnectionLost(err.clone())));
        }
        if inner.driver_done {
            return Poll::Ready(Err(inner.lost()));
        }
        // A RESET, the FIN going out or the end wakes the stream.
        inner.park_writer(id, cx.waker());
        Poll::Pending
    }

    fn stats(&self) -> Option<StreamStats> {
        let stats = self.handle.shared.lock().conn.stream_stats(self.handle.id);
        stats.map(StreamStats::from)
    }

    fn set_priority(&mut self, priority: Priority) {
        self.priority = priority;
        let mut inner = self.handle.shared.lock();
        inner.conn.set_priority(now(), self.handle.id, priority);
    }

    /// The core's, which a PRIORITY_UPDATE from the peer may have
    /// changed; the last one set here once the core forgot the stream.
    fn priority(&self) -> Priority {
        let inner = self.handle.shared.lock();
        inner.conn.priority(self.handle.id).unwrap_or(self.priority)
    }
}

impl Drop for MuxSend {
    fn drop(&mut self) {
        // The last half releases the stream; a write half dropped alone
        // finishes.
        self.handle.drop_half(Half::Send, self.alone);
    }
}
