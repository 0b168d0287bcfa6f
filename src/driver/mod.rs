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

mod direct;
mod shared;

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::Sleep;

use crate::conn::TransmitBuf;
use crate::error::ConnectionError;

pub(crate) use shared::{Inner, Shared, now};

/// Free space kept in the read buffer before each read (at least). It
/// does not grow with the frame size: the core hands a DATA payload for a
/// stream being read on as it arrives (the rest of a large one is read
/// straight into the reader's buffer), so no partial DATA frame is carried
/// from read to read, and larger reads measured no faster for one bulk
/// stream. Frames for other streams are buffered whole, up to the largest
/// frame payload this side accepts.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes gathered for one (vectored) write.
const WRITE_BATCH: usize = 256 * 1024;
/// Slices per vectored write.
const MAX_IOVECS: usize = 64;
/// Loop turns per poll before yielding to other tasks.
const TURNS_PER_POLL: usize = 32;

/// The connection task. Ends when the connection has ended and its last
/// bytes are written; then the transport is shut down.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    timer: Pin<Box<Sleep>>,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            shared,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600))),
        }
    }

    /// Reads what the transport has and feeds it to the core. Never waits
    /// for the write side: every DATA byte was pre-authorised by credit,
    /// so there is always room for it (SPEC §10.4).
    fn poll_read_side(&mut self, cx: &mut Context<'_>, t: Instant) -> bool {
        self.shared.read_wake.set_driver(cx.waker());
        let mut reader = self.shared.reader();
        if reader.closed {
            return false;
        }
        match reader.poll_fill(&self.shared.read_waker) {
            Poll::Pending => false,
            Poll::Ready(read) => {
                let mut inner = self.shared.lock();
                reader.feed(&mut inner, t, read);
                true
            }
        }
    }

    /// Writes pending bytes, refilling from the core, until the transport
    /// would block or nothing is left.
    fn poll_write_side(
        &mut self,
        cx: &mut Context<'_>,
        t: Instant,
    ) -> Result<bool, ConnectionError> {
        let mut writer = self.shared.writer();
        let writer = &mut *writer;
        let mut progress = false;
        loop {
            if writer.tx.is_empty() {
                let mut inner = self.shared.lock();
                inner.conn.poll_transmit(t, &mut writer.tx, WRITE_BATCH);
                inner.dispatch();
                drop(inner);
                if writer.tx.is_empty() {
                    // Nothing more to write: push out what the transport
                    // may still buffer.
                    if writer.flush_pending {
                        match writer.io.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => writer.flush_pending = false,
                            Poll::Ready(Err(err)) => return Err(ConnectionError::io(&err)),
                            Poll::Pending => {}
                        }
                    }
                    return Ok(progress);
                }
                writer.progress_at = t;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for chunk in writer.tx.chunks().take(MAX_IOVECS) {
                slices[count] = IoSlice::new(chunk);
                count += 1;
            }
            match writer.io.as_mut().poll_write_vectored(cx, &slices[..count]) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(0)) => {
                    return Err(ConnectionError::Io {
                        kind: std::io::ErrorKind::WriteZero,
                        message: "the transport accepted no bytes".into(),
                    });
                }
                Poll::Ready(Ok(n)) => {
                    writer.tx.advance(n);
                    writer.progress_at = t;
                    writer.flush_pending = true;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Err(ConnectionError::io(&err)),
            }
        }
    }

    /// Drops what is left to write after the connection failed.
    fn discard_tx(&self) {
        self.shared.writer().tx = TransmitBuf::new();
    }

    /// Runs due timers and arms the sleep for the next deadline. Returns
    /// true if a timer ran.
    fn poll_timers(&mut self, cx: &mut Context<'_>, t: Instant) -> bool {
        let mut writer = self.shared.writer();
        let mut inner = self.shared.lock();
        let mut deadline = inner.conn.poll_timeout();
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

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..TURNS_PER_POLL {
            // One clock read per turn: every step of a turn happens "now".
            let t = now();
            // Another turn is needed only when input arrived or a timer ran
            // (either may produce frames). Writing alone needs none: it
            // stops when the transport is full (its waker registered) or
            // the core has nothing more, which the check below repeats
            // under the lock.
            let mut progress = this.poll_read_side(cx, t);
            match this.poll_write_side(cx, t) {
                Ok(_) => {}
                Err(err) => {
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
            let mut writer = this.shared.writer();
            let mut inner = this.shared.lock();
            if inner.conn.is_finished() && writer.tx.is_empty() && !inner.conn.wants_transmit() {
                drop(inner);
                // Best effort: the connection is over either way.
                if writer.io.as_mut().poll_shutdown(cx).is_pending() {
                    return Poll::Pending;
                }
                drop(writer);
                this.shared.lock().finish_driver();
                return Poll::Ready(());
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
