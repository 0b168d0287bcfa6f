//! Native QUIC mode, the quinn glue: every creditmux stream is one QUIC
//! bidirectional stream and QUIC's own flow control carries the credit
//! (SPEC §18). The protocol rules of the mode (the preface exchange on the
//! control streams, PING, GOAWAY and the drain, flood limits, why the
//! connection ended) are the sans-IO [`ControlPlane`] of `conn/control.rs`;
//! this module moves bytes and stream events between it and quinn, and
//! holds the stream handles behind the public
//! [`Session`](crate::Session) and [`Stream`](crate::Stream).
//!
//! One task per connection reads the peer's control stream into the
//! plane, writes what the plane emits on this side's, runs its timers and
//! carries out its actions (finish the control stream, close the
//! connection, refuse streams after the peer's GOAWAY). Locks: `state`
//! (the plane and the handle bookkeeping) is never held across an await
//! or a quinn call that could wait.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, VarInt};
use tokio::io::ReadBuf;
use tokio::sync::Notify;

use super::backend::{RecvBackend, RecvImp, SendBackend, SendImp, SessionBackend};
use crate::config::Config;
use crate::conn::control::{Action, ControlPlane, TransportEnd};
use crate::conn::{ConnectionStats, Side, StreamStats};
use crate::driver::now;
use crate::error::{ConnectionError, Initiator, OpenError, StreamError};
use crate::frame::{ErrorCode, StreamId};
use crate::session::CloseReport;
use crate::stream::Stream;

/// Most bytes taken off the peer's control stream per read.
const CONTROL_READ_CHUNK: usize = 16 * 1024;

/// The state one native session's handles and its control task share.
pub(crate) struct Shared {
    connection: Connection,
    state: Mutex<State>,
    /// Wakes the control task: something to write or do, a stream released.
    task: Notify,
    /// Wakes application waiters: a PING answered, a GOAWAY, the end.
    changed: Notify,
    data_sent: AtomicU64,
    data_received: AtomicU64,
}

#[derive(Debug)]
struct State {
    plane: ControlPlane,
    session_handles: usize,
    /// Stream handles alive (a stream counts until both halves are gone).
    open_streams: u64,
    /// Streams this side opened and still holds, for a GOAWAY to refuse
    /// (SPEC §13.1). Entries leave with their handles.
    local_streams: HashMap<StreamId, Weak<StreamRef>>,
    /// The QUIC connection has closed and the plane knows why.
    done: bool,
}

impl Shared {
    /// Locks the state (the control plane and the handles' bookkeeping).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the plane, then wakes the control task (the plane may
    /// owe bytes or an action now) and, if it says so, the waiters.
    fn with_plane<T>(&self, f: impl FnOnce(&mut ControlPlane) -> T) -> T {
        let (value, changed) = {
            let mut state = self.lock();
            let value = f(&mut state.plane);
            (value, state.plane.take_changed())
        };
        self.task.notify_one();
        if changed {
            self.changed.notify_waiters();
        }
        value
    }

    /// The peer reset or stopped a data stream (SPEC §18.3 flood limit).
    fn stream_reset_by_peer(&self) {
        self.with_plane(|plane| plane.stream_reset_by_peer(now()));
    }

    /// What the application sees when quinn reports `err`.
    fn connection_error(&self, err: &quinn::ConnectionError) -> ConnectionError {
        let state = self.lock();
        if let Some(error) = state.plane.error() {
            return error.clone();
        }
        match (state.plane.cause(), transport_end(err)) {
            (Some(cause), end) if !cause.is_graceful() || benign(&end) => cause.clone(),
            (_, end) => end_error(end),
        }
    }

    fn stream_error(&self, err: &quinn::ConnectionError) -> StreamError {
        StreamError::ConnectionLost(self.connection_error(err))
    }

