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
//!    [`ping`](Connection::ping), [`close`](Connection::close). Every
//!    command that can change state takes the current time, like the
//!    inputs: a write that finds no credit starts its probe interval then,
//!    however long ago the last input was. (`accept` only takes a stream
//!    off the accept queue, which nothing times.)
//! 3. **Outputs**, after any of the above:
//!    [`poll_transmit`](Connection::poll_transmit) until it adds nothing,
//!    [`poll_event`](Connection::poll_event) until `None` (which streams and
//!    which connection-level waiters to wake), and
//!    [`poll_timeout`](Connection::poll_timeout) for the next deadline.
//!
//! When [`is_finished`](Connection::is_finished) is true and the transmit
//! buffer has been written, the driver shuts the transport down.

mod app;
pub mod control;
pub(crate) mod flood;
mod frames;
pub(crate) mod goaway;
mod input;
pub mod invariants;
pub(crate) mod ping;
mod probe;
mod reprioritize;
mod requests;
mod sched;
mod send;
mod shutdown;
mod stream;
mod timer;
mod transmit;
mod tuning;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::error::ConnectionError;
use crate::flow::{RecvCredit, SendCredit};
use crate::frame::{FrameDecoder, GoAway, Reset, SettingsValues, StreamId, StreamMap};
use crate::stats::CodeCounts;

use flood::{FloodCounters, SendBudget};
use goaway::Goaways;
use ping::Pinger;
use sched::DataQueue;
pub use sched::Priority;
pub use stream::{Half, StreamStats};
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

    pub(crate) fn owns(self, id: StreamId) -> bool {
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

/// Outcome of [`Connection::flush_state`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything the stream's application wrote went out of the core, its
    /// last frame ending at this transport offset (bytes emitted since the
    /// connection began, preface included): flushed once the transport has
    /// taken, and flushed, that many.
    Emitted(u64),
    /// Some of it still waits for credit or its turn; wait for
    /// [`Event::Stream`].
    Waiting,
}

/// Connection-level counters, exposed through [`Connection::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Times a receive window (a stream's or the connection's) was grown
    /// by the tuning (SPEC §9.8).
    pub windows_grown: u64,
    /// Times a receive window was shrunk back by the tuning.
    pub windows_shrunk: u64,
    /// Latest PING round-trip time.
    pub rtt: Option<Duration>,
    /// Smoothed PING round-trip time (RFC 6298 weights).
    pub smoothed_rtt: Option<Duration>,
    /// Payload bytes written by the application and not yet sent, over
    /// all streams.
    pub queued_data_bytes: u64,
    /// RESET frames sent, by code.
    pub resets_sent: CodeCounts,
    /// RESET frames received, by code.
    pub resets_received: CodeCounts,
    /// PRIORITY_UPDATE frames sent (SPEC §6.10).
    pub priority_requests_sent: u64,
    /// PRIORITY_UPDATE frames received that changed a stream this side
    /// still sends on.
    pub priority_requests_received: u64,
    /// GOAWAY frames sent, by code.
    pub goaways_sent: CodeCounts,
    /// GOAWAY frames received, by code.
    pub goaways_received: CodeCounts,
    /// Streams that closed with both FINs exchanged: every byte either
    /// side wrote was sent (SPEC §8.6).
    pub streams_completed: u64,
    /// Streams this side reset (the application, a timeout, a peer's DATA
    /// after FIN, or the drain deadline).
    pub streams_reset_local: u64,
    /// Streams the peer reset, or refused by its GOAWAY (SPEC §13.1).
    pub streams_reset_remote: u64,
    /// Of `streams_reset_local`: streams still open when a graceful close
    /// reached its drain deadline, reset with CANCEL (SPEC §13.2).
    pub streams_cancelled_at_drain: u64,
}

/// Connection-level control frames owed to the peer (coalesced).
#[derive(Debug, Default)]
struct Owed {
    settings_ack: bool,
    window_update: bool,
    max_streams: bool,
    blocked_connection: bool,
    blocked_streams: bool,
    goaway: Option<GoAway>,
}

