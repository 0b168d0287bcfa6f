//! The public stream handles: [`Stream`], and its halves [`RecvStream`]
//! and [`SendStream`] for use on separate tasks.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::{Flush, Half, ReadOutcome, StreamStats};
#[cfg(feature = "quic")]
use crate::driver::native;
use crate::driver::{Inner, Shared};
use crate::error::{ConnectionError, StreamError};
use crate::frame::{ErrorCode, StreamId};

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
        inner.conn.drop_half(self.id, half, alone);
        inner.after_command();
    }
}

/// Error for a handle whose session task is gone without a recorded cause.
fn driver_gone() -> StreamError {
    StreamError::ConnectionLost(ConnectionError::TransportClosed)
}

/// One bidirectional stream.
///
/// Implements [`AsyncRead`] and [`AsyncWrite`]; [`Stream::send`] and
/// [`Stream::recv`] move [`Bytes`] without copying.
///
/// **Dropping** a `Stream`: bytes already written and a FIN still go out if
/// the peer has finished its direction; if the peer may still send, the
/// stream is reset with CANCEL instead (nobody would read what it sends).
/// For a graceful end, `shutdown()` the write side and read to the end.
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
}

impl Stream {
    /// The halves of a whole stream are built with `alone: false`: dropped
    /// together, the second releases the stream. [`Stream::split`] makes
    /// them halves of their own.
    pub(crate) fn new(id: StreamId, shared: Arc<Shared>) -> Stream {
        Stream {
            recv: RecvStream {
                imp: RecvImp::Mux(MuxRecv {
                    handle: StreamRef {
                        id,
                        shared: shared.clone(),
                    },
                    alone: false,
                }),
            },
            send: SendStream {
                imp: SendImp::Mux(MuxSend {
                    handle: StreamRef { id, shared },
                    alone: false,
                }),
            },
        }
    }

    /// A stream of a native QUIC session.
    #[cfg(feature = "quic")]
    pub(crate) fn native((recv, send): (native::RecvHalf, native::SendHalf)) -> Stream {
        Stream {
            recv: RecvStream {
                imp: RecvImp::Native(Box::new(NativeRecv {
                    half: recv,
                    leftover: Bytes::new(),
                })),
            },
            send: SendStream {
                imp: SendImp::Native(Box::new(send)),
            },
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.send.id()
    }

    /// Splits into a read half and a write half, usable on separate tasks.
    pub fn split(self) -> (RecvStream, SendStream) {
        let Stream { mut recv, mut send } = self;
        match &mut recv.imp {
            RecvImp::Mux(half) => half.alone = true,
            #[cfg(feature = "quic")]
            RecvImp::Native(native) => native.half.alone = true,
        }
        match &mut send.imp {
            SendImp::Mux(half) => half.alone = true,
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.alone = true,
        }
        (recv, send)
    }

    /// Sends `data` without copying it; waits while the stream's send
    /// buffer is full.
    pub async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.send.send(data).await
    }

    /// The next chunk of bytes, without copying; `None` at the end of the
    /// stream.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        self.recv.recv().await
    }

    /// Finishes the write side (FIN after the buffered bytes).
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.send.finish()
    }

    /// Aborts the stream in both directions with `code`.
    pub fn reset(&mut self, code: ErrorCode) {
        self.send.reset(code)
    }

    /// Per-stream counters, while the stream is open.
    pub fn stats(&self) -> Option<StreamStats> {
        self.send.stats()
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id()).finish()
    }
}

/// The read half of a [`Stream`].
///
/// Dropping it while the write half lives discards further incoming bytes
/// (their credit is returned at once); dropping both halves is dropping
/// the `Stream`.
pub struct RecvStream {
    imp: RecvImp,
}

/// Native streams are boxed: a handle of the core (every stream over TCP
/// or TLS) stays two words.
enum RecvImp {
    Mux(MuxRecv),
    #[cfg(feature = "quic")]
    Native(Box<NativeRecv>),
}

#[cfg(feature = "quic")]
struct NativeRecv {
    half: native::RecvHalf,
    /// Part of a chunk not yet copied out by `poll_read`.
    leftover: Bytes,
}

