//! State shared between the driver task and the handles.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::task::Waker;
use std::time::Instant;

use tokio::io::AsyncWrite;

use crate::conn::{Connection, Event, TransmitBuf};
use crate::frame::StreamId;

/// The clock the driver feeds the core: tokio's, so tests can pause it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[derive(Default)]
pub(crate) struct StreamWakers {
    pub(crate) read: Option<Waker>,
    pub(crate) write: Option<Waker>,
}

impl StreamWakers {
    fn wake(&mut self) {
        if let Some(w) = self.read.take() {
            w.wake();
        }
        if let Some(w) = self.write.take() {
            w.wake();
        }
    }
}

/// Everything behind the one lock.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(crate) streams: HashMap<StreamId, StreamWakers>,
    /// Tasks waiting on connection-level state (open, accept, ping, close).
    /// One entry per waiting call, so the length is bounded by the
    /// application's own concurrency, not by the peer.
    pub(crate) conn_waiters: Vec<Waker>,
    pub(crate) driver_waker: Option<Waker>,
    pub(crate) driver_done: bool,
    pub(crate) session_handles: usize,
    /// A direct write left bytes in the writer's buffer, or a flush, for
    /// the driver to finish (with its own waker registered).
    pub(crate) writer_handoff: bool,
}

impl Inner {
    /// Wakes every waiter the core's events name.
    pub(crate) fn dispatch(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Stream(id) => {
                    if let Some(wakers) = self.streams.get_mut(&id) {
                        wakers.wake();
                    }
                }
                Event::Connection => self.wake_conn_waiters(),
            }
        }
    }

    pub(crate) fn wake_conn_waiters(&mut self) {
        for waker in self.conn_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Parks a connection-level waiter, once per task.
    pub(crate) fn wait_conn(&mut self, waker: &Waker) {
        if !self.conn_waiters.iter().any(|w| w.will_wake(waker)) {
            self.conn_waiters.push(waker.clone());
        }
    }

    /// After an application command: wake whoever it concerns, and the
    /// driver if there is something to write.
    pub(crate) fn after_command(&mut self) {
        self.dispatch();
        if self.conn.wants_transmit()
            && let Some(waker) = self.driver_waker.take()
        {
            waker.wake();
        }
    }

    /// Wakes the driver (if it is parked).
    pub(crate) fn wake_driver(&mut self) {
        if let Some(waker) = self.driver_waker.take() {
            waker.wake();
        }
    }

    /// The driver has ended: every waiter must see it.
    pub(crate) fn finish_driver(&mut self) {
        self.driver_done = true;
        self.dispatch();
        self.wake_conn_waiters();
        for wakers in self.streams.values_mut() {
            wakers.wake();
        }
    }
}

/// The write side of the transport, shared by the driver and the
/// application tasks that write directly (see `direct.rs`).
///
/// Lock order: a task holding [`Inner`] only ever `try_lock`s the writer,
/// and only the driver holds the writer while it waits for [`Inner`]; so
/// the two locks cannot deadlock.
pub(crate) struct Writer {
    pub(crate) io: Pin<Box<dyn AsyncWrite + Send>>,
    /// Bytes taken from the core and not yet accepted by the transport.
    /// They go out before anything else.
    pub(crate) tx: TransmitBuf,
    /// When the pending write last made progress.
    pub(crate) progress_at: Instant,
    /// Bytes were written since the last completed flush. Transports that
    /// buffer (TLS records, a `BufWriter`) only send them on flush.
    pub(crate) flush_pending: bool,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    writer: Mutex<Writer>,
}

impl Shared {
    pub(crate) fn new(conn: Connection, io: Pin<Box<dyn AsyncWrite + Send>>) -> Shared {
        Shared {
            writer: Mutex::new(Writer {
                io,
                tx: TransmitBuf::new(),
                progress_at: now(),
                flush_pending: false,
            }),
            inner: Mutex::new(Inner {
                conn,
                streams: HashMap::new(),
                conn_waiters: Vec::new(),
                driver_waker: None,
                driver_done: false,
                session_handles: 1,
                writer_handoff: false,
            }),
        }
    }

    /// Locks the state. A panic while the lock was held cannot leave the
    /// core half-updated in a way later calls trust less than a fresh
    /// error, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    /// Locks the writer (the driver).
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer if it is free (a task that holds [`Inner`]).
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}
