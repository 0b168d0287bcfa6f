//! The public stream handles: [`Stream`], and its halves [`RecvStream`]
//! and [`SendStream`] for use on separate tasks. Each contract is written
//! here once; the engines behind it are in `driver/` (see
//! `driver/backend.rs`).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Priority;
use crate::driver::backend::{RecvBackend, RecvImp, SendBackend, SendImp};
use crate::error::{PriorityRequestError, StreamError};
use crate::frame::{ErrorCode, StreamId};
use crate::stats::StreamStats;

/// One bidirectional stream.
///
/// Implements [`AsyncRead`] and [`AsyncWrite`]; [`Stream::send`] and
/// [`Stream::recv`] move [`Bytes`] without copying.
///
/// **Dropping** a `Stream`: if its write side was finished (`shutdown()`),
/// the bytes and the FIN still go out, and if the peer may still send, a
/// RESET CANCEL after them stops its direction (the peer keeps what was
/// finished, SPEC §8.7). If the write side was not finished, the stream is
/// reset with CANCEL (an abort). If the peer had finished its direction,
/// dropping finishes this side after the buffered bytes.
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
}

impl Stream {
    /// A stream from its engine's halves, which must be halves of a whole
    /// stream (dropped together, the second releases it).
    pub(crate) fn from_parts(recv: RecvImp, send: SendImp) -> Stream {
        Stream {
            recv: RecvStream { imp: recv },
            send: SendStream { imp: send },
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.send.id()
    }

    /// Splits into a read half and a write half, usable on separate tasks.
    /// Dropped alone, a read half stops reading (incoming bytes are
    /// discarded, their credit returned) and a write half finishes.
    pub fn split(self) -> (RecvStream, SendStream) {
        let Stream { mut recv, mut send } = self;
        recv.imp.set_alone();
        send.imp.set_alone();
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

    /// Finishes the write side (FIN after the buffered bytes) without
    /// waiting; `shutdown()` waits until the FIN is on the transport.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.send.finish()
    }

    /// Aborts the stream with `code`: what is not yet sent is dropped, and
    /// the peer's reads and writes fail with the code. After the write side
    /// was finished, only the peer's direction is aborted: the peer still
    /// reads what was finished (SPEC §8.7).
    pub fn reset(&mut self, code: ErrorCode) {
        self.send.imp.reset(code)
    }

    /// Aborts only the writing with `code`: what is not yet sent is
    /// dropped, writes fail with the code, and the peer's reads fail with
    /// it; the peer's direction goes on (SPEC §8.7.1). Nothing happens once
    /// the write side was finished. A peer that did not announce
    /// DIRECTIONAL_RESET (SPEC §7.1) cannot be told one direction apart:
    /// then both are aborted, as by [`reset`](Stream::reset). Native QUIC
    /// always has it (RESET_STREAM).
    pub fn reset_send(&mut self, code: ErrorCode) {
        self.send.imp.reset_send(code)
    }

    /// Stops reading with `code`: unread bytes are dropped, reads fail with
    /// the code, and the peer stops sending (its writes fail with the code,
    /// its [`stopped`](Stream::stopped) returns it); this side's writing
    /// goes on (SPEC §8.7.1). A peer that did not announce
    /// DIRECTIONAL_RESET (SPEC §7.1) is not told: what it sends is dropped
    /// on arrival and its credit returned. Native QUIC always tells it
    /// (STOP_SENDING).
    pub fn stop(&mut self, code: ErrorCode) {
        self.recv.stop(code)
    }

    /// Waits until the peer stops the stream's writing (`Some(code)`: its
    /// RESET, or its [`stop`](Stream::stop), so writes would fail) or this
    /// side's writing is over and on the transport (`None`), without
    /// writing.
    pub async fn stopped(&mut self) -> Result<Option<ErrorCode>, StreamError> {
        self.send.stopped().await
    }

    /// Per-stream counters, while the stream is open.
    pub fn stats(&self) -> Option<StreamStats> {
        self.send.stats()
    }

    /// Sets this side's send priority for the stream: among the streams
    /// with data to send, the more urgent go first (see [`Priority`]). It
    /// applies from the stream's next turn, to bytes already written too.
    /// Only this side's sending is affected.
    pub fn set_priority(&mut self, priority: Priority) {
        self.send.set_priority(priority)
    }

    /// This side's send priority for the stream: the latest of what
    /// [`set_priority`](Self::set_priority) set and what the peer asked
    /// for (SPEC §6.10).
    pub fn priority(&self) -> Priority {
        self.send.priority()
    }

    /// Asks the peer to send its bytes on this stream at `priority` (a
    /// PRIORITY_UPDATE, SPEC §6.10): for instance a control stream that
    /// must not wait behind the peer's bulk transfers. The peer applies
    /// it from its next turn for this stream, unless its application sets
    /// another priority later. Requests are coalesced (the newest wins)
    /// and paced (at most 500 frames a second per session).
    ///
    /// Fails with [`PriorityRequestError::Unsupported`] if the peer did
    /// not announce that it takes them, or
    /// [`PriorityRequestError::Finished`] once the peer sends nothing more
    /// on the stream.
    pub fn request_priority(&mut self, priority: Priority) -> Result<(), PriorityRequestError> {
        self.recv.request_priority(priority)
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

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.imp.id()
    }

    /// The next chunk of bytes, without copying; `None` at the end.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        poll_fn(|cx| self.imp.poll_chunk(cx)).await
    }