/// The read half of a stream of the creditmux core.
struct MuxRecv {
    handle: StreamRef,
    /// False while part of a whole `Stream`.
    alone: bool,
}

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        match &self.imp {
            RecvImp::Mux(half) => half.handle.id,
            #[cfg(feature = "quic")]
            RecvImp::Native(native) => native.half.id(),
        }
    }

    /// The next chunk of bytes, without copying; `None` at the end.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        poll_fn(|cx| match &mut self.imp {
            RecvImp::Mux(half) => half.poll_chunk(cx, usize::MAX),
            #[cfg(feature = "quic")]
            RecvImp::Native(native) if !native.leftover.is_empty() => {
                Poll::Ready(Ok(Some(std::mem::take(&mut native.leftover))))
            }
            #[cfg(feature = "quic")]
            RecvImp::Native(native) => native.half.poll_chunk(cx, usize::MAX),
        })
        .await
    }
}

#[cfg(feature = "quic")]
impl NativeRecv {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.leftover.is_empty() {
            match self.half.poll_chunk(cx, buf.remaining()) {
                Poll::Ready(Ok(Some(bytes))) => self.leftover = bytes,
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover[..n]);
        self.leftover.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Direct reads one poll makes before it parks (each handles whatever the
/// transport had, for any stream).
const DIRECT_READS: usize = 4;

impl MuxRecv {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, StreamError>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let mut inner = shared.lock();
        let mut tries = 0;
        loop {
            match inner.conn.read(id, max) {
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
                    if !self.wait(&mut inner, cx, &mut tries) {
                        return Poll::Pending;
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Copies as many buffered bytes as fit into `buf` under one lock (a
    /// chunk is at most one frame, so a large read would otherwise take one
    /// call per frame). Pending only when nothing was buffered.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Result<(), StreamError>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let mut inner = shared.lock();
        let mut copied = false;
        let mut tries = 0;
        while buf.remaining() > 0 {
            match inner.conn.read(id, buf.remaining()) {
                Ok(ReadOutcome::Data(bytes)) => {
                    buf.put_slice(&bytes);
                    copied = true;
                }
                Ok(ReadOutcome::Finished) => break,
                Ok(ReadOutcome::Blocked) if copied => break,
                Ok(ReadOutcome::Blocked) if inner.driver_done => {
                    return Poll::Ready(Err(driver_gone()));
                }
                Ok(ReadOutcome::Blocked) => {
                    // The rest of a large DATA payload for this stream
                    // goes straight into the caller's buffer.
                    if let Some(n) = shared.read_payload_direct(&mut inner, id, buf) {
                        copied |= n > 0;
                        continue;
                    }
                    if !self.wait(&mut inner, cx, &mut tries) {
                        return Poll::Pending;
                    }
                }
                // Reported on the next read, after the bytes before it.
                Err(_) if copied => break,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        inner.after_command();
        Poll::Ready(Ok(()))
    }

    /// Nothing is buffered for the stream: reads the transport from this
    /// task if it can (true: look again), else parks the task's waker.
    fn wait(&self, inner: &mut Inner, cx: &mut Context<'_>, tries: &mut usize) -> bool {
        let id = self.handle.id;
        // This task is polling now: input for the stream must not wake it
        // again.
        inner.unpark_reader(id);
        if *tries < DIRECT_READS && inner.parked_readers == 0 {
            *tries += 1;
            if self.handle.shared.read_direct(inner, cx.waker()) {
                return true;
            }
        }
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

impl AsyncRead for RecvStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match &mut self.imp {
            RecvImp::Mux(half) => half.poll_fill(cx, buf).map_err(io::Error::from),
            #[cfg(feature = "quic")]
            RecvImp::Native(native) => native.poll_read(cx, buf),
        }
    }
}

/// The write half of a [`Stream`].
///
/// Dropping it finishes the write side (FIN after the buffered bytes).
pub struct SendStream {
    imp: SendImp,
}

enum SendImp {
    Mux(MuxSend),
    #[cfg(feature = "quic")]
    Native(Box<native::SendHalf>),
}

/// The write half of a stream of the creditmux core.
struct MuxSend {
    handle: StreamRef,
    /// False while part of a whole `Stream`.
    alone: bool,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        match &self.imp {
            SendImp::Mux(half) => half.handle.id,
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.id(),
        }
    }

    /// Sends `data` without copying; waits while the send buffer is full.
    pub async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        match &mut self.imp {
            SendImp::Mux(half) => half.send(data).await,
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.send(data).await,
        }
    }

    /// Finishes the write side: a FIN follows the buffered bytes.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        match &mut self.imp {
            SendImp::Mux(half) => half.finish(),
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.finish(),
        }
    }

    /// Aborts the stream in both directions with `code`.
    pub fn reset(&mut self, code: ErrorCode) {
        match &mut self.imp {
            SendImp::Mux(half) => half.reset(code),
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.reset(code),
        }
    }

    /// Per-stream counters, while the stream is open. In native QUIC mode
    /// only the byte counts are kept; the rest is zero.
    pub fn stats(&self) -> Option<StreamStats> {
        match &self.imp {
            SendImp::Mux(half) => half.handle.shared.lock().conn.stream_stats(half.handle.id),
            #[cfg(feature = "quic")]
            SendImp::Native(half) => Some(half.stats()),
        }
    }
}

impl MuxSend {
    async fn send(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        poll_fn(|cx| {
            let id = self.handle.id;
            let shared = &*self.handle.shared;
            let mut inner = shared.lock();
            while !data.is_empty() {
                let direct = shared.write_direct(&mut inner, id, &data);
                if direct > 0 {
                    data.advance(direct);
                    continue;
                }
                let n = inner.conn.write_bytes(id, &mut data)?;
                if n == 0 {
                    if inner.driver_done {
                        return Poll::Ready(Err(driver_gone()));
                    }
                    inner.after_command();
                    inner.park_writer(id, cx.waker());
                    return Poll::Pending;
                }
            }
            inner.after_command();
            Poll::Ready(Ok(()))
        })
        .await
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        let mut inner = self.handle.shared.lock();
        let result = inner.conn.finish(self.handle.id);
        inner.after_command();
        result
    }

    fn reset(&mut self, code: ErrorCode) {
        let mut inner = self.handle.shared.lock();
        inner.conn.reset(self.handle.id, code);
        inner.after_command();
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let id = self.handle.id;
        let shared = &*self.handle.shared;
        let mut inner = shared.lock();
        let direct = shared.write_direct(&mut inner, id, buf);
        if direct > 0 {
            return Poll::Ready(Ok(direct));
        }
        if shared.direct_writes && !inner.driver_done && inner.conn.wait_for_credit(id, buf.len()) {
            // Written directly once credit comes, not copied now.
            inner.park_writer(id, cx.waker());
            inner.after_task_change();
            return Poll::Pending;
        }
        match inner.conn.write(id, buf) {
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
}

impl MuxSend {
    /// Ready once every byte written so far (and a queued FIN) was taken
    /// by the transport and the transport flushed: the core emitted it,
    /// and the transport has taken and flushed up to where it ends.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.handle.id;
        let mut inner = self.handle.shared.lock();
        match inner.conn.flush_state(id) {
            Err(err) => Poll::Ready(Err(err.into())),
            Ok(Flush::Emitted(upto)) if inner.flushed >= upto => Poll::Ready(Ok(())),
            Ok(_) if inner.driver_done => Poll::Ready(Err(inner.lost().into())),
            Ok(Flush::Waiting) => {
                // Woken when the core has emitted the rest.
                inner.park_writer(id, cx.waker());
                inner.after_task_change();
                Poll::Pending
            }
            Ok(Flush::Emitted(_)) => {
                // The driver (or a direct write) flushes and wakes us.
                inner.wait_flush(cx.waker());
                inner.wake_driver();
                Poll::Pending
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
}

impl Drop for MuxSend {
    fn drop(&mut self) {
        // The last half releases the stream; a write half dropped alone
        // finishes.
        self.handle.drop_half(Half::Send, self.alone);
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match &mut self.imp {
            SendImp::Mux(half) => half.poll_write(cx, buf),
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.poll_write(cx, buf).map_err(io::Error::from),
        }
    }

    /// Waits until every byte written so far has been written to the
    /// transport and the transport flushed, like a socket's send buffer
    /// handed to the kernel. Bytes leave as the peer grants credit, so a
    /// flush waits for the peer's reader as long as that takes (the
    /// zero-window probe keeps asking, SPEC §11). Fails if the stream is
    /// reset or the connection ends first.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.imp {
            SendImp::Mux(half) => half.poll_flush(cx),
            #[cfg(feature = "quic")]
            SendImp::Native(_) => Poll::Ready(Ok(())),
        }
    }

    /// Finishes the write side (FIN after the buffered bytes) and waits,
    /// as `poll_flush` does, until the FIN has been written to the
    /// transport and the transport flushed. A program that awaited this
    /// (and `Session::close`) has handed over every byte before it exits.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.imp {
            SendImp::Mux(half) => half.poll_shutdown(cx),
            #[cfg(feature = "quic")]
            SendImp::Native(half) => half.poll_shutdown(cx).map_err(io::Error::from),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}
