//! The sans-IO connection: the whole protocol as a deterministic state
//! machine. It reads no clock, does no I/O and spawns nothing; time comes
//! in as a parameter and bytes go out through [`Connection::poll_transmit`].
//!
//! # Call order
//!
//! A driver owns one `Connection` and loops:
//!
//! 1. **Inputs.** [`handle_input`](Connection::handle_input) with bytes read
//!    from the transport; [`handle_eof`](Connection::handle_eof) when it ends;
//!    [`handle_timeout`](Connection::handle_timeout) when the deadline from
//!    `poll_timeout` has passed.
//! 2. **Application commands** at any time: [`open`](Connection::open),
//!    [`accept`](Connection::accept), [`write`](Connection::write),
//!    [`finish`](Connection::finish), [`read`](Connection::read),
//!    [`reset`](Connection::reset), [`release`](Connection::release),
//!    [`ping`](Connection::ping), [`close`](Connection::close).
//! 3. **Outputs**, after any of the above:
//!    [`poll_transmit`](Connection::poll_transmit) until it adds nothing,
//!    [`poll_event`](Connection::poll_event) until `None` (which streams and
//!    which connection-level waiters to wake), and
//!    [`poll_timeout`](Connection::poll_timeout) for the next deadline.
//!
//! When [`is_finished`](Connection::is_finished) is true and the transmit
//! buffer has been written, the driver shuts the transport down.

mod flood;
mod recv;
mod send;
mod stream;
#[cfg(test)]
mod tests;
mod timer;
mod transmit;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConnectionError, Initiator, OpenError, StreamError};
use crate::flow::{RecvCredit, SendCredit};
use crate::frame::{ErrorCode, FrameDecoder, GoAway, Reset, SettingsValues, StreamId};

use flood::{FloodCounters, SendBudget};
pub use stream::StreamStats;
use stream::{Probe, Queued, StreamState};
use timer::{Timer, TimerTable};
pub use transmit::TransmitBuf;

/// Which end of the connection this is. The client opens odd stream ids,
/// the server even ones (SPEC §8.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opens odd ids.
    Client,
    /// Opens even ids.
    Server,
}

impl Side {
    fn first_id(self) -> u32 {
        match self {
            Side::Client => 1,
            Side::Server => 2,
        }
    }

    fn owns(self, id: StreamId) -> bool {
        id.is_client_initiated() == (self == Side::Client)
    }

    fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    fn id_at(self, index: u64) -> Option<StreamId> {
        let value = u64::from(self.first_id()) + 2 * index;
        u32::try_from(value).ok().and_then(StreamId::new)
    }
}

/// What changed, for the driver to wake the right waiters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A stream became readable or writable, finished, or was reset.
    Stream(StreamId),
    /// Connection-level state changed: handshake done, a stream to accept,
    /// stream-count credit, a PING answered, shutdown progress.
    Connection,
}

/// Outcome of [`Connection::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes, in order.
    Data(Bytes),
    /// The peer finished the stream and every byte was read.
    Finished,
    /// Nothing buffered yet; wait for [`Event::Stream`].
    Blocked,
}

/// Connection-level counters, exposed through [`Connection::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Bytes written to the transport (frames and preface).
    pub transport_bytes_sent: u64,
    /// Bytes read from the transport.
    pub transport_bytes_received: u64,
    /// DATA payload bytes sent.
    pub data_bytes_sent: u64,
    /// DATA payload bytes received.
    pub data_bytes_received: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Connection credit the peer granted that is not used yet.
    pub send_window: u64,
    /// Connection credit announced to the peer and not used yet.
    pub recv_window: u64,
    /// DATA bytes received and not yet released (read or discarded), over
    /// all streams. Zero once every stream is closed: credit conservation.
    pub recv_buffered: u64,
    /// Streams currently known to the connection.
    pub open_streams: u64,
    /// Streams waiting in the accept backlog.
    pub accept_backlog: u64,
    /// Streams ready to send, waiting for the scheduler.
    pub data_queue_depth: u64,
    /// Streams owing a control frame.
    pub control_queue_depth: u64,
    /// Time with data queued and zero connection credit.
    pub blocked_on_connection: Duration,
    /// Total time streams spent with data queued and zero stream credit
    /// (summed over streams, including closed ones).
    pub blocked_on_streams: Duration,
    /// Times the connection or a stream ran out of credit with data queued.
    pub zero_window_events: u64,
    /// BLOCKED probes sent.
    pub probes_sent: u64,
    /// BLOCKED probes received and answered.
    pub probes_answered: u64,
    /// Latest PING round-trip time.
    pub rtt: Option<Duration>,
}