/// How a stream became closed, for the counters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Closed {
    Completed,
    ResetLocal,
    ResetRemote,
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
    /// The peer honours RESET SEND and RECEIVE (SPEC §8.7.1).
    directional_reset: bool,
    /// The peer takes PRIORITY_UPDATE frames (SPEC §6.10).
    priority_updates: bool,
}

/// A creditmux connection endpoint, without I/O.
#[derive(Debug)]
pub struct Connection {
    side: Side,
    config: Config,
    phase: Phase,
    error: Option<ConnectionError>,
    /// The peer's preface and SETTINGS, and ours.
    handshake: Handshake,
    /// What is left of the input between calls.
    input: InputState,
    /// Boxed: a state is a few hundred bytes, and a table of boxes wastes
    /// only pointers on its free slots (less idle memory per stream).
    streams: StreamMap<Box<StreamState>>,
    next_local_index: u64,
    next_peer_index: u64,
    conn_send: SendCredit,
    conn_recv: RecvCredit,
    open_send: SendCredit,
    open_recv: RecvCredit,
    /// The scheduler's queues (streams with something to do).
    queues: Queues,
    conn_event: bool,
    owed: Owed,
    pinger: Pinger,
    /// Zero-window probes and half-close deadlines (SPEC §11, §12.4).
    probes: Probes,
    goaways: Goaways,
    timers: TimerTable,
    flood: FloodCounters,
    stats: ConnectionStats,
    closed_streams_blocked: Duration,
    /// Receive-window tuning (SPEC §9.8).
    tuning: tuning::Tuning,
    /// This side's PRIORITY_UPDATE requests (SPEC §6.10).
    priority_requests: requests::PriorityRequests,
    /// When the connection was created: stream timestamps are kept as
    /// milliseconds since.
    epoch: Instant,
    /// The latest time passed in, by an input or a command; helpers that
    /// take no time of their own (scheduling, probes) use it.
    now: Instant,
}

/// The handshake (SPEC §6): prefaces and SETTINGS both ways.
#[derive(Debug, Default)]
struct Handshake {
    preface_sent: bool,
    preface_received: bool,
    /// The peer's settings, once its SETTINGS arrived.
    peer: Option<PeerSettings>,
    /// The peer acknowledged our SETTINGS.
    settings_acked: bool,
}

/// Input state kept between `handle_input` calls.
#[derive(Debug)]
struct InputState {
    decoder: FrameDecoder,
    /// Bytes of a partial frame `handle_input` left in the caller's buffer,
    /// already counted in `transport_bytes_received`.
    carried: usize,
    /// When the first byte of the frame still incomplete arrived (SPEC
    /// §12.2: a frame must complete within the frame timeout).
    frame_started: Option<Instant>,
}

/// The scheduler's queues of stream ids. A stream is in each at most once
/// (its `queued` / `in_*_queue` flags), so each is bounded by the streams.
#[derive(Debug, Default)]
struct Queues {
    /// Streams with DATA and credit to send it, in turn order.
    data: DataQueue,
    /// Streams with DATA and stream credit, waiting for connection credit.
    conn_blocked: VecDeque<StreamId>,
    /// Streams owing a control frame (WINDOW_UPDATE, BLOCKED, RESET).
    control: VecDeque<StreamId>,
    /// Streams whose application should be woken.
    wake: VecDeque<StreamId>,
    /// Streams the peer opened, not yet accepted.
    accept: VecDeque<StreamId>,
    /// RESETs for streams that no longer exist (bounded by
    /// `max_stray_control`).
    stray_resets: VecDeque<Reset>,
}

