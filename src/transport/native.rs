//! Native QUIC mode: every creditmux stream is one QUIC bidirectional
//! stream and QUIC's own flow control carries the credit (SPEC §18). This
//! module holds the session and stream state behind the public
//! [`Session`](crate::Session) and [`Stream`](crate::Stream) types; the
//! entry points are in [`quic`](crate::quic).
//!
//! Each side opens one unidirectional control stream at the start. It
//! carries the preface, then PING and GOAWAY frames in the SPEC's encoding.
//! One task per connection reads the peer's control stream, writes this
//! side's, refuses streams after a GOAWAY and ends the connection.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, VarInt};
use tokio::sync::Notify;

use crate::config::Config;
use crate::conn::flood::{Flood, FloodCounters, SendBudget};
use crate::conn::{ConnectionStats, Side, StreamStats};
use crate::driver::now;
use crate::error::{ConnectionError, Initiator, OpenError, StreamError};
use crate::frame::{
    Decoded, ErrorCode, Frame, FrameDecoder, GoAway, PREFACE_LEN, Ping, PrefaceError, StreamId,
    decode_preface, encode_preface,
};

/// Most bytes taken off the peer's control stream per read.
const CONTROL_READ_CHUNK: usize = 16 * 1024;

/// The state one native session's handles and its control task share.
pub(crate) struct Shared {
    connection: Connection,
    side: Side,
    config: Config,
    state: Mutex<State>,
    /// Wakes the control task: something to write, or a stream released.
    task: Notify,
    /// Wakes application waiters: a PING answered, a GOAWAY, the end.
    changed: Notify,
    data_sent: AtomicU64,
    data_received: AtomicU64,
}

#[derive(Debug)]
struct State {
    session_handles: usize,
    /// Stream handles alive (a stream counts until both halves are gone).
    open_streams: u64,
    /// Streams this side opened and still holds, for a GOAWAY to refuse
    /// (SPEC §13.1). Entries leave with their handles.
    local_streams: HashMap<StreamId, Weak<StreamRef>>,
    /// Highest peer-initiated stream handed to the application.
    last_accepted: StreamId,
    /// This side sent (or owes) a graceful GOAWAY.
    goaway_sent: bool,
    goaway_owed: bool,
    /// Lowest last_stream_id of the peer's GOAWAYs.
    peer_goaway: Option<StreamId>,
    goaways_received: u32,
    ping_owed: bool,
    pong_owed: Option<[u8; 8]>,
    next_ping: u64,
    ping_in_flight: Option<([u8; 8], Instant)>,
    pings_completed: u64,
    rtt: Option<Duration>,
    /// Peer-triggered frames against the flood limits (SPEC §16.1).
    flood: FloodCounters,
    /// Why the connection is ending, once decided (a GOAWAY either way, a
    /// local close, a violation).
    cause: Option<ConnectionError>,
    /// Why it ended, once the QUIC connection is closed.
    error: Option<ConnectionError>,
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records why the connection ends unless something else already did.
    fn set_cause(state: &mut State, cause: ConnectionError) {
        match &state.cause {
            // An error replaces a graceful shutdown in progress.
            Some(existing) if !existing.is_graceful() || cause.is_graceful() => {}
            _ => state.cause = Some(cause),
        }
    }

    /// Closes the QUIC connection with `code` for `cause`.
    fn abort(&self, code: ErrorCode, cause: ConnectionError, reason: &str) {
        Shared::set_cause(&mut self.lock(), cause);
        self.connection
            .close(VarInt::from_u32(code.0), reason.as_bytes());
    }

    /// Counts a peer-triggered event; past its flood limit the connection
    /// is closed with ENHANCE_YOUR_CALM. Returns true if it was.
    fn count_flood(&self, what: Flood) -> bool {
        let exceeded = self.lock().flood.count(now(), what).err();
        let Some(what) = exceeded else {
            return false;
        };
        let reason = format!("flood limit exceeded: {}", what.name());
        self.abort(
            ErrorCode::ENHANCE_YOUR_CALM,
            ConnectionError::ProtocolViolation {
                code: ErrorCode::ENHANCE_YOUR_CALM,
                reason: reason.clone(),
            },
            &reason,
        );
        true
    }

