//! State shared between the driver task and the handles.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Connection, Event, TransmitBuf};
use crate::error::ConnectionError;
use crate::frame::{StreamId, StreamMap};

/// Slices per vectored write.
const MAX_IOVECS: usize = 64;

/// The clock the driver feeds the core: tokio's, so tests can pause it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[derive(Default)]
pub(crate) struct StreamWakers {
    /// Set through [`Inner::park_reader`], which counts parked readers.
    read: Option<Waker>,
    write: Option<Waker>,
}

impl StreamWakers {
    /// Wakes both; returns whether a reader was parked.
    fn wake(&mut self) -> bool {
        let reader = self.read.take();
        if let Some(w) = self.write.take() {
            w.wake();
        }
        reader.map(Waker::wake).is_some()
    }
}

/// Everything behind the one lock.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    /// Wakers of parked stream halves; an entry lives while one is parked.
    streams: StreamMap<StreamWakers>,
    /// Tasks waiting on connection-level state (open, accept, ping, close).
    /// One entry per waiting call, so the length is bounded by the
    /// application's own concurrency, not by the peer.
    pub(crate) conn_waiters: Vec<Waker>,
    pub(crate) driver_waker: Option<Waker>,
    pub(crate) driver_done: bool,
    pub(crate) session_handles: usize,
    /// Streams whose read half waits for data. Direct reads pay off for a
    /// lone reader; with several waiting, input is mostly for another
    /// stream, and the driver's larger reads serve them all better.
    pub(crate) parked_readers: usize,
    /// The deadline the driver's timer is armed for.
    pub(crate) timer_armed: Option<Instant>,
    /// A task left the driver work since its last turn: the rest of a
    /// direct write or a flush (to finish with its own waker registered),
    /// or input it handled (which may have set new deadlines).
    pub(crate) driver_turn_owed: bool,
    /// Bytes the transport has taken and flushed: a stream's bytes are
    /// delivered to the transport once this passes the offset where its
    /// last frame ends (`Connection::flush_state`).
    pub(crate) flushed: u64,
    /// Tasks waiting in `poll_flush`/`poll_shutdown` for `flushed` to
    /// move. One entry per waiting call (bounded by the application's own
    /// concurrency, like `conn_waiters`).
    pub(crate) flush_waiters: Vec<Waker>,
}

