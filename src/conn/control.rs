//! The native-QUIC control plane (SPEC §18.3, §18.5, §18.6) as a sans-IO
//! state machine: the preface exchange on the control streams, PING and
//! its round trip, GOAWAY both ways with the drain, the flood limits, and
//! why the connection ended. In native mode QUIC itself carries the
//! streams and their credit; everything else of the protocol lives here,
//! built from the same parts as the byte-stream [`Connection`]
//! (`Pinger`, `Goaways`, `FloodCounters`), so the two engines agree
//! on those rules by construction.
//!
//! [`Connection`]: super::Connection
//!
//! # Call order
//!
//! As for `Connection`: inputs ([`handle_input`](ControlPlane::handle_input)
//! with the peer's control-stream bytes, [`handle_control_end`],
//! [`handle_timeout`], and the stream events the QUIC glue sees:
//! [`stream_accepted`], [`stream_reset_by_peer`], [`late_stream`],
//! [`set_open_streams`], [`handle_transport_end`]); application commands
//! ([`ping`], [`close`]); then outputs: [`poll_transmit`] (bytes for this
//! side's control stream), [`poll_action`] until `None` (what to do to the
//! QUIC connection), [`take_changed`] (wake waiters) and
//! [`poll_timeout`].
//!
//! [`handle_control_end`]: ControlPlane::handle_control_end
//! [`handle_timeout`]: ControlPlane::handle_timeout
//! [`stream_accepted`]: ControlPlane::stream_accepted
//! [`stream_reset_by_peer`]: ControlPlane::stream_reset_by_peer
//! [`late_stream`]: ControlPlane::late_stream
//! [`set_open_streams`]: ControlPlane::set_open_streams
//! [`handle_transport_end`]: ControlPlane::handle_transport_end
//! [`ping`]: ControlPlane::ping
//! [`close`]: ControlPlane::close
//! [`poll_transmit`]: ControlPlane::poll_transmit
//! [`poll_action`]: ControlPlane::poll_action
//! [`take_changed`]: ControlPlane::take_changed
//! [`poll_timeout`]: ControlPlane::poll_timeout

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::Side;
use super::flood::{Flood, FloodCounters};
use super::goaway::{Goaways, MAX_GOAWAYS_RECEIVED};
use super::ping::Pinger;
use super::requests::{PriorityRequests, Written};
use super::sched::Priority;
use super::timer::{Timer, TimerTable};
use crate::config::Config;
use crate::error::{ConnectionError, OpenError, PriorityRequestError};
use crate::frame::{
    Decoded, EXTENSIONS, ErrorCode, Frame, FrameDecoder, GoAway, PREFACE_LEN, PRIORITY_UPDATES,
    Ping, PrefaceError, Settings, SettingsValues, StreamId, decode_preface, encode_preface,
};
use crate::stats::CodeCounts;

/// What the QUIC glue does to the connection next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Finish this side's control stream (SPEC §18.6: drained).
    FinishControl,
    /// Close the QUIC connection with this application code and reason.
    Close {
        /// CONNECTION_CLOSE's application error code.
        code: ErrorCode,
        /// Its reason phrase.
        reason: Bytes,
    },
    /// The peer's GOAWAY did not cover this side's streams above this id:
    /// fail them with REFUSED_STREAM (SPEC §13.1).
    Refuse {
        /// The peer's last_stream_id.
        above: StreamId,
    },
    /// The peer asks for another send priority on a stream (its
    /// PRIORITY_UPDATE, SPEC §6.10, §18.3): apply it to the stream if this
    /// side holds it, or keep it for a peer stream not arrived yet.
    Prioritize {
        /// The stream.
        stream: StreamId,
        /// What the peer asks for.
        priority: Priority,
    },
}

/// How the QUIC connection ended, as the glue reads its error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEnd {
    /// This side closed it.
    ClosedLocally,
    /// The peer closed it with this application code and reason.
    ClosedByPeer {
        /// The application error code.
        code: ErrorCode,
        /// The reason phrase, lossily decoded.
        reason: String,
    },
    /// QUIC's idle timeout.
    TimedOut,
    /// A stateless reset.
    Reset,
    /// Anything else, already described.
    Failed(ConnectionError),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's preface.
    Handshake,
    Open,
    /// A GOAWAY went either way.
    Draining,
    /// The end is decided; only the QUIC close remains.
    Closed,
}