/// The zero-window probes of the three scopes (SPEC §11) and the
/// half-close watch (§12.4).
#[derive(Debug, Default)]
struct Probes {
    /// The connection credit's probe, while a stream waits on it.
    conn: Option<Probe>,
    /// The stream-count credit's probe, while an `open` waits on it.
    open: Option<Probe>,
    /// Streams with a running stream-credit probe or half-close deadline.
    watched: StreamMap<()>,
    /// The sender's BLOCKED budget (50 in any second, §11.2).
    budget: SendBudget,
    /// A BLOCKED for the connection credit / stream-count credit went out
    /// and no WINDOW_UPDATE(0) / MAX_STREAMS came since: the next one may
    /// be its answer, which is not a flood (SPEC §16.1).
    conn_unanswered: bool,
    open_unanswered: bool,
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
            handshake: Handshake::default(),
            input: InputState {
                decoder: FrameDecoder::new(config.max_frame_payload),
                carried: 0,
                frame_started: None,
            },
            streams: StreamMap::default(),
            next_local_index: 0,
            next_peer_index: 0,
            conn_send: SendCredit::new(0),
            conn_recv: RecvCredit::new(u64::from(config.connection_window)),
            open_send: SendCredit::new(0),
            open_recv: RecvCredit::new(u64::from(config.max_incoming_streams)),
            queues: Queues::default(),
            conn_event: false,
            owed: Owed::default(),
            pinger: Pinger::default(),
            probes: Probes::default(),
            goaways: Goaways::default(),
            timers,
            flood: FloodCounters::new(config.flood),
            stats: ConnectionStats::default(),
            closed_streams_blocked: Duration::ZERO,
            tuning: tuning::Tuning::default(),
            priority_requests: requests::PriorityRequests::default(),
            epoch: now,
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
            || (self.handshake.peer.is_some() && self.handshake.settings_acked)
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
        self.goaways.going_away()
    }

    /// Connection-level counters.
    pub fn stats(&self) -> ConnectionStats {
        let mut stats = self.stats.clone();
        stats.rtt = self.pinger.rtt();
        stats.smoothed_rtt = self.pinger.smoothed_rtt();
        stats.goaways_sent = self.goaways.sent_codes().clone();
        stats.goaways_received = self.goaways.received_codes().clone();
        stats.queued_data_bytes = self.streams.values().map(|s| s.send_buffered as u64).sum();
        stats.send_window = self.conn_send.available();
        stats.recv_window = self.conn_recv.limit() - self.conn_recv.received();
        stats.recv_buffered = self.conn_recv.buffered();
        stats.open_streams = self.streams.len() as u64;
        stats.accept_backlog = self.queues.accept.len() as u64;
        stats.data_queue_depth = (self.queues.data.len() + self.queues.conn_blocked.len()) as u64;
        stats.control_queue_depth =
            (self.queues.control.len() + self.queues.stray_resets.len()) as u64;
        stats.blocked_on_streams = self.closed_streams_blocked
            + self
                .streams
                .values()
                .map(|s| Duration::from_nanos(s.stats.blocked_on_stream_ns))
                .sum::<Duration>();
        stats
    }

    /// Counters of one stream, while the connection knows it.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let s = self.streams.get(&id)?;
        Some(StreamStats {
            // Every payload byte takes (and every one received gives) one
            // byte of stream credit, so the credit counts are the totals.
            bytes_sent: s.send_credit.sent(),
            bytes_received: s.recv_credit.received(),
            send_buffered: s.send_buffered as u64,
            recv_buffered: s.recv_credit.buffered(),
            send_window: s.send_credit.available(),
            recv_window: s.recv_credit.limit() - s.recv_credit.received(),
            blocked_on_stream: Duration::from_nanos(s.stats.blocked_on_stream_ns),
            zero_window_events: s.stats.zero_window_events.into(),
            probes_sent: s.stats.probes_sent.into(),
        })
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
            return !self.handshake.preface_sent || owed.settings_ack || owed.goaway.is_some();
        }
        !self.handshake.preface_sent
            || owed.settings_ack
            || owed.window_update
            || owed.max_streams
            || self.pinger.wants_transmit()
            || owed.blocked_connection
            || owed.blocked_streams
            || owed.goaway.is_some()
            || !self.queues.stray_resets.is_empty()
            || !self.queues.control.is_empty()
            || self.priority_requests_ready()
            || (!self.queues.data.is_empty() && self.phase != Phase::Closed)
    }

    /// The latest PING round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.pinger.rtt()
    }

    /// True while a PING of ours waits for its acknowledgement.
    pub fn ping_in_flight(&self) -> bool {
        self.pinger.in_flight()
    }

    /// Number of PINGs acknowledged so far; lets callers tell their ping
    /// was answered.
    pub fn pings_completed(&self) -> u64 {
        self.pinger.completed()
    }

    // ----- outputs ------------------------------------------------------

    /// The next thing that changed, for the driver to wake waiters.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(id) = self.queues.wake.pop_front() {
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
            self.queues.wake.push_back(id);
        }
    }

    fn queue_control(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id)
            && !stream.in_control_queue
        {
            stream.in_control_queue = true;
            self.queues.control.push_back(id);
        }
    }

    /// Puts a stream with something to send into the right queue.
    fn schedule_data(&mut self, id: StreamId) {
        let now = self.now;
        let conn_available = self.conn_send.available();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.wants_to_send() || self.handshake.peer.is_none() {
            return;
        }
        let needs_credit = stream.send_buffered > 0;
        let stream_credit = stream.send_credit.available() > 0;
        // SPEC §11.1: data with stream credit and no connection credit
        // waits on the connection from now, wherever the stream is queued.
        // An unannounced stream (or one queued before the credit ran out)
        // sits in the DATA queue for its turn, and only then moves to the
        // connection-credit queue; the probe counts from now all the same.
        let waits_on_conn = needs_credit && stream_credit && conn_available == 0;
        match stream.queued {
            Queued::ConnBlocked => return,
            Queued::Data => {
                if waits_on_conn {
                    self.start_connection_probe(now);
                }
                return;
            }
            Queued::No => {}
        }
        if needs_credit && !stream_credit && !stream.needs_open {
            // Waits for a WINDOW_UPDATE, probing meanwhile (SPEC §11).
            self.start_stream_probe(now, id);
            return;
        }
        if waits_on_conn && !stream.needs_open {
            stream.queued = Queued::ConnBlocked;
            self.queues.conn_blocked.push_back(id);
        } else {
            stream.queued = Queued::Data;
            if stream.needs_open {
                self.queues.data.push_opening(id);
            } else {
                self.queues.data.push(id, stream.priority);
            }
        }
        if waits_on_conn {
            self.start_connection_probe(now);
        }
    }

    /// Returns stream-count credit for `n` released peer streams (SPEC
    /// §8.8). SPEC §9.6: after this side's GOAWAY the update is not sent;
    /// only a BLOCKED STREAMS still gets its answer (§11.3).
    fn release_stream_credit(&mut self, n: u64) {
        if n > 0 && self.open_recv.release(n) && !self.goaways.sent() {
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
        self.probes.watched.remove(&id);
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
        self.priority_requests.forget(id);
        self.closed_streams_blocked += Duration::from_nanos(stream.stats.blocked_on_stream_ns);
        self.probes.watched.remove(&id);
        if !self.side.owns(id) {
            // SPEC §9.6: a closed peer stream returns stream-count credit.
            self.release_stream_credit(1);
        }
        self.check_drained();
    }

    /// Counts a stream by how it ended (SPEC §8.3): both FINs, or the first
    /// reset of either of its directions (later resets of the other
    /// direction are not counted again, so both sides count each stream
    /// once).
    fn count_closed(&mut self, how: Closed) {
        match how {
            Closed::Completed => self.stats.streams_completed += 1,
            Closed::ResetLocal => self.stats.streams_reset_local += 1,
            Closed::ResetRemote => self.stats.streams_reset_remote += 1,
        }
    }

    /// Applies the peer's SETTINGS (SPEC §7).
    fn apply_peer_settings(&mut self, values: &SettingsValues) {
        use crate::frame::{
            CONNECTION_WINDOW, DIRECTIONAL_RESET, EXTENSIONS, INITIAL_STREAM_WINDOW,
            MAX_FRAME_PAYLOAD, MAX_STREAMS, PRIORITY_UPDATES,
        };
        self.handshake.peer = Some(PeerSettings {
            stream_window: u64::from(values.get(INITIAL_STREAM_WINDOW)),
            max_frame_payload: values.get(MAX_FRAME_PAYLOAD) as usize,
            directional_reset: values.get(EXTENSIONS) & DIRECTIONAL_RESET != 0,
            priority_updates: values.get(EXTENSIONS) & PRIORITY_UPDATES != 0,
        });
        self.conn_send = SendCredit::new(u64::from(values.get(CONNECTION_WINDOW)));
        self.open_send.raise(u64::from(values.get(MAX_STREAMS)));
        self.conn_event = true;
    }
}