impl Inner {
    /// Wakes every waiter the core's events name.
    pub(crate) fn dispatch(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Stream(id) => {
                    // Entries live only while a half is parked, so an idle
                    // stream costs no waker slots.
                    if let Some(mut wakers) = self.streams.remove(&id)
                        && wakers.wake()
                    {
                        self.parked_readers -= 1;
                    }
                }
                Event::Connection => self.wake_conn_waiters(),
            }
        }
    }

    /// The transport took and flushed everything up to `upto`.
    pub(crate) fn note_flushed(&mut self, upto: u64) {
        if upto > self.flushed {
            self.flushed = upto;
            for waker in self.flush_waiters.drain(..) {
                waker.wake();
            }
        }
    }

    /// Parks a task until `flushed` moves (or the driver ends).
    pub(crate) fn wait_flush(&mut self, waker: &Waker) {
        if !self.flush_waiters.iter().any(|w| w.will_wake(waker)) {
            self.flush_waiters.push(waker.clone());
        }
    }

    /// Why stream operations fail once the driver has ended.
    pub(crate) fn lost(&self) -> crate::error::StreamError {
        crate::error::StreamError::ConnectionLost(
            self.conn
                .error()
                .cloned()
                .unwrap_or(ConnectionError::TransportClosed),
        )
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
    /// driver if there is something to write or a deadline it must re-arm
    /// for (a write that leaves data at zero credit starts the probe, an
    /// `open` at the stream limit its probe: SPEC §11.1).
    pub(crate) fn after_command(&mut self) {
        self.dispatch();
        self.after_task_change();
    }

    /// Parks the read half of stream `id` until it has data.
    pub(crate) fn park_reader(&mut self, id: StreamId, waker: &Waker) {
        let wakers = self.streams.entry(id).or_default();
        if wakers.read.replace(waker.clone()).is_none() {
            self.parked_readers += 1;
        }
    }

    /// The read half of stream `id` is being polled: it needs no waking.
    pub(crate) fn unpark_reader(&mut self, id: StreamId) {
        let Some(wakers) = self.streams.get_mut(&id) else {
            return;
        };
        if wakers.read.take().is_some() {
            self.parked_readers -= 1;
        }
        if wakers.write.is_none() {
            self.streams.remove(&id);
        }
    }

    /// Parks the write half of stream `id` until it can write.
    pub(crate) fn park_writer(&mut self, id: StreamId, waker: &Waker) {
        self.streams.entry(id).or_default().write = Some(waker.clone());
    }

    /// The write half of stream `id` is gone or being polled.
    pub(crate) fn unpark_writer(&mut self, id: StreamId) {
        let Some(wakers) = self.streams.get_mut(&id) else {
            return;
        };
        wakers.write = None;
        if wakers.read.is_none() {
            self.streams.remove(&id);
        }
    }

    /// Wakes the driver (if it is parked).
    pub(crate) fn wake_driver(&mut self) {
        if let Some(waker) = self.driver_waker.take() {
            waker.wake();
        }
    }

    /// Wakes the driver for what the core owes after a task changed its
    /// state (input handled, a probe started): a turn if a deadline is now
    /// earlier than the driver's armed timer, a wake if frames are owed.
    pub(crate) fn after_task_change(&mut self) {
        let earlier = self
            .conn
            .poll_timeout()
            .is_some_and(|at| self.timer_armed.is_none_or(|armed| at < armed));
        if earlier {
            self.owe_driver_turn();
        } else if self.conn.wants_transmit() {
            self.wake_driver();
        }
    }

    /// Leaves the driver work: it takes another turn even if it is running
    /// now and found nothing to do.
    pub(crate) fn owe_driver_turn(&mut self) {
        self.driver_turn_owed = true;
        self.wake_driver();
    }

    /// The driver has ended: every waiter must see it.
    pub(crate) fn finish_driver(&mut self) {
        self.driver_done = true;
        self.dispatch();
        self.wake_conn_waiters();
        for waker in self.flush_waiters.drain(..) {
            waker.wake();
        }
        for (_, mut wakers) in self.streams.drain() {
            wakers.wake();
        }
        self.parked_readers = 0;
    }
}

/// The write side of the transport, shared by the driver and the
/// application tasks that write directly (see `direct.rs`).
///
/// # Locks and why they cannot deadlock
///
/// Three locks: the core ([`Inner`], taken with [`Shared::lock_for`]), the
/// writer and the reader (the transport's halves). The order is always
/// *transport half first, core second*:
///
/// - the driver takes the writer, then the core (to refill from
///   `poll_transmit`), and the reader, then the core (to feed input);
/// - a stream task writing directly `try_lock`s the writer (never waits for
///   it), then takes the core briefly to reserve credit, releases it, does
///   the I/O holding only the writer, and takes the core again to commit;
///   a task reading directly does the same with the reader; a task that
///   flushes `try_lock`s the writer too, takes the core briefly for
///   `poll_transmit` (the driver's refill), writes holding only the
///   writer, and takes the core again to record the flush or hand the
///   rest to the driver (`Shared::transmit_direct`);
/// - nobody takes the writer or the reader while holding the core, and
///   nobody waits for one transport half while holding the other: the
///   driver holds both only after `try_lock`ing them (its idle release
///   and its idle-wake check, `Driver::idle_wake`), and then takes the
///   core.
///
/// So no cycle of waits exists; and no transport I/O (a syscall, TLS
/// encryption or decryption) happens while the core is locked, so other
/// streams and the driver wait for the core only as long as it computes.
/// `tests/session.rs` hammers this (many streams writing and reading from
/// many tasks on a multi-thread runtime while the driver reads and runs
/// its timers), with a thread burning CPU beside it.
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
    /// Bytes the transport has taken since the connection began, counted
    /// like the core's `transport_bytes_sent` (the same bytes, in order).
    pub(crate) written: u64,
}