/// The native-QUIC control plane of one connection, without I/O.
#[derive(Debug)]
pub struct ControlPlane {
    side: Side,
    config: Config,
    phase: Phase,
    decoder: FrameDecoder,
    preface_sent: bool,
    preface_received: bool,
    pinger: Pinger,
    goaways: Goaways,
    goaway_owed: Option<GoAway>,
    flood: FloodCounters,
    timers: TimerTable,
    /// Highest peer stream handed to the application.
    last_accepted: StreamId,
    /// Stream handles the application holds (reported by the glue).
    open_streams: u64,
    control_finished: bool,
    peer_finished: bool,
    finish_owed: bool,
    close_owed: Option<(ErrorCode, Bytes)>,
    close_sent: bool,
    refuse_owed: Option<StreamId>,
    /// The peer's SETTINGS, its first frame after the preface, came
    /// (SPEC §18.3): the handshake is complete.
    settings_received: bool,
    /// The peer's SETTINGS announced PRIORITY_UPDATES.
    peer_priority_updates: bool,
    /// This side's requests for the peer (bounded by the streams the
    /// application holds: a handle's end, or its peer direction's, forgets
    /// its request).
    requests: PriorityRequests,
    /// The peer's requests for the glue (`Action::Prioritize`); the flood
    /// limit bounds how many arrive before the glue takes them.
    prioritize_owed: VecDeque<(StreamId, Priority)>,
    /// Why the connection is ending, once decided.
    cause: Option<ConnectionError>,
    /// Why it ended, once the QUIC connection is closed.
    error: Option<ConnectionError>,
    changed: bool,
    now: Instant,
}

impl ControlPlane {
    /// A control plane whose QUIC handshake completed at `now`; the
    /// preface exchange must complete within the handshake timeout.
    pub fn new(side: Side, config: Config, now: Instant) -> ControlPlane {
        let mut timers = TimerTable::default();
        timers.set(Timer::Handshake, now + config.handshake_timeout);
        ControlPlane {
            side,
            decoder: FrameDecoder::new(config.max_frame_payload),
            flood: FloodCounters::new(config.flood),
            config,
            phase: Phase::Handshake,
            preface_sent: false,
            preface_received: false,
            pinger: Pinger::default(),
            goaways: Goaways::default(),
            goaway_owed: None,
            timers,
            last_accepted: StreamId::CONNECTION,
            open_streams: 0,
            control_finished: false,
            peer_finished: false,
            finish_owed: false,
            close_owed: None,
            close_sent: false,
            refuse_owed: None,
            settings_received: false,
            peer_priority_updates: false,
            requests: PriorityRequests::default(),
            prioritize_owed: VecDeque::new(),
            cause: None,
            error: None,
            changed: false,
            now,
        }
    }

    // ----- getters ---------------------------------------------------------

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer's preface and SETTINGS arrived: streams may flow.
    pub fn is_established(&self) -> bool {
        self.settings_received
    }

    /// Why the connection ended, once the QUIC connection has closed.
    pub fn error(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    /// Why the connection is ending, once decided (before it has).
    pub fn cause(&self) -> Option<&ConnectionError> {
        self.cause.as_ref()
    }

    /// True once the QUIC connection has closed.
    pub fn is_finished(&self) -> bool {
        self.error.is_some()
    }

    /// This side sent (or owes) a GOAWAY.
    pub fn goaway_sent(&self) -> bool {
        self.goaways.sent()
    }

    /// A GOAWAY went either way: no new streams.
    pub fn is_going_away(&self) -> bool {
        self.goaways.going_away()
    }

    /// Whether `open` may start a stream now (SPEC §13.2).
    pub fn check_open(&self) -> Result<(), OpenError> {
        if let Some(err) = &self.error {
            return Err(OpenError::ConnectionLost(err.clone()));
        }
        if self.goaways.going_away() {
            return Err(OpenError::GoingAway);
        }
        match &self.cause {
            Some(cause) if !cause.is_graceful() => Err(OpenError::ConnectionLost(cause.clone())),
            _ => Ok(()),
        }
    }

    /// The latest PING round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.pinger.rtt()
    }