/// Connection-level control frames owed to the peer (coalesced).
#[derive(Debug, Default)]
struct Owed {
    settings_ack: bool,
    window_update: bool,
    max_streams: bool,
    ping_ack: Option<[u8; 8]>,
    ping: Option<[u8; 8]>,
    blocked_connection: bool,
    blocked_streams: bool,
    goaway: Option<GoAway>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's preface and SETTINGS.
    Handshake,
    /// Streams flow.
    Open,
    /// A GOAWAY was sent or received: existing streams finish, no new ones.
    Draining,
    /// The connection has ended; only owed frames (a GOAWAY) go out.
    Closed,
}

/// The peer's settings, once known.
#[derive(Copy, Clone, Debug)]
struct PeerSettings {
    stream_window: u64,
    max_frame_payload: usize,
}

/// A creditmux connection endpoint, without I/O.
#[derive(Debug)]
pub struct Connection {
    side: Side,
    config: Config,
    phase: Phase,
    error: Option<ConnectionError>,
    decoder: FrameDecoder,
    preface_sent: bool,
    preface_received: bool,
    peer: Option<PeerSettings>,
    settings_acked: bool,
    streams: HashMap<StreamId, StreamState>,
    next_local_index: u64,
    next_peer_index: u64,
    conn_send: SendCredit,
    conn_recv: RecvCredit,
    open_send: SendCredit,
    open_recv: RecvCredit,
    data_queue: VecDeque<StreamId>,
    conn_blocked_queue: VecDeque<StreamId>,
    control_queue: VecDeque<StreamId>,
    wake_queue: VecDeque<StreamId>,
    accept_queue: VecDeque<StreamId>,
    stray_resets: VecDeque<Reset>,
    conn_event: bool,
    owed: Owed,
    ping_sent: Option<([u8; 8], Instant)>,
    ping_seq: u64,
    /// A PING the application asked for waits for the sender budget.
    ping_deferred: bool,
    ping_budget: SendBudget,
    blocked_budget: SendBudget,
    /// A BLOCKED for the connection credit / stream-count credit went out
    /// and no WINDOW_UPDATE(0) / MAX_STREAMS came since: the next one may
    /// be its answer, which is not a flood (SPEC §16.1).
    conn_blocked_unanswered: bool,
    open_blocked_unanswered: bool,
    goaway_sent: bool,
    /// last_stream_id and code of the GOAWAY this side sent or owes.
    goaway_last: Option<(StreamId, ErrorCode)>,
    goaway_received: Option<StreamId>,
    goaways_received: u32,
    timers: TimerTable,
    conn_probe: Option<Probe>,
    open_probe: Option<Probe>,
    /// Streams with a running stream-credit probe or half-close deadline.
    probing: HashMap<StreamId, ()>,
    flood: FloodCounters,
    stats: ConnectionStats,
    closed_streams_blocked: Duration,
    /// Bytes of a partial frame `handle_input` left in the caller's buffer,
    /// already counted in `transport_bytes_received`.
    input_carried: usize,
    /// The latest time passed in by the driver; application commands,
    /// which take no time, start probes from it.
    now: Instant,
}