    /// A future that completes on the next [`Shared::changed`] wake-up,
    /// registered before the caller checks the state.
    async fn wait_changed<T>(&self, mut check: impl FnMut(&mut State) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = check(&mut self.lock()) {
                return value;
            }
            notified.await;
        }
    }

    fn creditmux_id(&self, id: quinn::StreamId) -> Option<StreamId> {
        let index = u32::try_from(id.index()).ok()?;
        let initiator = match id.initiator() {
            quinn::Side::Client => 1,
            quinn::Side::Server => 2,
        };
        StreamId::new(index.checked_mul(2)?.checked_add(initiator)?)
    }

    fn stream(
        self: &Arc<Shared>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        id: StreamId,
    ) -> (RecvHalf, SendHalf) {
        {
            let mut state = self.lock();
            state.open_streams += 1;
            let open = state.open_streams;
            state.plane.set_open_streams(now(), open);
        }
        let handle = Arc::new(StreamRef {
            id,
            shared: self.clone(),
            recv: Mutex::new(RecvSlot {
                stream: recv,
                waker: None,
                remote_reset: None,
            }),
            recv_finished: AtomicBool::new(false),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            local_reset: Mutex::new(None),
            remote_stop: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        });
        // Halves of a whole stream; `Stream::split` makes them alone.
        (
            RecvHalf {
                handle: handle.clone(),
                alone: false,
            },
            SendHalf {
                handle,
                send,
                alone: false,
                finished: false,
                delivered: None,
            },
        )
    }
}

/// How quinn says the connection ended, in the plane's terms.
fn transport_end(err: &quinn::ConnectionError) -> TransportEnd {
    use quinn::ConnectionError as Q;
    match err {
        Q::LocallyClosed => TransportEnd::ClosedLocally,
        Q::ApplicationClosed(close) => TransportEnd::ClosedByPeer {
            code: error_code(close.error_code),
            reason: debug_text(&close.reason),
        },
        Q::TimedOut => TransportEnd::TimedOut,
        Q::Reset => TransportEnd::Reset,
        Q::TransportError(err) => TransportEnd::Failed(ConnectionError::ProtocolViolation {
            code: ErrorCode::PROTOCOL_ERROR,
            reason: format!("QUIC: {err}"),
        }),
        Q::ConnectionClosed(close) => TransportEnd::Failed(ConnectionError::ProtocolViolation {
            code: ErrorCode::PROTOCOL_ERROR,
            reason: format!("QUIC: the peer closed the connection with {close}"),
        }),
        other => TransportEnd::Failed(ConnectionError::Io {
            kind: std::io::ErrorKind::ConnectionAborted,
            message: format!("QUIC: {other}"),
        }),
    }
}

fn benign(end: &TransportEnd) -> bool {
    match end {
        TransportEnd::ClosedLocally => true,
        TransportEnd::ClosedByPeer { code, .. } => *code == ErrorCode::NO_ERROR,
        _ => false,
    }
}

/// The error an end means when no cause was decided before it.
fn end_error(end: TransportEnd) -> ConnectionError {
    match end {
        TransportEnd::ClosedLocally => ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR,
        },
        TransportEnd::ClosedByPeer { code, reason } => ConnectionError::ClosedByPeer {
            code,
            debug: reason,
        },
        TransportEnd::TimedOut => ConnectionError::IdleTimeout,
        TransportEnd::Reset => ConnectionError::TransportClosed,
        TransportEnd::Failed(err) => err,
    }
}

/// A QUIC application error code as a creditmux code; codes beyond 32 bits
/// (which no creditmux peer sends) saturate.
fn error_code(code: VarInt) -> ErrorCode {
    ErrorCode(u32::try_from(code.into_inner()).unwrap_or(u32::MAX))
}

/// Debug data as the application sees it: at most 1 KiB, lossily UTF-8.
fn debug_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned()
}

// ----- handshake -------------------------------------------------------------

/// Opens this side's control stream and accepts the peer's, and runs the
/// control task; returns once the plane has the peer's preface (SPEC
/// §18.3), or the error that ended the handshake (its timeout included).
pub(crate) async fn start(
    connection: Connection,
    config: Config,
    side: Side,
) -> Result<Arc<Shared>, ConnectionError> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            plane: ControlPlane::new(side, config, now()),
            session_handles: 1,
            open_streams: 0,
            local_streams: HashMap::new(),
            done: false,
        }),
        connection,
        task: Notify::new(),
        changed: Notify::new(),
        data_sent: AtomicU64::new(0),
        data_received: AtomicU64::new(0),
    });
    tokio::spawn(control_task(shared.clone()));
    shared
        .wait_changed(|state| {
            if let Some(err) = state.plane.error() {
                return Some(Err(err.clone()));
            }
            if let Some(cause) = state.plane.cause().filter(|c| !c.is_graceful()) {
                return Some(Err(cause.clone()));
            }
            state.plane.is_established().then_some(Ok(()))
        })
        .await?;
    Ok(shared)
}