impl Writer {
    /// Writes the front of `tx` with one vectored write; `Ready(Ok(n))`
    /// with n > 0 bytes taken (counted in `written`), or the transport's
    /// error (a transport that takes nothing is one).
    pub(crate) fn poll_write_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for chunk in self.tx.chunks().take(MAX_IOVECS) {
            slices[count] = IoSlice::new(chunk);
            count += 1;
        }
        match self.io.as_mut().poll_write_vectored(cx, &slices[..count]) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the transport accepted no bytes",
            ))),
            Poll::Ready(Ok(n)) => {
                self.tx.advance(n);
                self.written += n as u64;
                self.flush_pending = true;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

/// The read side of the transport, shared by the driver and the
/// application tasks that read directly (see `direct.rs`). Lock order: see
/// [`Writer`].
pub(crate) struct Reader {
    pub(crate) io: Pin<Box<dyn AsyncRead + Send>>,
    /// Bytes read and not yet decoded (a partial frame).
    pub(crate) buf: BytesMut,
    /// Earlier read buffers that payloads handed out still referred to
    /// when reading moved on from them, to be read into again once those
    /// are gone (see [`Reader::make_room`]); at most
    /// [`SPARE_READ_BUFFERS`].
    pub(crate) spare: Vec<BytesMut>,
    /// The size of `buf`'s allocation; 0 for the empty buffer a new or
    /// idle connection starts from.
    buf_size: usize,
    /// A read allocated a buffer after the connection had none (new, or
    /// idle and released): the driver must learn of it to give it back
    /// when the connection is idle again (`Driver::release_if_idle`).
    pub(crate) reallocated: bool,
    /// Room the next read needs beyond `buf`: the rest of a frame the core
    /// takes whole (`Connection::input_missing`), as of the last input.
    pub(crate) missing: usize,
    /// The transport reported its end or an error.
    pub(crate) closed: bool,
    /// The count of readiness events when a read last found the transport
    /// empty (the shared waker then registered); `None` after a read that
    /// returned something. See [`Reader::up_to_date`].
    registered: Option<u64>,
    /// The shared read waker's state, for its readiness count.
    wake: Arc<ReadWake>,
}

/// Where [`Reader::make_room`] found room for the next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Room {
    /// Left in the buffer.
    Left,
    /// The buffer's memory, all its payloads taken.
    Reclaimed,
    /// A spare buffer's memory.
    Spare,
    /// A new buffer.
    New,
}

/// Read buffers a busy connection keeps for reuse besides the one it reads
/// into, for payloads that wait in their streams while the next reads go
/// on. At most this many, of at most [`SPARE_MAX_SIZE`] each, are kept
/// beyond what payloads hold: 2 MiB per connection.
const SPARE_READ_BUFFERS: usize = 16;

/// The largest read buffer kept as a spare. A buffer grown to gather a
/// whole large frame is dropped once read past, not kept.
const SPARE_MAX_SIZE: usize = 2 * super::READ_CHUNK;

/// The waker registered with the transport's read side, whoever polls it:
/// readiness wakes the application task that last found its stream empty
/// (so it can read and handle the input itself, without a hop through the
/// driver task) and then the driver, which must always learn of input.
#[derive(Default)]
pub(crate) struct ReadWake {
    driver: Mutex<Option<Waker>>,
    app: Mutex<Option<Waker>>,
    /// Readiness events so far (see [`Reader::up_to_date`]).
    readiness: AtomicU64,
}

impl ReadWake {
    /// The driver's waker: kept, and woken on every readiness.
    pub(crate) fn set_driver(&self, waker: &Waker) {
        Self::store(&self.driver, waker);
    }

    /// An application task's waker: woken once, at the next readiness.
    pub(crate) fn set_app(&self, waker: &Waker) {
        Self::store(&self.app, waker);
    }

    /// Readiness events so far.
    pub(crate) fn readiness(&self) -> u64 {
        self.readiness.load(Ordering::Acquire)
    }

