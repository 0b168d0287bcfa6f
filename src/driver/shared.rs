//! State shared between the driver task and the handles.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use crate::conn::{Connection, Event};
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

pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(conn: Connection) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                conn,
                streams: HashMap::new(),
                conn_waiters: Vec::new(),
                driver_waker: None,
                driver_done: false,
                session_handles: 1,
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
