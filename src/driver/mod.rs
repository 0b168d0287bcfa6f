//! The tokio driver: the only layer that touches tokio.
//!
//! One task per connection feeds the transport's bytes into the sans-IO
//! [`Connection`], writes what it emits, arms one timer at its next
//! deadline, and wakes the stream handles the core names. The core sits
//! behind one mutex that is never held across an `.await`; handles lock it
//! for each operation and park their wakers here.
//!
//! The transport's halves sit behind locks of their own (`Reader`,
//! `Writer`), because a stream's task may also use them: it writes its
//! DATA frames itself when nothing else waits to go out, and reads the
//! transport itself when it is the lone reader waiting (`direct.rs`). The
//! core decides and accounts either way, so the wire is the same; the
//! driver still learns of every readiness and keeps the timers.

pub(crate) mod backend;
mod direct;
pub(crate) mod mux;
#[cfg(feature = "quic")]
pub(crate) mod native;
mod shared;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::Sleep;

use crate::conn::TransmitBuf;
use crate::error::ConnectionError;

use shared::Writer;
pub(crate) use shared::{Shared, now};

/// Free space kept in the read buffer before each read (at least). It
/// does not grow with the frame size: the core hands a DATA payload for a
/// stream being read on as it arrives (the rest of a large one is read
/// straight into the reader's buffer), so no partial DATA frame is carried
/// from read to read, and larger reads measured no faster for one bulk
/// stream. Frames for other streams are buffered whole, up to the largest
/// frame payload this side accepts.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes gathered for one (vectored) write.
pub(crate) const WRITE_BATCH: usize = 256 * 1024;
/// Loop turns per poll before yielding to other tasks.
const TURNS_PER_POLL: usize = 32;
/// Once the connection has ended and its last bytes are written: the most
/// time the transport's shutdown plus the linger (SPEC §13.4: reading and
/// discarding until the peer closes too, so that its late bytes do not
/// make the transport reset the connection under data still unread on the
/// other side) may take.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// A connection that has moved no byte for this long gives its read
/// buffer and write packing area back (`Driver::release_if_idle`): an idle
/// session then holds only its state. Long enough that a busy one never
/// pays for allocating them again.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// The connection task. Ends when the connection has ended and its last
/// bytes are written; then the transport is shut down.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    timer: Pin<Box<Sleep>>,
    /// Set when the connection has ended and its last bytes are written:
    /// the end of the shutdown and linger.
    close_deadline: Option<Instant>,
    /// The transport's write side was shut down.
    shut_down: bool,
    /// When the driver last read or wrote something.
    last_progress: Instant,
    /// The buffers may hold memory since then (see `release_if_idle`).
    buffers_held: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            shared,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600))),
            close_deadline: None,
            shut_down: false,
            last_progress: now(),
            buffers_held: true,
        }
    }

    /// Reads what the transport has and feeds it to the core. Never waits
    /// for the write side: every DATA byte was pre-authorised by credit,
    /// so there is always room for it (SPEC §10.4).
    fn poll_read_side(&mut self, cx: &mut Context<'_>, t: Instant) -> bool {
        self.shared.read_wake.set_driver(cx.waker());
        let mut reader = self.shared.reader();
        let progress = !reader.closed
            && match reader.poll_fill(&self.shared.read_waker) {
                Poll::Pending => false,
                Poll::Ready(read) => {
                    let mut inner = self.shared.lock();
                    reader.feed(&mut inner, t, read);
                    true
                }
            };
        if std::mem::take(&mut reader.reallocated) {
            // This read, or a task's, allocated the buffer after an idle
            // release: it is given back after the next idle second.
            self.buffers_held = true;
            self.last_progress = t;
        }
        progress
    }

    /// True if this wake brought the driver nothing to do, so the poll can
    /// end at once: the readiness that woke it was read (and the read side
    /// registered again) by an application task (`Shared::read_direct`),
    /// nothing waits to be written or flushed, no timer is due, and nothing
    /// woke the driver for work since it last parked (its waker is still
    /// in place). Every one of those is what a turn would look at first;
    /// most wakes on a request/response stream are of this kind.
    ///
    /// The timer is polled, not just asked whether it has fired: the last
    /// turn may have armed it without registering (a poll refused by the
    /// runtime's cooperative budget registers nothing), and this poll,
    /// with a fresh budget, registers the driver for it.
    fn idle_wake(&mut self, cx: &mut Context<'_>) -> bool {
        if self.close_deadline.is_some() || self.timer.as_mut().poll(cx).is_ready() {
            return false;
        }
        let Some(reader) = self.shared.try_reader() else {
            return false;
        };
        if !reader.up_to_date() {
            return false;
        }
        let Some(writer) = self.shared.try_writer() else {
            return false;
        };
        if !writer.tx.is_empty() || writer.flush_pending {
            return false;
        }
        let inner = self.shared.lock_for("driver: idle wake");
        inner
            .driver_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
            && !inner.driver_turn_owed
            && !inner.driver_done
            && !inner.conn.wants_transmit()
            && !inner.conn.is_finished()
    }

    /// Writes pending bytes, refilling from the core, until the transport
    /// would block or nothing is left (`Shared::write_turn`).
    fn poll_write_side(
        &mut self,
        cx: &mut Context<'_>,
        t: Instant,
    ) -> Result<bool, ConnectionError> {
        let mut writer = self.shared.writer();
        self.shared.write_turn(&mut writer, cx, t)
    }

    /// Drops what is left to write after the connection failed.
    fn discard_tx(&self) {
        self.shared.writer().tx = TransmitBuf::new();
    }

    /// The end, once the connection has ended and its last bytes are
    /// written: shuts the transport's write side down, then reads and
    /// discards until the peer closes too (SPEC §13.4), both within
    /// [`CLOSE_GRACE`]. Ready when done (or out of time).
    fn poll_close(&mut self, cx: &mut Context<'_>, t: Instant) -> Poll<()> {
        let deadline = *self.close_deadline.get_or_insert(t + CLOSE_GRACE);
        if !self.shut_down {
            let mut writer = self.shared.writer();
            match writer.io.as_mut().poll_shutdown(cx) {
                Poll::Ready(result) => {
                    self.shut_down = true;
                    writer.flush_pending = false;
                    let written = writer.written;
                    drop(writer);
                    if result.is_ok() {
                        self.shared.lock().note_flushed(written);
                    }
                }
                Poll::Pending if t < deadline => {
                    drop(writer);
                    return self.sleep_until(cx, deadline);
                }
                // A transport that cannot even shut down: nothing to wait for.
                Poll::Pending => return Poll::Ready(()),
            }
        }
        let mut reader = self.shared.reader();
        while !reader.closed {
            match reader.poll_fill(&self.shared.read_waker) {
                Poll::Ready(Ok(n)) if n > 0 => reader.buf.clear(),
                Poll::Ready(_) => reader.closed = true,
                Poll::Pending if t < deadline => {
                    self.shared.read_wake.set_driver(cx.waker());
                    drop(reader);
                    return self.sleep_until(cx, deadline);
                }
                Poll::Pending => break,
            }
        }
        Poll::Ready(())
    }

    fn sleep_until(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(at));
        if self.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Before a failed write is reported: input already on its way may say
    /// why (the peer's GOAWAY ahead of its close, SPEC §13.3), which is the
    /// cause a caller should see rather than the broken pipe it left.
    fn read_pending_input(&self, t: Instant) {
        let mut reader = self.shared.reader();
        while !reader.closed {
            match reader.poll_fill(&self.shared.read_waker) {
                Poll::Pending => break,
                Poll::Ready(read) => {
                    let mut inner = self.shared.lock();
                    reader.feed(&mut inner, t, read);
                    if inner.conn.error().is_some() {
                        break;
                    }
                }
            }
        }
    }

    /// After [`IDLE_RELEASE`] without progress, drops the read buffer and
    /// the write packing area if nothing is in them (they are allocated
    /// again on use). Returns when to look again, if the buffers are
    /// still held.
    fn release_if_idle(&mut self, t: Instant) -> Option<Instant> {
        if !self.buffers_held {
            return None;
        }
        let at = self.last_progress + IDLE_RELEASE;
        if at > t {
            return Some(at);
        }
        // A task holding either half is using it: not idle.
        let released = match (self.shared.try_reader(), self.shared.try_writer()) {
            (Some(mut reader), Some(mut writer)) => {
                reader.release_buffers();
                if writer.tx.is_empty() {
                    writer.tx = TransmitBuf::new();
                }
                true
            }
            _ => false,
        };
        if released {
            self.buffers_held = false;
            None
        } else {
            self.last_progress = t;
            Some(t + IDLE_RELEASE)
        }
    }

    /// Runs due timers and arms the sleep for the next deadline. Returns
    /// true if a timer ran.
    fn poll_timers(&mut self, cx: &mut Context<'_>, t: Instant) -> bool {
        let idle_at = self.release_if_idle(t);
        let mut writer = self.shared.writer();
        let mut inner = self.shared.lock();
        let mut deadline = inner.conn.poll_timeout();
        if let Some(at) = idle_at {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if !writer.tx.is_empty() {
            let write_deadline = writer.progress_at + inner.conn.config().write_timeout();
            if write_deadline <= t {
                inner
                    .conn
                    .handle_transport_error(ConnectionError::WriteTimeout);
                inner.dispatch();
                writer.tx = TransmitBuf::new();
                return true;
            }
            deadline = Some(deadline.map_or(write_deadline, |d| d.min(write_deadline)));
        }
        match deadline {
            Some(at) if at <= t => {
                inner.conn.handle_timeout(t);
                inner.dispatch();
                true
            }
            Some(at) => {
                // Re-arm only for an earlier deadline. Most deadlines move
                // later (the idle timer restarts with every frame); a sleep
                // armed for an earlier time just wakes the task early, and
                // this re-arms it then. That keeps the timer wheel out of
                // the per-frame path. (Kept in the shared state: a task
                // that handles input itself compares its deadlines.)
                let rearm = inner
                    .timer_armed
                    .is_none_or(|armed| at < armed || armed <= t);
                if rearm {
                    inner.timer_armed = Some(at);
                }
                drop(inner);
                drop(writer);
                if rearm {
                    self.timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(at));
                }
                // Registers the waker; fires on a later poll.
                if self.timer.as_mut().poll(cx).is_ready() {
                    // Fired for an earlier deadline than `at`: re-arm.
                    self.shared.lock().timer_armed = None;
                    return true;
                }
                false
            }
            None => false,
        }
    }
}

