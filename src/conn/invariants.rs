//! The invariants of the credit protocol, checked on a real [`Connection`]:
//! the code side of the model in `proto/model/` (its README maps each model
//! property to the check here). The property tests (`tests/support/sim`)
//! and the `session` fuzz target run one [`InvariantChecker`] per
//! connection after every step; a user fuzzing an integration can too.
//!
//! The checks read only what the connection exposes ([`Connection::stats`],
//! [`Connection::stream_stats`], [`Connection::poll_timeout`]) plus its
//! configuration, so they hold an implementation to the SPEC, not to its
//! own bookkeeping.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Connection, ConnectionStats, StreamStats};
use crate::frame::StreamId;

/// Slack on the probe deadline: the sender's BLOCKED budget (50 in any
/// second, SPEC §11.2) may defer a due probe by up to a second.
const PROBE_BUDGET_SLACK: Duration = Duration::from_secs(1);

/// A scope seen blocked (SPEC §11.1), and since when.
#[derive(Copy, Clone, Debug)]
struct Stall {
    since: Instant,
    /// Bytes sent in the scope then: a change means it moved, and a new
    /// blocked period starts (§11.2).
    bytes_sent: u64,
    /// The scope's probes counted then.
    probes: u64,
}

impl Stall {
    /// A blocked period starting at `now`.
    fn start(now: Instant, bytes_sent: u64, probes: u64) -> Stall {
        Stall {
            since: now,
            bytes_sent,
            probes,
        }
    }

    /// Continues the blocked period of a scope that has sent `bytes_sent`
    /// and probed `probes` times (a new one starts if bytes moved); `Err`
    /// once it has been blocked for the probe interval (plus the BLOCKED
    /// budget's slack) with no probe.
    fn observe(
        &mut self,
        now: Instant,
        bytes_sent: u64,
        probes: u64,
        interval: Duration,
    ) -> Result<(), Duration> {
        if self.bytes_sent != bytes_sent {
            *self = Stall::start(now, bytes_sent, probes);
        }
        if now >= self.since + interval + PROBE_BUDGET_SLACK && probes <= self.probes {
            return Err(now - self.since);
        }
        Ok(())
    }
}

/// Checks one connection's invariants after every step; remembers what it
/// needs across steps (when a scope became blocked).
#[derive(Debug, Default)]
pub struct InvariantChecker {
    /// Streams blocked on their own credit.
    stalls: HashMap<StreamId, Stall>,
    /// The connection blocked on its credit: one scope, however many
    /// streams wait on it (a stream that joins the wait does not restart
    /// the probe's backoff, §11.2).
    conn_stall: Option<Stall>,
}

impl InvariantChecker {
    /// A checker for a new connection.
    pub fn new() -> InvariantChecker {
        InvariantChecker::default()
    }