    /// Stops reading with `code`; see [`Stream::stop`].
    pub fn stop(&mut self, code: ErrorCode) {
        self.imp.stop(code)
    }

    /// Asks the peer to send at `priority`; see [`Stream::request_priority`].
    pub fn request_priority(&mut self, priority: Priority) -> Result<(), PriorityRequestError> {
        self.imp.request_priority(priority)
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("id", &self.id())
            .finish()
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
        self.imp.poll_fill(cx, buf)
    }
}

/// The write half of a [`Stream`].
///
/// Dropping it finishes the write side (FIN after the buffered bytes).
pub struct SendStream {
    imp: SendImp,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.imp.id()
    }

    /// Sends `data` without copying; waits while the send buffer is full.
    pub async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.imp.send(data).await
    }

    /// Finishes the write side: a FIN follows the buffered bytes. Does not
    /// wait; `shutdown()` waits until the FIN is on the transport.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.imp.finish()
    }

    /// Aborts the writing with `code`; the peer's direction goes on where
    /// the peer can be told so (see [`Stream::reset_send`]). To abort both
    /// directions, reset the whole [`Stream`] before splitting it.
    pub fn reset(&mut self, code: ErrorCode) {
        self.imp.reset_send(code)
    }

    /// See [`Stream::stopped`].
    pub async fn stopped(&mut self) -> Result<Option<ErrorCode>, StreamError> {
        poll_fn(|cx| self.imp.poll_stopped(cx)).await
    }

    /// Per-stream counters, while the stream is open. In native QUIC mode
    /// only the byte counts are kept; the rest is `None`.
    pub fn stats(&self) -> Option<StreamStats> {
        self.imp.stats()
    }

    /// See [`Stream::set_priority`].
    pub fn set_priority(&mut self, priority: Priority) {
        self.imp.set_priority(priority)
    }

    /// See [`Stream::priority`].
    pub fn priority(&self) -> Priority {
        self.imp.priority()
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("id", &self.id())
            .finish()
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
        self.imp.poll_write(cx, buf)
    }

    /// Waits until every byte written so far has been written to the
    /// transport and the transport flushed, like a socket's send buffer
    /// handed to the kernel. Bytes leave as the peer grants credit, so a
    /// flush waits for the peer's reader as long as that takes (the
    /// zero-window probe keeps asking, SPEC §11). Fails if the stream is
    /// reset or the connection ends first. (Native QUIC: handed to quinn.)
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.imp.poll_flush(cx)
    }

    /// Finishes the write side (FIN after the buffered bytes) and waits,
    /// as `poll_flush` does, until the FIN has been written to the
    /// transport and the transport flushed (native QUIC: acknowledged by
    /// the peer). A program that awaited this (and `Session::close`) has
    /// handed over every byte before it exits.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.imp.poll_shutdown(cx)
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