impl Shared {
    /// A write turn, whoever holds `writer` (the driver, or a flushing
    /// task, see `transmit_direct`): writes pending bytes, flushes, and
    /// refills from the core, until the transport would block or nothing
    /// is left; true if bytes were written. A flush that completes
    /// records how far the transport has taken and flushed.
    pub(crate) fn write_turn(
        &self,
        writer: &mut Writer,
        cx: &mut Context<'_>,
        t: Instant,
    ) -> Result<bool, ConnectionError> {
        let mut progress = false;
        loop {
            if writer.tx.is_empty() {
                // Push out what the transport may still buffer (TLS
                // records): a flush that completes is what lets a stream's
                // `poll_flush` and `poll_shutdown` return.
                let mut flushed = None;
                if writer.flush_pending {
                    match writer.io.as_mut().poll_flush(cx) {
                        Poll::Ready(Ok(())) => {
                            writer.flush_pending = false;
                            flushed = Some(writer.written);
                        }
                        Poll::Ready(Err(err)) => return Err(ConnectionError::io(&err)),
                        Poll::Pending => {}
                    }
                }
                let mut inner = self.lock();
                if let Some(upto) = flushed {
                    inner.note_flushed(upto);
                }
                inner.conn.poll_transmit(t, &mut writer.tx, WRITE_BATCH);
                inner.dispatch();
                drop(inner);
                if writer.tx.is_empty() {
                    return Ok(progress);
                }
                writer.progress_at = t;
            }
            match writer.poll_write_tx(cx) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(_)) => {
                    writer.progress_at = t;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Err(ConnectionError::io(&err)),
            }
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.idle_wake(cx) {
            return Poll::Pending;
        }
        for _ in 0..TURNS_PER_POLL {
            // One clock read per turn: every step of a turn happens "now".
            let t = now();
            // Another turn is needed only when input arrived or a timer ran
            // (either may produce frames). Writing alone needs none: it
            // stops when the transport is full (its waker registered) or
            // the core has nothing more, which the check below repeats
            // under the lock.
            if this.close_deadline.is_some() {
                return match this.poll_close(cx, t) {
                    Poll::Ready(()) => {
                        this.shared.lock().finish_driver();
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            let mut progress = this.poll_read_side(cx, t);
            let written = this.poll_write_side(cx, t);
            if progress || matches!(written, Ok(true)) {
                this.last_progress = t;
                this.buffers_held = true;
            }
            match written {
                Ok(_) => {}
                Err(err) => {
                    this.read_pending_input(t);
                    let mut inner = this.shared.lock();
                    inner.conn.handle_transport_error(err);
                    inner.dispatch();
                    drop(inner);
                    this.discard_tx();
                    progress = true;
                }
            }
            progress |= this.poll_timers(cx, t);

            // Both locks: no direct write can slip in between this check
            // and parking.
            let writer = this.shared.writer();
            let mut inner = this.shared.lock();
            if inner.conn.is_finished() && writer.tx.is_empty() && !inner.conn.wants_transmit() {
                drop(inner);
                drop(writer);
                // Best effort: the connection is over either way.
                return match this.poll_close(cx, t) {
                    Poll::Ready(()) => {
                        this.shared.lock().finish_driver();
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            if !progress {
                // Registered under the lock that application commands take,
                // so a command issued after this check wakes this task.
                if inner.conn.wants_transmit() && writer.tx.is_empty() {
                    continue;
                }
                if std::mem::take(&mut inner.driver_turn_owed) {
                    // A task left work since this turn began.
                    continue;
                }
                inner.driver_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        // Yield so a busy connection cannot starve the runtime's other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
