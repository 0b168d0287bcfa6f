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

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, VarInt};
use tokio::sync::Notify;

use super::backend::{RecvImp, SendImp, SessionBackend};
use crate::config::Config;
use crate::conn::control::{Action, ControlPlane, TransportEnd};
use crate::conn::{Priority, Side};
use crate::driver::now;
use crate::stats::SessionStats;

mod stream;

use crate::error::{ConnectionError, OpenError, StreamError};
use crate::frame::{ErrorCode, StreamId, StreamMap};
use crate::session::CloseReport;
use crate::stream::Stream;
pub(crate) use stream::{NativeRecv, SendHalf};
use stream::{RecvHalf, RecvSlot, StreamRef};

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
    /// Streams open: a stream counts until both halves are gone and what
    /// its write side finished is delivered (`SendHalf::hold_until_delivered`).
    open_streams: u64,
    /// Streams this side opened and still holds, for a GOAWAY to refuse
    /// (SPEC §13.1) and the peer's priority requests. Entries leave with
    /// their handles.
    local_streams: StreamMap<Weak<StreamRef>>,
    /// Streams the peer opened that the application holds, for the peer's
    /// priority requests. Entries leave with their handles.
    peer_streams: StreamMap<Weak<StreamRef>>,
    /// The peer's priority requests for its streams not accepted yet (the
    /// control stream is not ordered with them, SPEC §18.3): at most one
    /// per id and `max_incoming_streams` in all.
    early_requests: StreamMap<Priority>,
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

    /// The peer asks for `priority` on `id` (SPEC §18.3): the stream's
    /// write half applies it from its next write; a request for a peer
    /// stream not accepted yet waits for it, one for a stream this side
    /// does not hold is ignored.
    fn prioritize(&self, id: StreamId, priority: Priority) {
        let mut state = self.lock();
        let local = state.plane.side().owns(id);
        let streams = if local {
            &state.local_streams
        } else {
            &state.peer_streams
        };
        if let Some(stream) = streams.get(&id).and_then(Weak::upgrade) {
            drop(state);
            stream.request_priority(priority);
            return;
        }
        // SPEC §18.3: kept only for an id the peer may open next: above
        // those accepted, within the streams it may have open at once.
        let last = state.plane.last_accepted();
        let bound = u64::from(state.plane.config().max_incoming_streams);
        let may_open = id > last && id.index() - last.index().min(id.index()) <= bound;
        if local || !may_open {
            return;
        }
        if state.early_requests.len() < bound as usize || state.early_requests.contains_key(&id) {
            state.early_requests.insert(id, priority);
        }
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

    /// The halves of a new stream `id`, registered (with `state` locked,
    /// so that a request of the peer finds it or is kept for it, never
    /// lost in between): counted as open, and in the streams the peer's
    /// priority requests name. A request kept for a peer stream applies
    /// from its first write.
    fn stream(
        self: &Arc<Shared>,
        state: &mut State,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        id: StreamId,
    ) -> (RecvHalf, SendHalf) {
        state.open_streams += 1;
        let open = state.open_streams;
        state.plane.set_open_streams(now(), open);
        let local = state.plane.side().owns(id);
        let early_request = if local {
            None
        } else {
            let early = state.early_requests.remove(&id);
            // Requests for ids the peer skipped are moot.
            state.early_requests.retain(|&early, _| early > id);
            early
        };
        let handle = Arc::new(StreamRef {
            id,
            shared: self.clone(),
            recv: Mutex::new(RecvSlot {
                stream: recv,
                waker: None,
                remote_reset: None,
                local_stop: None,
            }),
            recv_finished: AtomicBool::new(false),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            local_reset: Mutex::new(None),
            remote_stop: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            peer_priority: Mutex::new(early_request),
            send_waker: Mutex::new(None),
        });
        let streams = if local {
            &mut state.local_streams
        } else {
            &mut state.peer_streams
        };
        streams.insert(id, Arc::downgrade(&handle));
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
                priority: Priority::default(),
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
            local_streams: StreamMap::default(),
            peer_streams: StreamMap::default(),
            early_requests: StreamMap::default(),
            done: false,
        }),
        connection,
        task: Notify::new(),
        changed: Notify::new(),
        data_sent: AtomicU64::new(0),
        data_received: AtomicU64::new(0),
    });
    // As over a byte stream: the control task's events (the plane's, its
    // PINGs and GOAWAYs) are in the session's span.
    let span = tracing::debug_span!(
        "session",
        side = ?side,
        peer = %shared.connection.remote_address()
    );
    tokio::spawn(tracing::Instrument::instrument(
        control_task(shared.clone()),
        span,
    ));
    shared
        .wait_changed(|state| {
            // Established first, as over a byte stream (SPEC §18.6): a
            // quick peer may have opened streams, written, and closed by
            // the time this runs; QUIC keeps its streams for `accept`,
            // which tells how the connection ended.
            if state.plane.is_established() {
                return Some(Ok(()));
            }
            if let Some(err) = state.plane.error() {
                return Some(Err(err.clone()));
            }
            state
                .plane
                .cause()
                .filter(|cause| !cause.is_graceful())
                .map(|cause| Err(cause.clone()))
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
        // Control before any data, whatever the streams' priorities
        // (SPEC §10.2).
        let _ = send.set_priority(i32::MAX);
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
            Some(Action::Prioritize { stream, priority }) => {
                shared.prioritize(stream, priority);
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

    fn stats(&self) -> SessionStats {
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
                    return Ok(self.stream(&mut self.lock(), send, recv, id));
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
                let failed = state
                    .plane
                    .error()
                    .or(state.plane.cause())
                    .filter(|end| !end.is_graceful());
                if let Some(err) = failed {
                    return Err(err.clone());
                }
                if state.plane.goaway_sent() {
                    return Ok(None);
                }
                // SPEC §18.6: after a graceful end the streams QUIC received
                // before it are still handed out (quinn's accept returns them
                // ahead of the connection's end), then `None`.
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
                            return Ok(Some(self.stream(&mut state, send, recv, id)));
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
    pub(crate) fn stats(&self) -> SessionStats {
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
        // quinn keeps the flow control, the queues and the streams' ends
        // and does not report them: those fields say so (`None`).
        SessionStats {
            transport_bytes_sent: quic.udp_tx.bytes,
            transport_bytes_received: quic.udp_rx.bytes,
            data_bytes_sent: self.data_sent.load(Ordering::Relaxed),
            data_bytes_received: self.data_received.load(Ordering::Relaxed),
            frames_sent: frames(&quic.frame_tx),
            frames_received: frames(&quic.frame_rx),
            open_streams: state.open_streams,
            send_window: None,
            recv_window: None,
            recv_buffered: None,
            queued_data_bytes: None,
            accept_backlog: None,
            data_queue_depth: None,
            control_queue_depth: None,
            blocked_on_connection: None,
            blocked_on_streams: None,
            // quinn sends a *_BLOCKED frame when a window closes on data,
            // not every time: a count of probes, not of zero windows.
            zero_window_events: None,
            probes_sent: blocked(&quic.frame_tx),
            // QUIC does not answer a *_BLOCKED frame.
            probes_answered: None,
            windows_grown: None,
            windows_shrunk: None,
            rtt: state.plane.rtt(),
            smoothed_rtt: Some(quic.path.rtt),
            streams_completed: None,
            streams_reset_local: None,
            streams_reset_remote: None,
            streams_cancelled_at_drain: None,
            resets_sent: None,
            resets_received: None,
            goaways_sent: state.plane.goaways_sent().clone(),
            goaways_received: state.plane.goaways_received().clone(),
        }
    }
}