    /// The smoothed PING round trip.
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.pinger.smoothed_rtt()
    }

    /// GOAWAY frames sent, by code.
    pub fn goaways_sent(&self) -> &CodeCounts {
        self.goaways.sent_codes()
    }

    /// GOAWAY frames received, by code.
    pub fn goaways_received(&self) -> &CodeCounts {
        self.goaways.received_codes()
    }

    /// PINGs answered so far.
    pub fn pings_completed(&self) -> u64 {
        self.pinger.completed()
    }

    /// A PING of this side waits for its acknowledgement.
    pub fn ping_in_flight(&self) -> bool {
        self.pinger.in_flight()
    }

    // ----- inputs ----------------------------------------------------------

    /// Bytes from the peer's control stream: its preface, then frames
    /// (SPEC §18.3). Consumes every whole frame; a partial one stays.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        self.now = now;
        if self.phase == Phase::Closed {
            buf.clear();
            return;
        }
        if !self.preface_received {
            match decode_preface(buf) {
                Ok(None) => return,
                Ok(Some(_)) => {
                    buf.advance(PREFACE_LEN);
                    self.preface_received = true;
                }
                Err(err) => {
                    // SPEC §18.3, §3.3.
                    let (code, reason): (ErrorCode, &[u8]) = match err {
                        PrefaceError::UnsupportedVersion { .. } => {
                            (ErrorCode::VERSION_MISMATCH, b"supported: 1")
                        }
                        _ => (ErrorCode::PROTOCOL_ERROR, b"invalid preface"),
                    };
                    buf.clear();
                    self.abort(code, ConnectionError::Preface(err), reason);
                    return;
                }
            }
        }
        while self.phase != Phase::Closed {
            let decoded = match self.decoder.decode_next(buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(err) => {
                    let code = err.code();
                    buf.clear();
                    self.abort(code, ConnectionError::Frame(err), b"invalid control frame");
                    return;
                }
            };
            match decoded {
                Decoded::Frame(Frame::Settings(settings))
                    if !self.settings_received && !settings.ack =>
                {
                    // SPEC §18.3: only EXTENSIONS means something here;
                    // with it the handshake is complete.
                    self.peer_priority_updates =
                        settings.values.get(EXTENSIONS) & PRIORITY_UPDATES != 0;
                    self.settings_received = true;
                    self.timers.stop(Timer::Handshake);
                    if self.phase == Phase::Handshake {
                        self.phase = Phase::Open;
                    }
                    self.changed = true;
                }
                _ if !self.settings_received => {
                    buf.clear();
                    self.violation("the first frame after the preface must be SETTINGS");
                    return;
                }
                Decoded::Ignored(_) => self.count_flood(now, Flood::UnknownFrame),
                Decoded::Frame(Frame::Ping(ping)) if ping.ack => {
                    if self.pinger.on_ack(now, ping.payload) {
                        self.changed = true;
                    } else {
                        // SPEC §16.1: an ACK that answers nothing counts.
                        self.count_flood(now, Flood::Ping);
                    }
                }
                Decoded::Frame(Frame::Ping(ping)) => {
                    self.count_flood(now, Flood::Ping);
                    // SPEC §10.3: the newest PING's ACK replaces an older one.
                    self.pinger.on_ping(ping.payload);
                }
                Decoded::Frame(Frame::GoAway(goaway)) => self.on_goaway(now, goaway),
                Decoded::Frame(Frame::PriorityUpdate(update)) => {
                    self.count_flood(now, Flood::PriorityUpdate);
                    self.prioritize_owed
                        .push_back((update.stream, Priority::from(update)));
                }
                Decoded::Frame(other) => {
                    let reason = format!(
                        "frame type {:#x} on the native control stream",
                        other.header().kind
                    );
                    buf.clear();
                    self.violation(&reason);
                    return;
                }
            }
        }
        buf.clear();
    }

    /// The peer finished (`reset` false) or reset or stopped (`reset` true)
    /// its control stream. SPEC §18.3: allowed only as the end of a drain,
    /// finished, with no partial frame left (`leftover` bytes unread).
    pub fn handle_control_end(&mut self, now: Instant, reset: bool, leftover: usize) {
        self.now = now;
        self.peer_finished = true;
        if reset {
            self.violation("the peer reset or stopped a control stream");
        } else if !self.goaways.going_away() || leftover > 0 {
            self.violation("the peer finished its control stream early");
        }
        self.check_end();
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for timer in self.timers.expired(now) {
            if self.phase == Phase::Closed {
                break;
            }
            match timer {
                Timer::Handshake if !self.settings_received => {
                    self.abort(
                        ErrorCode::SETTINGS_TIMEOUT,
                        ConnectionError::HandshakeTimeout,
                        b"handshake timeout",
                    );
                }
                Timer::PingPace => {
                    if let Some(at) = self.pinger.release(now) {
                        self.timers.set(Timer::PingPace, at);
                    }
                }
                Timer::Drain => {
                    // SPEC §18.6: the drain timeout ends a graceful close.
                    self.close_owed =
                        Some((ErrorCode::NO_ERROR, Bytes::from_static(b"drain timeout")));
                    self.phase = Phase::Closed;
                    self.changed = true;
                }
                _ => {}
            }
        }
        // SPEC §18.3: a PING unanswered for the keepalive timeout.
        if self.phase != Phase::Closed
            && self
                .pinger
                .unanswered_since()
                .is_some_and(|at| at + self.config.keepalive_timeout <= now)
        {
            self.abort(
                ErrorCode::IDLE_TIMEOUT,
                ConnectionError::IdleTimeout,
                b"PING not answered",
            );
        }
    }

    /// The highest peer stream the application accepted.
    pub fn last_accepted(&self) -> StreamId {
        self.last_accepted
    }

    /// The application accepted the peer stream `id` (its last_stream_id
    /// for a GOAWAY).
    pub fn stream_accepted(&mut self, id: StreamId) {
        self.last_accepted = self.last_accepted.max(id);
    }

    /// The peer reset (RESET_STREAM) or stopped (STOP_SENDING) a data
    /// stream: counted toward the RESET flood limit (SPEC §18.3), once per
    /// stream and direction, as the glue reports it.
    pub fn stream_reset_by_peer(&mut self, now: Instant) {
        self.count_flood(now, Flood::Reset);
    }

    /// The peer opened a stream after this side's GOAWAY: returns true if
    /// it is refused (SPEC §13.2), counting it as a frame on a closed
    /// stream (§18.3).
    pub fn late_stream(&mut self, now: Instant) -> bool {
        if !self.goaways.sent() {
            return false;
        }
        self.count_flood(now, Flood::StrayFrame);
        true
    }

    /// How many stream handles the application holds; at 0 a draining side
    /// finishes its control stream (SPEC §18.6).
    pub fn set_open_streams(&mut self, now: Instant, open: u64) {
        self.now = now;
        self.open_streams = open;
        self.check_end();
    }

    /// The QUIC connection closed: the end is final. The cause this side
    /// decided wins unless the connection ended otherwise (an error after
    /// a graceful shutdown began).
    pub fn handle_transport_end(&mut self, end: TransportEnd) {
        if self.error.is_some() {
            return;
        }
        let benign = match &end {
            TransportEnd::ClosedLocally => true,
            TransportEnd::ClosedByPeer { code, .. } => *code == ErrorCode::NO_ERROR,
            _ => false,
        };
        let error = match (&self.cause, end) {
            (Some(cause), _) if benign || !cause.is_graceful() => cause.clone(),
            (_, TransportEnd::ClosedLocally) => ConnectionError::LocallyClosed {
                code: ErrorCode::NO_ERROR,
            },
            (_, TransportEnd::ClosedByPeer { code, reason }) => ConnectionError::ClosedByPeer {
                code,
                debug: reason,
            },
            (_, TransportEnd::TimedOut) => ConnectionError::IdleTimeout,
            (_, TransportEnd::Reset) => ConnectionError::TransportClosed,
            (_, TransportEnd::Failed(err)) => err,
        };
        self.error = Some(error);
        self.phase = Phase::Closed;
        self.timers.close();
        self.changed = true;
    }

    // ----- application commands ---------------------------------------------

    /// Sends a PING unless one is in flight (SPEC §12.1 pacing).
    pub fn ping(&mut self, now: Instant) {
        self.now = now;
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(at) = self.pinger.request(now) {
            self.timers.set(Timer::PingPace, at);
        }
    }

    /// Closes: with NO_ERROR a GOAWAY and the drain (SPEC §18.6), with
    /// another code the QUIC connection closes with it at once.
    pub fn close(&mut self, now: Instant, code: ErrorCode, debug: &[u8]) {
        self.now = now;
        if self.phase == Phase::Closed {
            return;
        }
        if code == ErrorCode::NO_ERROR {
            self.send_goaway(now);
        } else {
            self.abort(code, ConnectionError::LocallyClosed { code }, debug);
        }
    }

    /// Asks the peer to send `id`'s data at `priority` (PRIORITY_UPDATE,
    /// SPEC §6.10, §18.3): coalesced per stream and paced. The caller
    /// checks that the peer still sends on the stream, and forgets the
    /// request ([`forget_request`](Self::forget_request)) once it does
    /// not.
    pub fn request_priority(
        &mut self,
        now: Instant,
        id: StreamId,
        priority: Priority,
    ) -> Result<(), PriorityRequestError> {
        self.now = now;
        if !self.peer_priority_updates {
            return Err(PriorityRequestError::Unsupported);
        }
        if self.phase == Phase::Closed || id.is_connection() {
            // Stream 0 is the connection: no stream to ask about (as in the
            // byte-stream core, which holds no stream 0).
            return Err(PriorityRequestError::Finished);
        }
        // SPEC §18.3: the peer keeps a request for a stream of this side
        // that has not arrived yet, so it may go at once.
        self.requests.request(id, priority, true);
        Ok(())
    }

    /// Stream `id` is gone, or the peer sends nothing more on it: a
    /// request not yet written for it goes.
    pub fn forget_request(&mut self, id: StreamId) {
        self.requests.forget(id);
    }

    fn requests_ready(&self) -> bool {
        self.requests.has_queued() && self.timers.get(Timer::PriorityPace).is_none()
    }

    fn write_requests(&mut self, now: Instant, out: &mut BytesMut) {
        if !self.requests_ready() {
            return;
        }
        let end = self.requests.write(
            now,
            |_| true,
            |update| Frame::PriorityUpdate(update).encode(out),
        );
        if let Written::PacedUntil(at) = end {
            self.timers.set(Timer::PriorityPace, at);
        }
    }

    // ----- outputs ----------------------------------------------------------

    /// Appends what this side's control stream owes: the preface first,
    /// then a PING acknowledgement, a PING, a GOAWAY.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) {
        self.now = now;
        if !self.preface_sent {
            self.preface_sent = true;
            out.extend_from_slice(&encode_preface());
            // SPEC §18.3: EXTENSIONS, with the preface; the other settings
            // are transport parameters.
            let values = SettingsValues {
                extensions: Some(PRIORITY_UPDATES),
                ..SettingsValues::default()
            };
            Frame::Settings(Settings { ack: false, values }).encode(out);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(payload) = self.pinger.take_ack() {
            Frame::Ping(Ping { ack: true, payload }).encode(out);
        }
        if let Some(payload) = self.pinger.take_ping(now) {
            Frame::Ping(Ping {
                ack: false,
                payload,
            })
            .encode(out);
        }
        if let Some(goaway) = self.goaway_owed.take() {
            self.goaways.note_written(goaway.code);
            Frame::GoAway(goaway).encode(out);
        }
        self.write_requests(now, out);
        self.check_end();
    }

    /// True when `poll_transmit` has bytes to add.
    pub fn wants_transmit(&self) -> bool {
        !self.preface_sent
            || (self.phase != Phase::Closed
                && (self.pinger.wants_transmit()
                    || self.goaway_owed.is_some()
                    || self.requests_ready()))
    }

    /// The next thing to do to the QUIC connection. `written`: every byte
    /// `poll_transmit` gave has been written to the control stream; a FIN
    /// waits for that.
    pub fn poll_action(&mut self, written: bool) -> Option<Action> {
        if let Some(above) = self.refuse_owed.take() {
            return Some(Action::Refuse { above });
        }
        if let Some((stream, priority)) = self.prioritize_owed.pop_front() {
            return Some(Action::Prioritize { stream, priority });
        }
        if written && std::mem::take(&mut self.finish_owed) {
            return Some(Action::FinishControl);
        }
        if !self.close_sent
            && let Some((code, reason)) = self.close_owed.take()
        {
            self.close_sent = true;
            return Some(Action::Close { code, reason });
        }
        None
    }

    /// Whether waiters should look again (a PING answered, a GOAWAY, the
    /// handshake, the end); clears the flag.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout)
    /// must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            // The end is decided: only the QUIC close remains.
            return None;
        }
        let ping = self
            .pinger
            .unanswered_since()
            .map(|at| at + self.config.keepalive_timeout);
        [self.timers.next(), ping].into_iter().flatten().min()
    }

    // ----- internals --------------------------------------------------------

    fn on_goaway(&mut self, now: Instant, goaway: GoAway) {
        let Ok(last) = self.goaways.receive(goaway.last_stream, goaway.code) else {
            let reason = format!("more than {MAX_GOAWAYS_RECEIVED} GOAWAY frames");
            self.abort(
                ErrorCode::ENHANCE_YOUR_CALM,
                ConnectionError::ProtocolViolation {
                    code: ErrorCode::ENHANCE_YOUR_CALM,
                    reason: reason.clone(),
                },
                reason.as_bytes(),
            );
            return;
        };
        tracing::debug!(code = %goaway.code, last_stream = %last, "GOAWAY received (native QUIC)");
        // SPEC §13.1: this side's streams above `last` were not processed.
        self.refuse_owed = Some(last);
        let debug =
            String::from_utf8_lossy(&goaway.debug[..goaway.debug.len().min(1024)]).into_owned();
        self.set_cause(ConnectionError::ClosedByPeer {
            code: goaway.code,
            debug,
        });
        self.changed = true;
        if goaway.code != ErrorCode::NO_ERROR {
            // SPEC §18.6: an error GOAWAY closes the connection with its code.
            self.close_owed = Some((goaway.code, Bytes::from_static(b"GOAWAY received")));
            self.phase = Phase::Closed;
            return;
        }
        self.start_drain(now);
    }

    fn send_goaway(&mut self, now: Instant) {
        let Some(last) = self.goaways.send(self.last_accepted, ErrorCode::NO_ERROR) else {
            return;
        };
        tracing::debug!(code = %ErrorCode::NO_ERROR, last_stream = %last, "GOAWAY sent (native QUIC)");
        self.goaway_owed = Some(GoAway {
            last_stream: last,
            code: ErrorCode::NO_ERROR,
            debug: Bytes::new(),
        });
        self.set_cause(ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR,
        });
        self.changed = true;
        self.start_drain(now);
    }

    fn start_drain(&mut self, now: Instant) {
        if self.phase == Phase::Open || self.phase == Phase::Handshake {
            self.phase = Phase::Draining;
            self.timers
                .set(Timer::Drain, now + self.config.drain_timeout);
        }
        self.check_end();
    }

    /// SPEC §18.6: a drained side finishes its control stream once what it
    /// owed is written; once both control streams are finished the
    /// connection closes with code 0.
    fn check_end(&mut self) {
        if self.phase == Phase::Draining
            && !self.control_finished
            && self.open_streams == 0
            && self.goaway_owed.is_none()
            && !self.pinger.wants_transmit()
        {
            self.control_finished = true;
            self.finish_owed = true;
        }
        if self.control_finished
            && self.peer_finished
            && self.close_owed.is_none()
            && !self.close_sent
        {
            self.close_owed = Some((
                ErrorCode::NO_ERROR,
                Bytes::from_static(b"creditmux session ended"),
            ));
            self.phase = Phase::Closed;
        }
    }

    fn count_flood(&mut self, now: Instant, what: Flood) {
        if let Err(what) = self.flood.count(now, what) {
            let reason = format!("flood limit exceeded: {}", what.name());
            self.abort(
                ErrorCode::ENHANCE_YOUR_CALM,
                ConnectionError::ProtocolViolation {
                    code: ErrorCode::ENHANCE_YOUR_CALM,
                    reason: reason.clone(),
                },
                reason.as_bytes(),
            );
        }
    }

    fn violation(&mut self, reason: &str) {
        self.abort(
            ErrorCode::PROTOCOL_ERROR,
            ConnectionError::ProtocolViolation {
                code: ErrorCode::PROTOCOL_ERROR,
                reason: reason.to_string(),
            },
            reason.as_bytes(),
        );
    }

    /// Ends the connection with `code` for `cause`: the QUIC connection
    /// closes with the code and `reason` (SPEC §18.6: no GOAWAY, QUIC
    /// carries the code).
    fn abort(&mut self, code: ErrorCode, cause: ConnectionError, reason: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.set_cause(cause);
        let reason = &reason[..reason.len().min(1024)];
        self.close_owed = Some((code, Bytes::copy_from_slice(reason)));
        self.phase = Phase::Closed;
        self.changed = true;
    }

    /// Records why the connection ends unless an error already did (an
    /// error replaces a graceful shutdown in progress).
    fn set_cause(&mut self, cause: ConnectionError) {
        match &self.cause {
            Some(existing) if !existing.is_graceful() || cause.is_graceful() => {}
            _ => self.cause = Some(cause),
        }
    }
}