// ----- the control task ------------------------------------------------------

/// Runs one native connection's control plane until the QUIC connection
/// closes.
async fn control_task(shared: Arc<Shared>) {
    // The control streams: this side's opened, the peer's accepted, both
    // within the plane's handshake timeout.
    // This side's control stream becomes visible to the peer with its first
    // byte, so the preface goes out at once; the peer's may come later.
    let mut out = BytesMut::new();
    let opened = async {
        let mut send = shared.connection.open_uni().await?;
        shared.lock().plane.poll_transmit(now(), &mut out);
        // A write error shows as the connection's error.
        let _ = send.write_all(&out).await;
        out.clear();
        Ok::<_, quinn::ConnectionError>(send)
    };
    let streams = async { tokio::try_join!(opened, shared.connection.accept_uni()) };
    tokio::pin!(streams);
    let (mut send, mut recv) = loop {
        let deadline = shared.lock().plane.poll_timeout();
        tokio::select! {
            opened = &mut streams => match opened {
                Ok(pair) => break pair,
                Err(err) => {
                    end(&shared, &err);
                    return;
                }
            },
            () = sleep_until(deadline) => {
                shared.with_plane(|plane| plane.handle_timeout(now()));
                if act(&shared, None).is_err() {
                    let err = shared.connection.closed().await;
                    end(&shared, &err);
                    return;
                }
            }
        }
    };
    let mut input = BytesMut::new();
    // Bytes to write on the control stream: refilled only once empty, so
    // a peer that does not read its end cannot make it grow.
    let mut out = BytesMut::new();
    let mut peer_fin = false;
    loop {
        let notified = shared.task.notified();
        let (wake_at, goaway_sent) = {
            let mut state = shared.lock();
            if out.is_empty() {
                state.plane.poll_transmit(now(), &mut out);
            }
            (state.plane.poll_timeout(), state.plane.goaway_sent())
        };
        // Actions after the bytes before them were queued: a FIN follows
        // the GOAWAY it drains behind.
        if out.is_empty() {
            let _ = act(&shared, Some(&mut send));
        } else {
            let _ = act(&shared, None);
        }
        if shared.lock().plane.take_changed() {
            shared.changed.notify_waiters();
        }
        tokio::select! {
            biased;
            err = shared.connection.closed() => {
                end(&shared, &err);
                return;
            }
            () = notified => {}
            written = poll_fn(|cx| poll_write_some(&mut send, cx, &out)), if !out.is_empty() => {
                match written {
                    Ok(n) => out.advance(n),
                    Err(quinn::WriteError::Stopped(_)) => {
                        out.clear();
                        shared.with_plane(|plane| plane.handle_control_end(now(), true, 0));
                    }
                    // The connection is gone; its error arrives above.
                    Err(_) => out.clear(),
                }
            }
            read = recv.read_chunk(CONTROL_READ_CHUNK, true), if !peer_fin => match read {
                Ok(Some(chunk)) => {
                    input.extend_from_slice(&chunk.bytes);
                    shared.with_plane(|plane| plane.handle_input(now(), &mut input));
                }
                Ok(None) => {
                    peer_fin = true;
                    let leftover = input.len();
                    shared.with_plane(|plane| plane.handle_control_end(now(), false, leftover));
                }
                Err(quinn::ReadError::Reset(_)) => {
                    peer_fin = true;
                    shared.with_plane(|plane| plane.handle_control_end(now(), true, 0));
                }
                Err(_) => peer_fin = true,
            },
            incoming = shared.connection.accept_bi(), if goaway_sent => {
                // SPEC §13.2: after this side's GOAWAY, new peer streams
                // are refused.
                if let Ok((mut send, mut recv)) = incoming
                    && shared.with_plane(|plane| plane.late_stream(now()))
                {
                    let _ = send.reset(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                    let _ = recv.stop(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                }
            }
            () = sleep_until(wake_at) => {
                shared.with_plane(|plane| plane.handle_timeout(now()));
            }
        }
    }
}

/// Carries out what the plane asks for. `send`: this side's control
/// stream, when its pending bytes are all written (a FIN waits for them).
/// `Err` once the connection is being closed.
fn act(shared: &Shared, mut send: Option<&mut quinn::SendStream>) -> Result<(), ()> {
    let mut closing = false;
    loop {
        let written = send.is_some();
        let action = shared.lock().plane.poll_action(written);
        match action {
            None => return if closing { Err(()) } else { Ok(()) },
            Some(Action::FinishControl) => {
                if let Some(send) = send.as_deref_mut() {
                    let _ = send.finish();
                }
            }
            Some(Action::Close { code, reason }) => {
                closing = true;
                shared.connection.close(VarInt::from_u32(code.0), &reason);
            }
            Some(Action::Refuse { above }) => {
                let refused: Vec<Arc<StreamRef>> = shared
                    .lock()
                    .local_streams
                    .iter()
                    .filter(|&(&id, _)| id > above)
                    .filter_map(|(_, stream)| stream.upgrade())
                    .collect();
                // SPEC §13.1: this side's streams above last_stream_id
                // were not processed and will not be.
                for stream in refused {
                    stream.refuse();
                }
            }
        }
    }
}

/// The QUIC connection closed: the plane settles why, everyone wakes.
fn end(shared: &Shared, err: &quinn::ConnectionError) {
    {
        let mut state = shared.lock();
        state.plane.handle_transport_end(transport_end(err));
        state.done = true;
    }
    shared.changed.notify_waiters();
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn poll_write_some(
    send: &mut quinn::SendStream,
    cx: &mut Context<'_>,
    out: &[u8],
) -> Poll<Result<usize, quinn::WriteError>> {
    Pin::new(send).poll_write(cx, out)
}

// ----- session operations ----------------------------------------------------

/// A session of the native-QUIC engine.
pub(crate) struct NativeSession(pub(crate) Arc<Shared>);

fn into_stream((recv, send): (RecvHalf, SendHalf)) -> Stream {
    Stream::from_parts(
        RecvImp::Native(Box::new(NativeRecv {
            half: recv,
            leftover: Bytes::new(),
        })),
        SendImp::Native(Box::new(send)),
    )
}

impl SessionBackend for NativeSession {
    async fn open(&self) -> Result<Stream, OpenError> {
        self.0.open().await.map(into_stream)
    }

    async fn accept(&self) -> Result<Option<Stream>, ConnectionError> {
        Ok(self.0.accept().await?.map(into_stream))
    }

    async fn ping(&self) -> Result<Duration, ConnectionError> {
        self.0.ping().await
    }

    async fn close(&self, code: ErrorCode, reason: &[u8]) -> Result<CloseReport, ConnectionError> {
        self.0.close(code, reason).await?;
        let cause = self
            .0
            .error()
            .unwrap_or(ConnectionError::LocallyClosed { code });
        // This engine does not count how streams ended (QUIC keeps them).
        Ok(CloseReport {
            cause,
            streams_completed: None,
            streams_reset: None,
            streams_cancelled_at_drain: None,
        })
    }

    async fn closed(&self) -> ConnectionError {
        self.0.closed().await
    }

    fn error(&self) -> Option<ConnectionError> {
        self.0.error()
    }

    fn stats(&self) -> ConnectionStats {
        self.0.stats()
    }

    fn side(&self) -> Side {
        self.0.side()
    }

    fn clone_handle(&self) -> Self {
        self.0.add_handle();
        NativeSession(self.0.clone())
    }

    fn drop_handle(&self) {
        self.0.drop_handle()
    }
}

impl Shared {
    pub(crate) fn side(&self) -> Side {
        self.lock().plane.side()
    }

    pub(crate) fn add_handle(&self) {
        self.lock().session_handles += 1;
    }

    /// The last session handle starts a graceful close.
    pub(crate) fn drop_handle(&self) {
        let last = {
            let mut state = self.lock();
            state.session_handles -= 1;
            state.session_handles == 0 && !state.done
        };
        if last {
            self.with_plane(|plane| plane.close(now(), ErrorCode::NO_ERROR, b""));
        }
    }

    pub(crate) async fn open(self: &Arc<Shared>) -> Result<(RecvHalf, SendHalf), OpenError> {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            self.lock().plane.check_open()?;
            tokio::select! {
                opened = self.connection.open_bi() => {
                    let (send, recv) = opened
                        .map_err(|err| OpenError::ConnectionLost(self.connection_error(&err)))?;
                    let Some(id) = self.creditmux_id(send.id()) else {
                        return Err(OpenError::IdsExhausted);
                    };
                    let (recv, send) = self.stream(send, recv, id);
                    self.lock().local_streams.insert(id, Arc::downgrade(&send.handle));
                    return Ok((recv, send));
                }
                () = notified => {}
            }
        }
    }

    pub(crate) async fn accept(
        self: &Arc<Shared>,
    ) -> Result<Option<(RecvHalf, SendHalf)>, ConnectionError> {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                let end = state
                    .plane
                    .error()
                    .or(state.plane.cause().filter(|cause| !cause.is_graceful()));
                if let Some(err) = end {
                    return if err.is_graceful() {
                        Ok(None)
                    } else {
                        Err(err.clone())
                    };
                }
                if state.plane.goaway_sent() {
                    return Ok(None);
                }
            }
            tokio::select! {
                accepted = self.connection.accept_bi() => {
                    let (mut send, mut recv) = match accepted {
                        Ok(streams) => streams,
                        Err(err) => {
                            let err = self.connection_error(&err);
                            return if err.is_graceful() { Ok(None) } else { Err(err) };
                        }
                    };
                    let id = self.creditmux_id(send.id());
                    let mut state = self.lock();
                    match id {
                        Some(id) if !state.plane.goaway_sent() => {
                            state.plane.stream_accepted(id);
                            drop(state);
                            return Ok(Some(self.stream(send, recv, id)));
                        }
                        _ => {
                            drop(state);
                            let _ = send.reset(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                            let _ = recv.stop(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                        }
                    }
                }
                () = notified => {}
            }
        }
    }

    pub(crate) async fn ping(&self) -> Result<Duration, ConnectionError> {
        let target = self.with_plane(|plane| {
            plane.ping(now());
            plane.pings_completed() + 1
        });
        self.wait_changed(|state| {
            if state.plane.pings_completed() >= target {
                return Some(Ok(state.plane.rtt().unwrap_or_default()));
            }
            state.plane.error().cloned().map(Err)
        })
        .await
    }

    /// Closes (a graceful GOAWAY and drain with NO_ERROR, at once with
    /// another code) and waits for the end. `Ok` when this close or the
    /// peer's graceful shutdown ended it.
    pub(crate) async fn close(
        &self,
        code: ErrorCode,
        reason: &[u8],
    ) -> Result<(), ConnectionError> {
        self.with_plane(|plane| plane.close(now(), code, reason));
        match self.closed().await {
            ConnectionError::LocallyClosed { .. } => Ok(()),
            err if err.is_graceful() => Ok(()),
            err => Err(err),
        }
    }

    /// Waits for the end; returns its cause.
    pub(crate) async fn closed(&self) -> ConnectionError {
        self.wait_changed(|state| state.done.then(|| state.plane.error().cloned()).flatten())
            .await
    }

    pub(crate) fn error(&self) -> Option<ConnectionError> {
        self.lock().plane.error().cloned()
    }

    /// Connection counters, from this side's own counts and quinn's (SPEC
    /// §18.7 says which fields mean what in native mode).
    pub(crate) fn stats(&self) -> ConnectionStats {
        let quic = self.connection.stats();
        let blocked =
            |f: &quinn::FrameStats| f.data_blocked + f.stream_data_blocked + f.streams_blocked_bidi;
        let frames = |f: &quinn::FrameStats| {
            f.acks
                + f.crypto
                + f.connection_close
                + f.data_blocked
                + f.datagram
                + u64::from(f.handshake_done)
                + f.max_data
                + f.max_stream_data
                + f.max_streams_bidi
                + f.max_streams_uni
                + f.new_connection_id
                + f.new_token
                + f.path_challenge
                + f.path_response
                + f.ping
                + f.reset_stream
                + f.retire_connection_id
                + f.stream_data_blocked
                + f.streams_blocked_bidi
                + f.streams_blocked_uni
                + f.stop_sending
                + f.stream
        };
        let state = self.lock();
        ConnectionStats {
            transport_bytes_sent: quic.udp_tx.bytes,
            transport_bytes_received: quic.udp_rx.bytes,
            data_bytes_sent: self.data_sent.load(Ordering::Relaxed),
            data_bytes_received: self.data_received.load(Ordering::Relaxed),
            frames_sent: frames(&quic.frame_tx),
            frames_received: frames(&quic.frame_rx),
            open_streams: state.open_streams,
            zero_window_events: blocked(&quic.frame_tx),
            probes_sent: blocked(&quic.frame_tx),
            probes_answered: blocked(&quic.frame_rx),
            rtt: state.plane.rtt().or(Some(quic.path.rtt)),
            ..ConnectionStats::default()
        }
    }
}

// ----- streams ---------------------------------------------------------------

/// Shared by the halves of one native stream.
pub(crate) struct StreamRef {
    pub(crate) id: StreamId,
    shared: Arc<Shared>,
    /// The receive direction: here rather than in the read half so that a
    /// reset through the write half can stop it and wake its reader.
    recv: Mutex<RecvSlot>,
    /// The peer's FIN was read.
    recv_finished: AtomicBool,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// The code this side reset the stream with, if it did.
    local_reset: Mutex<Option<ErrorCode>>,
    /// The peer stopped this side's sending direction (counted once).
    remote_stop: AtomicBool,
    /// The peer's GOAWAY refused this stream (SPEC §13.1).
    refused: AtomicBool,
}

struct RecvSlot {
    stream: quinn::RecvStream,
    /// The task waiting to read, woken when the stream is reset locally
    /// (quinn's `stop` drops the reader's waker without waking it).
    waker: Option<Waker>,
    /// The peer's RESET_STREAM code: quinn reports it once, every later
    /// read must report it again.
    remote_reset: Option<ErrorCode>,
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
        if let Some(code) = self.local_reset() {
            return Poll::Ready(Err(StreamError::Reset {
                code,
                initiator: Initiator::Local,
            }));
        }
        let mut slot = self.slot();
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
                self.recv_finished.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(None))
            }
            Poll::Ready(Err(quinn::ReadError::Reset(code))) => {
                let code = error_code(code);
                slot.remote_reset = Some(code);
                drop(slot);
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
            // Stopped by this side: only through a local reset, reported
            // above; or a 0-RTT or unordered-read error that this mode
            // cannot produce.
            Poll::Ready(Err(_)) => Poll::Ready(Err(StreamError::Reset {
                code: self.local_reset().unwrap_or(ErrorCode::CANCEL),
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
    fn refuse(&self) {
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
        self.stop(code);
    }

    fn stats(&self) -> StreamStats {
        StreamStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            ..StreamStats::default()
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

impl Drop for StreamRef {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.local_streams.remove(&self.id);
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
    handle: Arc<StreamRef>,
    /// False while part of a whole `Stream`.
    alone: bool,
}

/// The read half as the public handle holds it: with the part of a chunk
/// `poll_fill` has not copied out yet.
pub(crate) struct NativeRecv {
    half: RecvHalf,
    leftover: Bytes,
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
            || self.handle.local_reset().is_some()
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

/// The write half of a native stream. Dropped alone, quinn finishes it.
pub(crate) struct SendHalf {
    handle: Arc<StreamRef>,
    send: quinn::SendStream,
    /// False while part of a whole `Stream`.
    alone: bool,
    /// The write side was finished (FIN queued in quinn).
    finished: bool,
    /// Resolves once the peer acknowledged every byte and the FIN (quinn's
    /// `stopped`), for `poll_shutdown`.
    delivered: Option<Delivered>,
}

/// quinn's `SendStream::stopped` future.
type Delivered = Pin<
    Box<dyn Future<Output = Result<Option<VarInt>, quinn::StoppedError>> + Send + Sync + 'static>,
>;

impl SendHalf {
    fn count_sent(&self, n: usize) {
        let n = n as u64;
        self.handle.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.handle.shared.data_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// REFUSED_STREAM if the peer's GOAWAY refused the stream; resets the
    /// QUIC send side then (harmless when repeated).
    fn refused(&mut self) -> Result<(), StreamError> {
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
        let send = &self.send;
        let delivered = self
            .delivered
            .get_or_insert_with(|| Box::pin(send.stopped()));
        let outcome = ready!(delivered.as_mut().poll(cx));
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
            self.handle.stop(code);
        } else {
            self.handle.reset(&mut self.send, code);
        }
    }

    fn stats(&self) -> Option<StreamStats> {
        Some(self.handle.stats())
    }
}

impl Drop for SendHalf {
    /// A whole `Stream` dropped (SPEC §18.4): if the peer may still send,
    /// the stream is reset with CANCEL both ways, since nobody would read
    /// what it sends; otherwise quinn finishes the write side after the
    /// bytes already written, as it does for a write half dropped alone.
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
    }
}