    fn store(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = lock(slot);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.readiness.fetch_add(1, Ordering::AcqRel);
        // The application task first: on a single-threaded runtime it then
        // runs first, and the driver's turn after it finds nothing to read.
        let app = lock(&self.app).take();
        if let Some(waker) = app {
            waker.wake();
        }
        if let Some(waker) = lock(&self.driver).as_ref() {
            waker.wake_by_ref();
        }
    }
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    writer: Mutex<Writer>,
    reader: Mutex<Reader>,
    pub(crate) read_wake: Arc<ReadWake>,
    /// `read_wake` as a waker, for polling the read side.
    pub(crate) read_waker: Waker,
    /// The transport takes vectored writes, so application tasks may write
    /// DATA directly (see `direct.rs`).
    pub(crate) direct_writes: bool,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        read: Pin<Box<dyn AsyncRead + Send>>,
        write: Pin<Box<dyn AsyncWrite + Send>>,
    ) -> Shared {
        let read_wake = Arc::new(ReadWake::default());
        let direct_writes = write.is_write_vectored();
        Shared {
            direct_writes,
            reader: Mutex::new(Reader::new(read, read_wake.clone())),
            read_waker: Waker::from(read_wake.clone()),
            read_wake,
            writer: Mutex::new(Writer {
                io: write,
                tx: TransmitBuf::new(),
                progress_at: now(),
                flush_pending: false,
                written: 0,
            }),
            inner: Mutex::new(Inner {
                conn,
                streams: StreamMap::default(),
                conn_waiters: Vec::new(),
                driver_waker: None,
                driver_done: false,
                session_handles: 1,
                driver_turn_owed: false,
                parked_readers: 0,
                timer_armed: None,
                flushed: 0,
                flush_waiters: Vec::new(),
            }),
        }
    }

    /// Locks the core for `purpose` (named at every site, so contention
    /// and lock order can be read off the code). A panic while the lock
    /// was held cannot leave the core half-updated in a way later calls
    /// trust less than a fresh error, so poisoning is ignored.
    ///
    /// The core lock is never held across an `.await` or while doing I/O
    /// on the transport, and a task holding it takes the writer or the
    /// reader only with `try_lock` (see the lock order on [`Writer`]). In
    /// debug builds, locking it again on a thread that holds it panics
    /// with both purposes, instead of deadlocking.
    pub(crate) fn lock_for(&self, purpose: &'static str) -> CoreGuard<'_> {
        #[cfg(debug_assertions)]
        HELD.with(|held| {
            if let Some(holder) = held.get() {
                panic!("core lock taken for {purpose:?} while held for {holder:?}");
            }
            held.set(Some(purpose));
        });
        // Only the debug-build check reads the purpose.
        #[cfg(not(debug_assertions))]
        let _ = purpose;
        CoreGuard {
            guard: lock(&self.inner),
        }
    }

    /// Locks the core (see [`lock_for`](Shared::lock_for)) for the common
    /// short operations of the handles and the driver.
    pub(crate) fn lock(&self) -> CoreGuard<'_> {
        self.lock_for("core")
    }
}

#[cfg(debug_assertions)]
thread_local! {
    /// The purpose the core lock of this thread's session is held for.
    static HELD: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// The core, locked (see [`Shared::lock_for`]).
pub(crate) struct CoreGuard<'a> {
    guard: MutexGuard<'a, Inner>,
}

impl std::ops::Deref for CoreGuard<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl std::ops::DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

#[cfg(debug_assertions)]
impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        HELD.with(|held| held.set(None));
    }
}

impl Reader {
    /// A reader of `io` whose reads register `wake`. No buffer yet: the
    /// first read allocates it (and again after an idle release, see
    /// `Driver::release_if_idle`).
    fn new(io: Pin<Box<dyn AsyncRead + Send>>, wake: Arc<ReadWake>) -> Reader {
        Reader {
            io,
            buf: BytesMut::new(),
            spare: Vec::new(),
            buf_size: 0,
            reallocated: false,
            missing: 0,
            closed: false,
            registered: None,
            wake,
        }
    }