    /// Checks `conn` at `now`; `ids` are the streams the caller may know
    /// (opened, accepted, or named by a frame: the connection's own live
    /// streams must all be among them for the sums to be exact, and
    /// `exact` says whether they are). `Err` names the first violated
    /// property (the model's letter and the SPEC section).
    pub fn check(
        &mut self,
        conn: &Connection,
        now: Instant,
        ids: impl IntoIterator<Item = StreamId>,
        exact: bool,
    ) -> Result<(), String> {
        let config = conn.config();
        let stats = conn.stats();
        let stream_window = u64::from(config.max_stream_window());
        let mut live = Vec::new();
        let mut recv_buffered = 0u64;
        let mut peer_streams = 0u64;
        // Probes of the connection and stream-count credit: all probes but
        // the live streams' own.
        let mut conn_probes = stats.probes_sent;
        for id in ids {
            let Some(s) = conn.stream_stats(id) else {
                continue;
            };
            // (b) SPEC §9.4: unread data within the stream window.
            if s.recv_buffered > stream_window {
                return Err(format!(
                    "(b) §9.4: stream {id} buffers {} bytes, window {stream_window}",
                    s.recv_buffered
                ));
            }
            if s.send_buffered > u64::from(config.send_buffer()) {
                return Err(format!(
                    "(b) §16.3: stream {id} holds {} bytes to send, send buffer {}",
                    s.send_buffered,
                    config.send_buffer()
                ));
            }
            recv_buffered += s.recv_buffered;
            conn_probes = conn_probes.saturating_sub(s.probes_sent);
            if id.is_client_initiated() != (conn.side() == super::Side::Client) {
                peer_streams += 1;
            }
            live.push((id, s));
        }
        // (b) SPEC §9.4: unread data within the connection window.
        let conn_window = u64::from(config.max_connection_window());
        if stats.recv_buffered > conn_window {
            return Err(format!(
                "(b) §9.4: the connection buffers {} bytes, window {conn_window}",
                stats.recv_buffered
            ));
        }
        // (c) SPEC §9.7: unreleased connection credit is exactly the unread
        // data of live streams (more if streams the caller cannot see hold
        // some).
        if stats.recv_buffered != recv_buffered && (exact || stats.recv_buffered < recv_buffered) {
            return Err(format!(
                "(c) §9.7: connection credit held ({}) differs from its streams' unread bytes ({recv_buffered})",
                stats.recv_buffered
            ));
        }
        // (b) SPEC §9.6: the peer's unreleased streams within MAX_STREAMS.
        if peer_streams > u64::from(config.max_incoming_streams()) {
            return Err(format!(
                "(b) §9.6: {peer_streams} peer streams alive, limit {}",
                config.max_incoming_streams()
            ));
        }
        // (a) SPEC §10.3: pending control state is O(live streams) plus
        // the stray reserve, whatever the peer does.
        let control_bound = stats.open_streams + u64::from(config.max_stray_control());
        if stats.control_queue_depth > control_bound {
            return Err(format!(
                "(a) §10.3: {} control frames owed with {} streams open",
                stats.control_queue_depth, stats.open_streams
            ));
        }
        // (d) SPEC §11.1: data waiting on zero credit for a probe interval
        // has had a BLOCKED scheduled for that credit.
        self.check_stalls(conn, now, &live, &stats, conn_probes)
    }

    fn check_stalls(
        &mut self,
        conn: &Connection,
        now: Instant,
        live: &[(StreamId, StreamStats)],
        stats: &ConnectionStats,
        conn_probes: u64,
    ) -> Result<(), String> {
        if conn.error().is_some() {
            self.stalls.clear();
            self.conn_stall = None;
            return Ok(());
        }
        let interval = conn.config().probe_interval();
        // Stream scope: data queued and no stream credit.
        let mut seen = HashSet::new();
        for &(id, s) in live {
            if s.send_buffered == 0 || s.send_window > 0 {
                continue;
            }
            seen.insert(id);
            let stall = self
                .stalls
                .entry(id)
                .or_insert_with(|| Stall::start(now, s.bytes_sent, s.probes_sent));
            if let Err(waited) = stall.observe(now, s.bytes_sent, s.probes_sent, interval) {
                return Err(format!(
                    "(d) §11.1: data on {id} waiting on zero stream credit for {waited:?}, and no BLOCKED"
                ));
            }
        }
        self.stalls.retain(|id, _| seen.contains(id));
        // Connection scope: data queued on a stream that has stream credit,
        // and no connection credit.
        let waiting = live
            .iter()
            .find(|(_, s)| s.send_buffered > 0 && s.send_window > 0)
            .map(|&(id, _)| id);
        match waiting {
            Some(id) if stats.send_window == 0 => {
                let sent = stats.data_bytes_sent;
                let stall = self
                    .conn_stall
                    .get_or_insert_with(|| Stall::start(now, sent, conn_probes));
                if let Err(waited) = stall.observe(now, sent, conn_probes, interval) {
                    return Err(format!(
                        "(d) §11.1: data on {id} waiting on zero connection credit for {waited:?}, and no BLOCKED"
                    ));
                }
            }
            _ => self.conn_stall = None,
        }
        Ok(())
    }
}