    /// What the application sees for `err`, the reason quinn gives.
    fn connection_error(&self, err: &quinn::ConnectionError) -> ConnectionError {
        let state = self.lock();
        if let Some(error) = &state.error {
            return error.clone();
        }
        resolve(state.cause.as_ref(), err)
    }

    fn stream_error(&self, err: &quinn::ConnectionError) -> StreamError {
        StreamError::ConnectionLost(self.connection_error(err))
    }

    /// The connection ended with `err`: record it and wake everyone.
    fn finish(&self, err: &quinn::ConnectionError) {
        {
            let mut state = self.lock();
            if state.error.is_none() {
                state.error = Some(resolve(state.cause.as_ref(), err));
            }
            state.done = true;
        }
        self.changed.notify_waiters();
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
        self.lock().open_streams += 1;
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

/// The end the application sees: the cause this side decided, unless the
/// connection ended otherwise (an error after a graceful shutdown began).
fn resolve(cause: Option<&ConnectionError>, err: &quinn::ConnectionError) -> ConnectionError {
    use quinn::ConnectionError as Q;
    let benign = match err {
        Q::LocallyClosed => true,
        Q::ApplicationClosed(close) => close.error_code == VarInt::from_u32(0),
        _ => false,
    };
    if let Some(cause) = cause
        && (benign || !cause.is_graceful())
    {
        return cause.clone();
    }
    match err {
        Q::LocallyClosed => ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR,
        },
        Q::ApplicationClosed(close) => ConnectionError::ClosedByPeer {
            code: error_code(close.error_code),
            debug: debug_text(&close.reason),
        },
        Q::TimedOut => ConnectionError::IdleTimeout,
        Q::Reset => ConnectionError::TransportClosed,
        Q::TransportError(err) => ConnectionError::ProtocolViolation {
            code: ErrorCode::PROTOCOL_ERROR,
            reason: format!("QUIC: {err}"),
        },
        Q::ConnectionClosed(close) => ConnectionError::ProtocolViolation {
            code: ErrorCode::PROTOCOL_ERROR,
            reason: format!("QUIC: the peer closed the connection with {close}"),
        },
        other => ConnectionError::Io {
            kind: std::io::ErrorKind::ConnectionAborted,
            message: format!("QUIC: {other}"),
        },
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

/// Opens this side's control stream, writes the preface, and waits for the
/// peer's control stream and preface (bounded by the handshake timeout).
/// Then starts the control task.
pub(crate) async fn start(
    connection: Connection,
    config: Config,
    side: Side,
) -> Result<Arc<Shared>, ConnectionError> {
    // One deadline for the whole exchange (SPEC §18.3).
    let deadline = tokio::time::Instant::now() + config.handshake_timeout();
    let handshake = async {
        let opened = async {
            let mut send = connection.open_uni().await?;
            // A write error shows as the connection's error below.
            let _ = send.write_all(&encode_preface()).await;
            Ok::<_, quinn::ConnectionError>(send)
        };
        let (send, mut recv) =
            tokio::try_join!(opened, connection.accept_uni()).map_err(|err| resolve(None, &err))?;
        let input = read_preface(&mut recv).await?;
        Ok::<_, ConnectionError>((send, recv, input))
    };
    let (send, recv, input) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(err)) => {
            let (code, reason): (ErrorCode, &[u8]) = match &err {
                ConnectionError::Preface(PrefaceError::UnsupportedVersion { .. }) => {
                    (ErrorCode::VERSION_MISMATCH, b"supported: 1")
                }
                _ => (ErrorCode::PROTOCOL_ERROR, b"invalid preface"),
            };
            connection.close(VarInt::from_u32(code.0), reason);
            return Err(err);
        }
        Err(_) => {
            connection.close(
                VarInt::from_u32(ErrorCode::SETTINGS_TIMEOUT.0),
                b"handshake timeout",
            );
            return Err(ConnectionError::HandshakeTimeout);
        }
    };
    let flood = FloodCounters::new(config.flood_limits());
    let shared = Arc::new(Shared {
        connection,
        side,
        config,
        state: Mutex::new(State {
            session_handles: 1,
            open_streams: 0,
            local_streams: HashMap::new(),
            last_accepted: StreamId::CONNECTION,
            goaway_sent: false,
            goaway_owed: false,
            peer_goaway: None,
            goaways_received: 0,
            ping_owed: false,
            pong_owed: None,
            next_ping: 0,
            ping_in_flight: None,
            pings_completed: 0,
            rtt: None,
            flood,
            cause: None,
            error: None,
            done: false,
        }),
        task: Notify::new(),
        changed: Notify::new(),
        data_sent: AtomicU64::new(0),
        data_received: AtomicU64::new(0),
    });
    tokio::spawn(control_task(shared.clone(), send, recv, input));
    Ok(shared)
}

/// Reads the peer's preface off its control stream (SPEC §3.3: bad magic is
/// decided at the first differing byte). Returns the bytes after it.
async fn read_preface(recv: &mut quinn::RecvStream) -> Result<BytesMut, ConnectionError> {
    let mut input = BytesMut::new();
    loop {
        match decode_preface(&input) {
            Ok(Some(_)) => {
                input.advance(PREFACE_LEN);
                return Ok(input);
            }
            Ok(None) => {}
            Err(err) => return Err(err.into()),
        }
        match recv.read_chunk(PREFACE_LEN - input.len(), true).await {
            Ok(Some(chunk)) => input.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(quinn::ReadError::Reset(_)) => {
                return Err(ConnectionError::ProtocolViolation {
                    code: ErrorCode::PROTOCOL_ERROR,
                    reason: "control stream ended before the preface".into(),
                });
            }
            Err(quinn::ReadError::ConnectionLost(err)) => return Err(resolve(None, &err)),
            Err(err) => {
                return Err(ConnectionError::Io {
                    kind: std::io::ErrorKind::ConnectionAborted,
                    message: format!("QUIC: {err}"),
                });
            }
        }
    }
}

// ----- the control task ------------------------------------------------------

/// Runs one native connection's control plane until the QUIC connection
/// closes: answers and completes PINGs, sends and acts on GOAWAY, refuses
/// streams after its own GOAWAY, finishes the control stream once drained
/// and closes the connection when both sides have, or at the drain timeout.
async fn control_task(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut input: BytesMut,
) {
    let mut decoder = FrameDecoder::new(shared.config.max_frame_payload());
    // Bytes to write on the control stream: refilled only once empty, so
    // a peer that does not read its end cannot make it grow.
    let mut out = BytesMut::new();
    let mut ping_budget = SendBudget::default();
    let mut fin_sent = false;
    let mut peer_fin = false;
    let mut drain_deadline: Option<Instant> = None;
    on_control_input(&shared, &mut decoder, &mut input);
    loop {
        let notified = shared.task.notified();
        let t = now();
        let mut wake_at = drain_deadline;
        let (goaway_sent, draining, open) = {
            let mut state = shared.lock();
            if out.is_empty() {
                if let Some(payload) = state.pong_owed.take() {
                    Frame::Ping(Ping { ack: true, payload }).encode(&mut out);
                }
                // SPEC §12.1: at most 50 PINGs in any second.
                if state.ping_owed {
                    if ping_budget.try_take(t) {
                        state.ping_owed = false;
                        let payload = state.next_ping.to_be_bytes();
                        state.next_ping += 1;
                        state.ping_in_flight = Some((payload, t));
                        Frame::Ping(Ping {
                            ack: false,
                            payload,
                        })
                        .encode(&mut out);
                    } else {
                        wake_at = earliest(wake_at, ping_budget.available_at(t));
                    }
                }
                if state.goaway_owed {
                    state.goaway_owed = false;
                    Frame::GoAway(GoAway {
                        last_stream: state.last_accepted,
                        code: ErrorCode::NO_ERROR,
                        debug: Bytes::new(),
                    })
                    .encode(&mut out);
                }
            }
            if let Some((_, sent)) = state.ping_in_flight {
                wake_at = earliest(wake_at, sent + shared.config.keepalive_timeout());
            }
            let draining = state.goaway_sent || state.peer_goaway.is_some();
            (state.goaway_sent, draining, state.open_streams)
        };
        if draining && drain_deadline.is_none() {
            let at = t + shared.config.drain_timeout();
            drain_deadline = Some(at);
            wake_at = earliest(wake_at, at);
        }
        // SPEC §18.6: a drained side finishes its control stream; the
        // connection closes once both have.
        if draining && open == 0 && out.is_empty() && !fin_sent {
            let _ = send.finish();
            fin_sent = true;
        }
        if fin_sent && peer_fin {
            shared
                .connection
                .close(VarInt::from_u32(0), b"creditmux session ended");
        }
        tokio::select! {
            biased;
            err = shared.connection.closed() => {
                shared.finish(&err);
                return;
            }
            () = notified => {}
            written = poll_fn(|cx| poll_write_some(&mut send, cx, &out)), if !out.is_empty() => {
                match written {
                    Ok(n) => out.advance(n),
                    Err(quinn::WriteError::Stopped(_)) => {
                        control_violation(&shared, "the peer stopped this side's control stream");
                    }
                    // The connection is gone; its error arrives above.
                    Err(_) => out.clear(),
                }
            }
            read = recv.read_chunk(CONTROL_READ_CHUNK, true), if !peer_fin => match read {
                Ok(Some(chunk)) => {
                    input.extend_from_slice(&chunk.bytes);
                    on_control_input(&shared, &mut decoder, &mut input);
                }
                Ok(None) => {
                    peer_fin = true;
                    let state = shared.lock();
                    let drained = state.goaway_sent || state.peer_goaway.is_some();
                    drop(state);
                    if !drained || !input.is_empty() {
                        control_violation(&shared, "the peer finished its control stream early");
                    }
                }
                Err(quinn::ReadError::Reset(_)) => {
                    peer_fin = true;
                    control_violation(&shared, "the peer reset its control stream");
                }
                Err(_) => peer_fin = true,
            },
            incoming = shared.connection.accept_bi(), if goaway_sent => {
                // SPEC §13.2: after a GOAWAY, new peer streams are refused.
                if let Ok((mut send, mut recv)) = incoming {
                    let _ = send.reset(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                    let _ = recv.stop(VarInt::from_u32(ErrorCode::REFUSED_STREAM.0));
                    shared.count_flood(Flood::StrayFrame);
                }
            }
            () = sleep_until(wake_at) => {
                let t = now();
                if drain_deadline.is_some_and(|at| at <= t) {
                    drain_deadline = Some(t + Duration::from_secs(3600));
                    // SPEC §13.2: the drain timeout ends a graceful close.
                    shared.connection.close(VarInt::from_u32(0), b"drain timeout");
                }
                let unanswered = shared
                    .lock()
                    .ping_in_flight
                    .is_some_and(|(_, sent)| sent + shared.config.keepalive_timeout() <= t);
                if unanswered {
                    shared.abort(
                        ErrorCode::IDLE_TIMEOUT,
                        ConnectionError::IdleTimeout,
                        "PING not answered",
                    );
                }
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
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

fn control_violation(shared: &Shared, reason: &str) {
    shared.abort(
        ErrorCode::PROTOCOL_ERROR,
        ConnectionError::ProtocolViolation {
            code: ErrorCode::PROTOCOL_ERROR,
            reason: reason.to_string(),
        },
        reason,
    );
}

/// Acts on every whole frame in `input` (SPEC §18.3).
fn on_control_input(shared: &Shared, decoder: &mut FrameDecoder, input: &mut BytesMut) {
    loop {
        let decoded = match decoder.decode_next(input) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return,
            Err(err) => {
                let code = err.code();
                shared.abort(code, ConnectionError::Frame(err), "invalid control frame");
                input.clear();
                return;
            }
        };
        let counted = match decoded {
            Decoded::Ignored(_) => Some(Flood::UnknownFrame),
            Decoded::Frame(Frame::Ping(ping)) => on_ping(shared, ping),
            Decoded::Frame(Frame::GoAway(goaway)) => {
                on_goaway(shared, goaway);
                None
            }
            Decoded::Frame(other) => {
                let reason = format!(
                    "frame type {:#x} on the native control stream",
                    other.header().kind
                );
                control_violation(shared, &reason);
                input.clear();
                return;
            }
        };
        if let Some(what) = counted
            && shared.count_flood(what)
        {
            input.clear();
            return;
        }
    }
}

/// A PING or its ACK; returns what it counts toward the flood limit (SPEC
/// §16.1: PINGs, and ACKs that answer nothing this side sent).
fn on_ping(shared: &Shared, ping: Ping) -> Option<Flood> {
    let mut state = shared.lock();
    if !ping.ack {
        // SPEC §10.3: a newer PING replaces a pending reply.
        state.pong_owed = Some(ping.payload);
        drop(state);
        shared.task.notify_one();
        return Some(Flood::Ping);
    }
    match state.ping_in_flight {
        Some((payload, sent)) if payload == ping.payload => {
            state.ping_in_flight = None;
            state.rtt = Some(now().saturating_duration_since(sent));
            state.pings_completed += 1;
            drop(state);
            shared.changed.notify_waiters();
            // The deadline of this PING is gone.
            shared.task.notify_one();
            None
        }
        _ => Some(Flood::Ping),
    }
}

fn on_goaway(shared: &Shared, goaway: GoAway) {
    let mut state = shared.lock();
    state.goaways_received += 1;
    if state.goaways_received > 5 {
        drop(state);
        let reason = "more than 5 GOAWAY frames";
        shared.abort(
            ErrorCode::ENHANCE_YOUR_CALM,
            ConnectionError::ProtocolViolation {
                code: ErrorCode::ENHANCE_YOUR_CALM,
                reason: reason.into(),
            },
            reason,
        );
        return;
    }
    let last = state.peer_goaway.map_or(goaway.last_stream, |previous| {
        previous.min(goaway.last_stream)
    });
    state.peer_goaway = Some(last);
    let cause = ConnectionError::ClosedByPeer {
        code: goaway.code,
        debug: debug_text(&goaway.debug),
    };
    Shared::set_cause(&mut state, cause);
    let refused: Vec<Weak<StreamRef>> = state
        .local_streams
        .iter()
        .filter(|&(&id, _)| id > last)
        .map(|(_, stream)| stream.clone())
        .collect();
    drop(state);
    // SPEC §13.1: streams this side opened above last_stream_id were not
    // processed and will not be; they fail with REFUSED_STREAM now.
    for stream in refused.iter().filter_map(Weak::upgrade) {
        stream.refuse();
    }
    if goaway.code != ErrorCode::NO_ERROR {
        shared
            .connection
            .close(VarInt::from_u32(goaway.code.0), b"GOAWAY received");
    }
    shared.changed.notify_waiters();
    shared.task.notify_one();
}

// ----- session operations ----------------------------------------------------

impl Shared {
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    pub(crate) fn add_handle(&self) {
        self.lock().session_handles += 1;
    }

    /// The last session handle starts a graceful close.
    pub(crate) fn drop_handle(&self) {
        let mut state = self.lock();
        state.session_handles -= 1;
        if state.session_handles == 0 && !state.done {
            self.start_goaway(&mut state);
        }
    }

    fn start_goaway(&self, state: &mut State) {
        if !state.goaway_sent {
            state.goaway_sent = true;
            state.goaway_owed = true;
            Shared::set_cause(
                state,
                ConnectionError::LocallyClosed {
                    code: ErrorCode::NO_ERROR,
                },
            );
            self.task.notify_one();
            self.changed.notify_waiters();
        }
    }

    pub(crate) async fn open(self: &Arc<Shared>) -> Result<(RecvHalf, SendHalf), OpenError> {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if let Some(err) = &state.error {
                    return Err(OpenError::ConnectionLost(err.clone()));
                }
                if state.goaway_sent || state.peer_goaway.is_some() {
                    return Err(OpenError::GoingAway);
                }
                if let Some(cause) = &state.cause
                    && !cause.is_graceful()
                {
                    return Err(OpenError::ConnectionLost(cause.clone()));
                }
            }
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
                    .error
                    .as_ref()
                    .or(state.cause.as_ref().filter(|cause| !cause.is_graceful()));
                if let Some(err) = end {
                    return if err.is_graceful() {
                        Ok(None)
                    } else {
                        Err(err.clone())
                    };
                }
                if state.goaway_sent {
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
                        Some(id) if !state.goaway_sent => {
                            state.last_accepted = state.last_accepted.max(id);
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
        let target = {
            let mut state = self.lock();
            if state.ping_in_flight.is_none() && !state.ping_owed {
                state.ping_owed = true;
                self.task.notify_one();
            }
            state.pings_completed + 1
        };
        self.wait_changed(|state| {
            if state.pings_completed >= target {
                return Some(Ok(state.rtt.unwrap_or_default()));
            }
            state.error.clone().map(Err)
        })
        .await
    }

    pub(crate) async fn close(&self, code: ErrorCode) -> Result<(), ConnectionError> {
        if code == ErrorCode::NO_ERROR {
            self.start_goaway(&mut self.lock());
        } else {
            self.abort(code, ConnectionError::LocallyClosed { code }, "");
        }
        self.closed().await;
        match self.error() {
            // A graceful end is this call's success too, whichever side's
            // GOAWAY came first.
            Some(err) if code == ErrorCode::NO_ERROR && err.is_graceful() => Ok(()),
            Some(ConnectionError::LocallyClosed { .. }) | None => Ok(()),
            Some(err) => Err(err),
        }
    }

    pub(crate) async fn closed(&self) {
        self.wait_changed(|state| state.done.then_some(())).await
    }

    pub(crate) fn error(&self) -> Option<ConnectionError> {
        self.lock().error.clone()
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
            send_window: 0,
            recv_window: 0,
            recv_buffered: 0,
            open_streams: state.open_streams,
            accept_backlog: 0,
            data_queue_depth: 0,
            control_queue_depth: 0,
            blocked_on_connection: Duration::ZERO,
            blocked_on_streams: Duration::ZERO,
            zero_window_events: blocked(&quic.frame_tx),
            probes_sent: blocked(&quic.frame_tx),
            probes_answered: blocked(&quic.frame_rx),
            rtt: state.rtt.or(Some(quic.path.rtt)),
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
                self.shared.count_flood(Flood::Reset);
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
                    self.shared.count_flood(Flood::Reset);
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
        if state.open_streams == 0 {
            self.shared.task.notify_one();
        }
    }
}

/// The read half of a native stream.
pub(crate) struct RecvHalf {
    handle: Arc<StreamRef>,
    /// False while part of a whole `Stream`.
    pub(crate) alone: bool,
}

impl RecvHalf {
    pub(crate) fn id(&self) -> StreamId {
        self.handle.id
    }

    /// The next chunk, without copying; `None` at the end.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, StreamError>> {
        self.handle.poll_chunk(cx, max)
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
        let limit = handle.shared.config.half_close_timeout();
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
    pub(crate) alone: bool,
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
    pub(crate) fn id(&self) -> StreamId {
        self.handle.id
    }

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

    pub(crate) async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.refused()?;
        let n = data.len();
        self.send
            .write_chunk(data)
            .await
            .map_err(|err| self.handle.write_error(err))?;
        self.count_sent(n);
        Ok(())
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, StreamError>> {
        self.refused()?;
        match ready!(Pin::new(&mut self.send).poll_write(cx, buf)) {
            Ok(n) => {
                self.count_sent(n);
                Poll::Ready(Ok(n))
            }
            Err(err) => Poll::Ready(Err(self.handle.write_error(err))),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<(), StreamError> {
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
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        match self.finish() {
            Ok(()) | Err(StreamError::Finished) => {}
            Err(err) => return Poll::Ready(Err(err)),
        }
        let send = &self.send;
        let delivered = self
            .delivered
            .get_or_insert_with(|| Box::pin(send.stopped()));
        Poll::Ready(match ready!(delivered.as_mut().poll(cx)) {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(StreamError::Reset {
                code: error_code(code),
                initiator: Initiator::Remote,
            }),
            Err(quinn::StoppedError::ConnectionLost(err)) => {
                Err(self.handle.shared.stream_error(&err))
            }
            Err(quinn::StoppedError::ZeroRttRejected) => Err(StreamError::ConnectionLost(
                ConnectionError::TransportClosed,
            )),
        })
    }

    pub(crate) fn reset(&mut self, code: ErrorCode) {
        self.handle.reset(&mut self.send, code);
    }

    pub(crate) fn stats(&self) -> StreamStats {
        self.handle.stats()
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