    /// Reads what the transport has into the buffer, with `waker` (the
    /// shared read waker) registered if it has nothing.
    pub(crate) fn poll_fill(&mut self, waker: &Waker) -> Poll<io::Result<usize>> {
        self.make_room();
        // Counted before the read: a readiness event during it makes the
        // reader look out of date, never up to date.
        let seen = self.wake.readiness();
        let mut cx = Context::from_waker(waker);
        let read = tokio_util::io::poll_read_buf(self.io.as_mut(), &mut cx, &mut self.buf);
        self.registered = read.is_pending().then_some(seen);
        read
    }

    /// True if the last read found the transport empty and no readiness
    /// event has come since: the shared waker is registered with the
    /// transport, and no input waits that nobody has read. A driver turn
    /// would find nothing to read.
    pub(crate) fn up_to_date(&self) -> bool {
        !self.closed && self.registered == Some(self.wake.readiness())
    }

    /// A read made around [`poll_fill`](Self::poll_fill) (straight into a
    /// caller's buffer) returned something.
    pub(crate) fn read_around(&mut self) {
        self.registered = None;
    }

    /// Makes room in the buffer for the next read: at least a quarter of
    /// a read chunk, and the rest of a frame the core takes whole.
    ///
    /// The core hands frame payloads out as parts of the read buffer (no
    /// copy), so the buffer is shared until their readers have taken them.
    /// If it still is when its room runs out, reading goes on in another
    /// buffer: a spare whose payloads have all been taken since, else a new
    /// one; the full buffer becomes a spare. Reusing memory already in use
    /// matters: a new buffer for every 64 KiB read costs a page fault per
    /// 4 KiB once the allocator has returned the freed ones to the system.
    fn make_room(&mut self) -> Room {
        use super::READ_CHUNK;
        let room = self.missing.max(READ_CHUNK / 4);
        if self.buf.capacity() - self.buf.len() >= room {
            return Room::Left;
        }
        if self.buf.try_reclaim(self.missing.max(READ_CHUNK)) {
            return Room::Reclaimed;
        }
        let pending = self.buf.len();
        let (next, found) = match self
            .spare
            .iter_mut()
            .position(|b| b.try_reclaim(pending + room))
        {
            Some(i) => (self.spare.swap_remove(i), Room::Spare),
            None => (
                BytesMut::with_capacity(pending + self.missing.max(READ_CHUNK)),
                Room::New,
            ),
        };
        // A reclaimed spare's capacity is its whole allocation.
        let full_size = std::mem::replace(&mut self.buf_size, next.capacity());
        let mut full = std::mem::replace(&mut self.buf, next);
        // The start of a frame not yet whole.
        self.buf.extend_from_slice(&full);
        full.clear();
        if full_size == 0 {
            self.reallocated = true;
        } else if full_size <= SPARE_MAX_SIZE && self.spare.len() < SPARE_READ_BUFFERS {
            self.spare.push(full);
        }
        found
    }

    /// Gives the buffers back (while the connection is idle), keeping a
    /// partial frame if one waits: the next read allocates again.
    pub(crate) fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.buf_size = 0;
        }
        self.spare = Vec::new();
    }

    /// Feeds the outcome of a read to the core and wakes whom it concerns.
    pub(crate) fn feed(&mut self, inner: &mut Inner, t: Instant, read: io::Result<usize>) {
        match read {
            Ok(0) => {
                self.closed = true;
                inner.conn.handle_eof(t);
            }
            Ok(_) => {
                inner.conn.handle_input(t, &mut self.buf);
                self.missing = inner.conn.input_missing(self.buf.len());
            }
            Err(err) => {
                self.closed = true;
                inner.conn.handle_transport_error(ConnectionError::io(&err));
            }
        }
        inner.dispatch();
    }
}