impl Connection {
    /// A new endpoint. Its preface and SETTINGS are the first bytes
    /// `poll_transmit` produces.
    pub fn new(side: Side, config: Config, now: Instant) -> Connection {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + config.handshake_timeout);
        Connection {
            side,
            phase: Phase::Handshake,
            error: None,
            decoder: FrameDecoder::new(config.max_frame_payload),
            preface_sent: false,
            preface_received: false,
            peer: None,
            settings_acked: false,
            streams: HashMap::new(),
            next_local_index: 0,
            next_peer_index: 0,
            conn_send: SendCredit::new(0),
            conn_recv: RecvCredit::new(u64::from(config.connection_window)),
            open_send: SendCredit::new(0),
            open_recv: RecvCredit::new(u64::from(config.max_incoming_streams)),
            data_queue: VecDeque::new(),
            conn_blocked_queue: VecDeque::new(),
            control_queue: VecDeque::new(),
            wake_queue: VecDeque::new(),
            accept_queue: VecDeque::new(),
            stray_resets: VecDeque::new(),
            conn_event: false,
            owed: Owed::default(),
            ping_sent: None,
            ping_seq: 0,
            ping_deferred: false,
            ping_budget: SendBudget::default(),
            blocked_budget: SendBudget::default(),
            conn_blocked_unanswered: false,
            open_blocked_unanswered: false,
            goaway_sent: false,
            goaway_last: None,
            goaway_received: None,
            goaways_received: 0,
            timers,
            conn_probe: None,
            open_probe: None,
            probing: HashMap::new(),
            flood: FloodCounters::new(config.flood),
            stats: ConnectionStats::default(),
            closed_streams_blocked: Duration::ZERO,
            input_carried: 0,
            now,
            config,
        }
    }

    // ----- getters -------------------------------------------------------

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once both SETTINGS were exchanged and acknowledged.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Draining)
            || (self.peer.is_some() && self.settings_acked)
    }

    /// Why the connection ended, once it has.
    pub fn error(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    /// True when the connection has ended: the driver writes what
    /// `poll_transmit` still produces, then shuts the transport down.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True after a GOAWAY was sent or received: no new streams.
    pub fn is_going_away(&self) -> bool {
        self.goaway_sent || self.goaway_received.is_some()
    }

    /// Connection-level counters.
    pub fn stats(&self) -> ConnectionStats {
        let mut stats = self.stats.clone();
        stats.send_window = self.conn_send.available();
        stats.recv_window = self.conn_recv.limit() - self.conn_recv.received();
        stats.recv_buffered = self.conn_recv.buffered();
        stats.open_streams = self.streams.len() as u64;
        stats.accept_backlog = self.accept_queue.len() as u64;
        stats.data_queue_depth = (self.data_queue.len() + self.conn_blocked_queue.len()) as u64;
        stats.control_queue_depth = (self.control_queue.len() + self.stray_resets.len()) as u64;
        stats.blocked_on_streams = self.closed_streams_blocked
            + self
                .streams
                .values()
                .map(|s| s.stats.blocked_on_stream)
                .sum::<Duration>();
        stats
    }

    /// Counters of one stream, while the connection knows it.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let s = self.streams.get(&id)?;
        let mut stats = s.stats;
        stats.send_buffered = s.send_buffered as u64;
        stats.recv_buffered = s.recv_credit.buffered();
        stats.send_window = s.send_credit.available();
        stats.recv_window = s.recv_credit.limit() - s.recv_credit.received();
        Some(stats)
    }

    /// Bytes a stream may still buffer for sending right now.
    pub fn send_capacity(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| {
            (self.config.send_buffer as usize).saturating_sub(s.send_buffered)
        })
    }

    /// True when `poll_transmit` has something to write: the driver uses
    /// it to decide whether an application command needs it awake.
    pub fn wants_transmit(&self) -> bool {
        let owed = &self.owed;
        if self.phase == Phase::Closed {
            // Once the connection has ended, poll_transmit writes nothing
            // but the preface, a SETTINGS ack and the GOAWAY (SPEC §13.3).
            // Other owed frames (a keepalive PING due with the idle
            // timeout, a PING ack or credit update recorded just before the
            // failure, or after it by reads and releases) never go out;
            // counting them kept the driver from shutting the transport
            // down, spinning instead (found by fuzz target `session`).
            return !self.preface_sent || owed.settings_ack || owed.goaway.is_some();
        }
        !self.preface_sent
            || owed.settings_ack
            || owed.window_update
            || owed.max_streams
            || owed.ping_ack.is_some()
            || owed.ping.is_some()
            || owed.blocked_connection
            || owed.blocked_streams
            || owed.goaway.is_some()
            || !self.stray_resets.is_empty()
            || !self.control_queue.is_empty()
            || (!self.data_queue.is_empty() && self.phase != Phase::Closed)
    }

    /// The latest PING round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.stats.rtt
    }

    /// True while a PING of ours waits for its acknowledgement.
    pub fn ping_in_flight(&self) -> bool {
        self.ping_sent.is_some() || self.owed.ping.is_some() || self.ping_deferred
    }

    /// Number of PINGs acknowledged so far; lets callers tell their ping
    /// was answered.
    pub fn pings_completed(&self) -> u64 {
        self.ping_seq - u64::from(self.ping_in_flight())
    }

    // ----- application commands -----------------------------------------

    /// Opens a stream. `Ok(None)`: the peer's stream-count limit is reached
    /// (or the handshake is not done); wait for [`Event::Connection`] and
    /// call again.
    pub fn open(&mut self, now: Instant) -> Result<Option<StreamId>, OpenError> {
        match &self.error {
            Some(err) if !err.is_graceful() => return Err(OpenError::ConnectionLost(err.clone())),
            _ if self.is_going_away() => return Err(OpenError::GoingAway),
            Some(err) => return Err(OpenError::ConnectionLost(err.clone())),
            None => {}
        }
        let Some(peer) = self.peer else {
            return Ok(None);
        };
        let index = self.next_local_index;
        let Some(id) = self.side.id_at(index) else {
            return Err(OpenError::IdsExhausted);
        };
        if self.open_send.available() == 0 {
            // SPEC §11: probe the stream-count credit too.
            if self.open_probe.is_none() {
                self.open_probe = Some(Probe::start(now, self.config.probe_interval));
                self.stats.zero_window_events += 1;
                self.arm_probe_timer(now + self.config.probe_interval);
            }
            return Ok(None);
        }
        self.open_send.consume(1);
        self.next_local_index += 1;
        let mut stream = StreamState::new(peer.stream_window, u64::from(self.config.stream_window));
        stream.needs_open = true;
        self.streams.insert(id, stream);
        self.schedule_data(id);
        Ok(Some(id))
    }

    /// Takes the next stream the peer opened, if any.
    pub fn accept(&mut self) -> Option<StreamId> {
        self.accept_queue.pop_front()
    }

    /// True when no more streams will arrive for `accept` (GOAWAY or closed)
    /// and the backlog is empty.
    pub fn accept_finished(&self) -> bool {
        self.accept_queue.is_empty()
            && (self.goaway_sent || self.error.is_some() || self.phase == Phase::Closed)
    }

    /// Buffers bytes for sending on `id`, copying at most the free space of
    /// its send buffer. `Ok(0)` for a non-empty `data` means the buffer is
    /// full: wait for [`Event::Stream`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let n = data.len().min(self.writable(id)?);
        if n > 0 {
            self.push_send(id, Bytes::copy_from_slice(&data[..n]));
        } else if !data.is_empty() {
            self.note_writer_waiting(id);
        }
        Ok(n)
    }

    /// Buffers `data` without copying, if its send buffer has room for the
    /// whole of it; otherwise as much as fits is split off the front.
    /// Returns the bytes accepted; the rest stays in `data`.
    pub fn write_bytes(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        let n = data.len().min(self.writable(id)?);
        if n > 0 {
            let chunk = data.split_to(n);
            self.push_send(id, chunk);
        } else if !data.is_empty() {
            self.note_writer_waiting(id);
        }
        Ok(n)
    }

    fn writable(&self, id: StreamId) -> Result<usize, StreamError> {
        let stream = self.streams.get(&id).ok_or_else(|| self.gone_error())?;
        if let Some((code, initiator)) = stream.reset {
            return Err(StreamError::Reset { code, initiator });
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        if stream.fin_queued {
            return Err(StreamError::Finished);
        }
        Ok((self.config.send_buffer as usize).saturating_sub(stream.send_buffered))
    }

    fn note_writer_waiting(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.writer_waiting = true;
        }
    }

    fn push_send(&mut self, id: StreamId, chunk: Bytes) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_buffered += chunk.len();
            stream.send_buf.push_back(chunk);
            self.schedule_data(id);
        }
    }

    /// Finishes the send direction: a FIN follows the buffered bytes.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let gone = self.gone_error();
        let stream = self.streams.get_mut(&id).ok_or(gone)?;
        if let Some((code, initiator)) = stream.reset {
            return Err(StreamError::Reset { code, initiator });
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        if !stream.fin_queued {
            stream.fin_queued = true;
            self.schedule_data(id);
        }
        Ok(())
    }

    /// True once the FIN of `id` went out (or the stream is gone).
    pub fn is_finish_sent(&self, id: StreamId) -> bool {
        self.streams.get(&id).is_none_or(|s| s.fin_sent)
    }

    /// Reads up to `max` bytes from `id`. Buffered bytes are delivered even
    /// after the connection failed; the error follows them.
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<ReadOutcome, StreamError> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(self.gone_error());
        };
        if let Some((code, initiator)) = stream.reset {
            return Err(StreamError::Reset { code, initiator });
        }
        if let Some(chunk) = stream.take_recv(max.max(1)) {
            let n = chunk.len() as u64;
            // SPEC §9.4: credit is released when the application reads.
            if stream.recv_credit.release(n) && !stream.fin_received {
                stream.owe_window_update = true;
                self.queue_control(id);
            }
            if self.conn_recv.release(n) {
                self.owed.window_update = true;
            }
            self.maybe_reap(id);
            return Ok(ReadOutcome::Data(chunk));
        }
        if stream.fin_received {
            self.maybe_reap(id);
            return Ok(ReadOutcome::Finished);
        }
        if let Some(err) = &self.error {
            return Err(StreamError::ConnectionLost(err.clone()));
        }
        Ok(ReadOutcome::Blocked)
    }

    fn gone_error(&self) -> StreamError {
        match &self.error {
            Some(err) => StreamError::ConnectionLost(err.clone()),
            None => StreamError::Reset {
                code: ErrorCode::CANCEL,
                initiator: Initiator::Local,
            },
        }
    }

    /// Aborts `id` in both directions with `code` (SPEC §8.7).
    pub fn reset(&mut self, id: StreamId, code: ErrorCode) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.reset.is_some() || (stream.send_done() && stream.recv_done()) {
            return;
        }
        stream.reset = Some((code, Initiator::Local));
        stream.clear_send();
        if stream.queued == Queued::ConnBlocked {
            // Leave the connection-credit queue now, so the stream can be
            // forgotten without waiting for connection credit.
            stream.queued = Queued::No;
            self.conn_blocked_queue.retain(|&queued| queued != id);
        }
        let discarded = stream.discard_recv();
        let _ = stream.recv_credit.release(discarded);
        stream.owe_window_update = false;
        // SPEC §8.7: no RESET on a closed stream (both FINs exchanged, only
        // unread data left): the reset is local, the peer is done with it.
        let closed = stream.fin_sent && stream.fin_received;
        if !closed {
            stream.owe_reset = Some(code);
            if !stream.needs_open {
                self.queue_control(id);
            }
        }
        // Otherwise the peer has not heard of the stream, but its id used
        // stream-count credit (SPEC §9.6) that only a frame on it returns:
        // write_data still sends the opening frame, in id order (§8.2),
        // with this RESET right behind it.
        self.release_conn_credit(discarded);
        self.stop_watching(id);
        self.wake(id);
        self.maybe_reap(id);
    }

    /// The application dropped its handle to `id` (SPEC §8.8). Unread
    /// data is discarded. If the peer may still send and the application
    /// had not already stopped reading, the stream is reset with CANCEL;
    /// otherwise buffered bytes and a FIN still go out, and the stream is
    /// forgotten once the peer finishes too.
    pub fn release(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.released = true;
        if stream.reset.is_none() && !stream.fin_received && !stream.recv_discard {
            self.reset(id, ErrorCode::CANCEL);
        } else if stream.reset.is_none() {
            let queue_fin = !stream.fin_queued;
            stream.fin_queued = true;
            let discarded = stream.discard_recv();
            let _ = stream.recv_credit.release(discarded);
            stream.recv_discard = true;
            self.release_conn_credit(discarded);
            if queue_fin {
                self.schedule_data(id);
            }
        }
        self.maybe_reap(id);
    }

    /// The application will not read `id` any more (its read half was
    /// dropped): buffered and future bytes are discarded and their credit
    /// returned at once. The send direction is unaffected.
    pub fn stop_reading(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.recv_discard = true;
        let discarded = stream.discard_recv();
        let _ = stream.recv_credit.release(discarded);
        self.release_conn_credit(discarded);
        self.maybe_reap(id);
    }

    /// Sends a PING unless one is in flight. Its RTT shows in
    /// [`Connection::rtt`] when the acknowledgement arrives. Beyond 50
    /// PINGs in 1 s the next one waits (SPEC §12.1), and counts as in
    /// flight meanwhile.
    pub fn ping(&mut self) {
        if self.ping_in_flight() || self.error.is_some() {
            return;
        }
        self.ping_seq += 1;
        self.ping_deferred = true;
        self.send_deferred_ping(self.now);
    }

    /// Lets the deferred PING out if the sender budget allows, otherwise
    /// arms the timer for when it will.
    fn send_deferred_ping(&mut self, now: Instant) {
        if !self.ping_deferred {
            return;
        }
        // SPEC §12.1: at most 50 PINGs without ACK in any 1 s; one in
        // flight at a time is not enough when the round trip is short.
        if self.ping_budget.try_take(now) {
            self.ping_deferred = false;
            self.owed.ping = Some(self.ping_seq.to_be_bytes());
        } else {
            let at = self.ping_budget.available_at(now);
            self.timers.set(Timer::PingPace, at);
        }
    }

    /// Starts closing: sends GOAWAY with `code`. With NO_ERROR, streams in
    /// flight finish first (bounded by the drain timeout); with another
    /// code the connection ends as soon as the GOAWAY is written.
    pub fn close(&mut self, now: Instant, code: ErrorCode, debug: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.send_goaway(code, debug);
        if code == ErrorCode::NO_ERROR && self.preface_received {
            self.phase = Phase::Draining;
            self.timers
                .set(Timer::Drain, now + self.config.drain_timeout);
            self.refuse_backlog();
            self.check_drained();
        } else {
            self.fail(ConnectionError::LocallyClosed { code });
        }
    }

    // ----- outputs ------------------------------------------------------

    /// The next thing that changed, for the driver to wake waiters.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(id) = self.wake_queue.pop_front() {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.in_wake_queue = false;
            }
            return Some(Event::Stream(id));
        }
        if std::mem::take(&mut self.conn_event) {
            return Some(Event::Connection);
        }
        None
    }

    /// The next deadline at which [`Connection::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- internal helpers shared by recv and send ---------------------

    fn wake(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id)
            && !stream.in_wake_queue
        {
            stream.in_wake_queue = true;
            self.wake_queue.push_back(id);
        }
    }

    fn queue_control(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id)
            && !stream.in_control_queue
        {
            stream.in_control_queue = true;
            self.control_queue.push_back(id);
        }
    }

    /// Puts a stream with something to send into the right queue.
    fn schedule_data(&mut self, id: StreamId) {
        let conn_available = self.conn_send.available();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.queued != Queued::No || !stream.wants_to_send() || self.peer.is_none() {
            return;
        }
        let needs_credit = stream.send_buffered > 0;
        if needs_credit && stream.send_credit.available() == 0 && !stream.needs_open {
            // Waits for a WINDOW_UPDATE, probing meanwhile (SPEC §11).
            let now = self.now;
            self.start_stream_probe(now, id);
            return;
        }
        if needs_credit && conn_available == 0 && !stream.needs_open {
            stream.queued = Queued::ConnBlocked;
            self.conn_blocked_queue.push_back(id);
            // SPEC §11.1: blocked on the connection credit, so it is probed.
            let now = self.now;
            self.start_connection_probe(now);
        } else {
            stream.queued = Queued::Data;
            self.data_queue.push_back(id);
        }
    }

    /// Returns stream-count credit for `n` released peer streams (SPEC
    /// §8.8). SPEC §9.6: after this side's GOAWAY the update is not sent;
    /// only a BLOCKED STREAMS still gets its answer (§11.3).
    fn release_stream_credit(&mut self, n: u64) {
        if n > 0 && self.open_recv.release(n) && !self.goaway_sent {
            self.owed.max_streams = true;
        }
    }

    fn release_conn_credit(&mut self, n: u64) {
        if n > 0 && self.conn_recv.release(n) {
            self.owed.window_update = true;
        }
    }

    fn arm_probe_timer(&mut self, at: Instant) {
        self.timers.set_earliest(Timer::Probe, at);
    }

    /// Stops a stream's probe and half-close watch (the stream ended).
    fn stop_watching(&mut self, id: StreamId) {
        self.probing.remove(&id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.probe = None;
            stream.half_closed_at = None;
        }
    }

    /// Forgets a stream once both directions are done, the application
    /// released it and nothing is owed for it (SPEC §8.8).
    fn maybe_reap(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let done = stream.released
            && stream.send_done()
            && stream.recv_done()
            && !stream.owes_control()
            && stream.queued == Queued::No;
        if !done {
            return;
        }
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        self.closed_streams_blocked += stream.stats.blocked_on_stream;
        self.probing.remove(&id);
        if !self.side.owns(id) {
            // SPEC §9.6: a closed peer stream returns stream-count credit.
            self.release_stream_credit(1);
        }
        self.check_drained();
    }

    /// In a graceful shutdown, ends the connection once no stream remains.
    fn check_drained(&mut self) {
        if self.phase == Phase::Draining && self.streams.is_empty() {
            let err = if self.goaway_sent {
                ConnectionError::LocallyClosed {
                    code: ErrorCode::NO_ERROR,
                }
            } else {
                ConnectionError::ClosedByPeer {
                    code: ErrorCode::NO_ERROR,
                    debug: String::new(),
                }
            };
            self.fail(err);
        }
    }

    fn send_goaway(&mut self, code: ErrorCode, debug: &[u8]) {
        let mut last = if self.next_peer_index == 0 {
            StreamId::CONNECTION
        } else {
            self.side
                .peer()
                .id_at(self.next_peer_index - 1)
                .unwrap_or(StreamId::MAX)
        };
        if let Some((previous_last, previous_code)) = self.goaway_last {
            // SPEC §13.2: a further GOAWAY never carries a higher
            // last_stream_id (streams refused since were not processed).
            last = last.min(previous_last);
            // A further GOAWAY only says something new when an error
            // follows a graceful one; repeated closes send nothing more,
            // which keeps this side far below the cap of 5 (SPEC §13.2).
            if previous_code != ErrorCode::NO_ERROR || code == ErrorCode::NO_ERROR {
                return;
            }
        }
        // SPEC §5.2, §4.2: the frame fits the peer's MAX_FRAME_PAYLOAD, or
        // 1024 bytes before its SETTINGS; receivers keep at most 1024 bytes
        // of debug data anyway (§6.8).
        let max_payload = self.peer.map_or(1024, |p| p.max_frame_payload);
        let max_debug = max_payload.saturating_sub(8).min(1024);
        let debug = &debug[..debug.len().min(max_debug)];
        self.owed.goaway = Some(GoAway {
            last_stream: last,
            code,
            debug: Bytes::copy_from_slice(debug),
        });
        self.goaway_last = Some((last, code));
        self.goaway_sent = true;
        self.conn_event = true;
    }

    /// Streams in the accept backlog when this side stops accepting are
    /// refused: the peer may retry them elsewhere.
    fn refuse_backlog(&mut self) {
        while let Some(id) = self.accept_queue.pop_front() {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.released = true;
            }
            self.reset(id, ErrorCode::REFUSED_STREAM);
        }
    }

    /// Ends the connection with `err`: every stream and waiter sees it.
    /// Buffered received bytes stay readable.
    fn fail(&mut self, err: ConnectionError) {
        if self.phase == Phase::Closed {
            return;
        }
        tracing::debug!(side = ?self.side, error = %err, "connection ended");
        self.phase = Phase::Closed;
        self.error = Some(err);
        for timer in [
            Timer::Handshake,
            Timer::KeepAlive,
            Timer::Idle,
            Timer::Probe,
            Timer::Drain,
            Timer::PingPace,
        ] {
            self.timers.stop(timer);
        }
        self.data_queue.clear();
        self.conn_blocked_queue.clear();
        self.control_queue.clear();
        self.stray_resets.clear();
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.queued = Queued::No;
                stream.in_control_queue = false;
                stream.owe_window_update = false;
                stream.owe_blocked = false;
                stream.owe_reset = None;
                stream.clear_send();
            }
            self.wake(id);
        }
        self.conn_event = true;
    }

    /// Connection error detected locally: GOAWAY with `code`, then end.
    fn protocol_error(&mut self, code: ErrorCode, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(side = ?self.side, %code, %reason, "closing the connection on a protocol error");
        self.send_goaway(code, reason.as_bytes());
        self.fail(ConnectionError::ProtocolViolation { code, reason });
    }

    /// Applies the peer's SETTINGS (SPEC §7).
    fn apply_peer_settings(&mut self, values: &SettingsValues) {
        use crate::frame::{
            CONNECTION_WINDOW, INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD, MAX_STREAMS,
        };
        self.peer = Some(PeerSettings {
            stream_window: u64::from(values.get(INITIAL_STREAM_WINDOW)),
            max_frame_payload: values.get(MAX_FRAME_PAYLOAD) as usize,
        });
        self.conn_send = SendCredit::new(u64::from(values.get(CONNECTION_WINDOW)));
        self.open_send.raise(u64::from(values.get(MAX_STREAMS)));
        self.conn_event = true;
    }
}