impl Shared {
    /// Locks the writer (the driver).
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// The writer if it is free (a task that holds [`Inner`]).
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        try_lock(&self.writer)
    }

    /// Locks the reader (the driver).
    pub(crate) fn reader(&self) -> MutexGuard<'_, Reader> {
        lock(&self.reader)
    }

    /// The reader if it is free (a task that holds [`Inner`]).
    pub(crate) fn try_reader(&self) -> Option<MutexGuard<'_, Reader>> {
        try_lock(&self.reader)
    }
}

/// Every lock here ignores poisoning (see [`Shared::lock`]).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::ReadBuf;

    use super::*;
    use crate::driver::READ_CHUNK;

    /// A transport that has `READ_CHUNK` bytes for every read.
    struct Endless;

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = READ_CHUNK.min(buf.remaining());
            buf.put_slice(&[7; READ_CHUNK][..n]);
            Poll::Ready(Ok(()))
        }
    }

    fn reader() -> Reader {
        Reader::new(Box::pin(Endless), Arc::new(ReadWake::default()))
    }

    /// Makes room, reads, and hands out everything read, as the core
    /// hands out payloads; returns where the room came from.
    fn read(reader: &mut Reader, held: &mut Vec<Bytes>) -> Room {
        let room = reader.make_room();
        match reader.poll_fill(Waker::noop()) {
            Poll::Ready(Ok(n)) => assert_eq!(n, READ_CHUNK),
            other => panic!("read: {other:?}"),
        }
        held.push(reader.buf.split().freeze());
        room
    }

    #[test]
    fn read_buffers_are_reused_once_their_payloads_are_taken() {
        let mut reader = reader();
        let mut held = Vec::new();
        let rooms: Vec<Room> = (0..8).map(|_| read(&mut reader, &mut held)).collect();
        assert_eq!(rooms, [Room::New; 8], "every payload is still held");
        assert_eq!(reader.spare.len(), 7);

        held.clear();
        let rooms: Vec<Room> = (0..8).map(|_| read(&mut reader, &mut held)).collect();
        let mut expected = vec![Room::Spare; 8];
        expected[0] = Room::Reclaimed;
        assert_eq!(rooms, expected, "no new memory once the payloads are gone");

        // Held payloads keep their buffers; the spares stay bounded.
        for _ in 0..3 * SPARE_READ_BUFFERS {
            read(&mut reader, &mut held);
        }
        assert_eq!(reader.spare.len(), SPARE_READ_BUFFERS);
        assert!(
            held.iter()
                .all(|b| b.len() == READ_CHUNK && b.iter().all(|&x| x == 7))
        );

        held.clear();
        reader.release_buffers();
        assert_eq!(reader.buf.capacity(), 0);
        assert!(reader.spare.is_empty());
    }

    #[test]
    fn large_buffers_are_not_kept_and_the_driver_learns_of_new_ones() {
        let mut reader = reader();
        let mut held = Vec::new();
        read(&mut reader, &mut held);
        assert!(std::mem::take(&mut reader.reallocated), "first allocation");
        // A buffer grown for a large frame taken whole is not kept.
        reader.missing = 3 * READ_CHUNK;
        assert_eq!(reader.make_room(), Room::New);
        assert_eq!(reader.spare.len(), 1, "the 64 KiB one is kept");
        reader.missing = 0;
        while reader.buf.capacity() - reader.buf.len() >= READ_CHUNK / 4 {
            read(&mut reader, &mut held);
        }
        read(&mut reader, &mut held);
        assert_eq!(reader.spare.len(), 1, "the large one is dropped");
        assert!(!reader.reallocated);

        held.clear();
        reader.release_buffers();
        read(&mut reader, &mut held);
        assert!(reader.reallocated, "allocated again after a release");
    }

    #[test]
    fn room_covers_the_rest_of_a_frame_taken_whole() {
        let mut reader = reader();
        reader.missing = 3 * READ_CHUNK;
        reader.buf.extend_from_slice(&[1; 100]);
        reader.make_room();
        assert!(reader.buf.capacity() - reader.buf.len() >= 3 * READ_CHUNK);
        assert_eq!(&reader.buf[..], &[1; 100][..], "the partial frame is kept");
    }
}
