//! Stateful fuzzing of the sans-IO connection (STYLE.md pattern 6, after
//! quinn's `fuzz/fuzz_targets/streams.rs`).
//!
//! One server-side [`Connection`] is the system under test (SUT); the fuzzer
//! plays its client peer and its application. The input is a
//! `#[derive(Arbitrary)]` list of operations:
//!
//! - peer frames, built from a mirror enum so most are well formed (DATA on
//!   plausible stream ids with small payloads, WINDOW_UPDATE, MAX_STREAMS,
//!   BLOCKED, RESET, PING, GOAWAY, SETTINGS, unknown types), encoded and fed
//!   through `handle_input` split at arbitrary points; now and then raw
//!   garbage bytes, or end of input;
//! - application calls on the streams the application holds (accepted or
//!   opened): accept, open, write, write_bytes, finish, read, reset, release,
//!   stop_reading, ping, close; a direct write as the driver does it
//!   (through the core's `cfg(fuzzing)` door: reserve, write whole
//!   frames, give back what the transport did not take); an odd-sized read that finds nothing
//!   buffered takes the rest of a DATA payload in progress straight from the
//!   undelivered input (`direct_payload`, `commit_direct_payload`);
//! - virtual time advancing, then `handle_timeout`;
//! - `poll_transmit` with an arbitrary byte budget, then `poll_event` drained.
//!
//! The input types are in `session/input.rs`, the output ledger and the
//! invariants in `session/checks.rs`.
//!
//! Every input starts with a valid preface and SETTINGS from the peer (and,
//! unless the input withholds it, the SETTINGS acknowledgement), so most
//! inputs get past the handshake. The SUT's configuration is small (4 KiB
//! stream window, 16 KiB connection window, 1 KiB frames, 8 streams, 4 KiB
//! send buffers; flood limits stay at their defaults, which are also their
//! minimums), so its limits are hit often.
//!
//! Checked after every operation (a violation panics, so it is a crash);
//! the protocol's invariants (windows, conservation, the peer's stream
//! limit, the control reserve, probes) by `conn::invariants`, the checker
//! the property tests use too, and here also:
//!
//! - nothing panics, and `poll_event` / a `poll_transmit` loop terminate;
//! - per stream, `recv_buffered <= stream window` and `send_buffered <= send
//!   buffer`; per connection, `recv_buffered <= connection window` and equal
//!   to the sum over its streams (credit conservation, SPEC §9.7);
//! - `open_streams` is the number of streams the SUT reports, at most
//!   `max_incoming_streams` of them the peer's (SPEC §9.6), and the accept
//!   backlog stays within its bound;
//! - `control_queue_depth <= open_streams + max_stray_control + 8` (§10.3);
//! - buffered bytes in both directions stay within
//!   `Config::max_buffered_bytes` for the streams the SUT opened (§16.3);
//! - everything `poll_transmit` produces is a valid preface followed by
//!   valid, whole frames within the peer's MAX_FRAME_PAYLOAD (§4.2, §5.2);
//!   DATA never goes beyond the credit the peer granted (its SETTINGS plus
//!   the highest WINDOW_UPDATE per stream and for the connection that the
//!   SUT had received, §9.2), never follows a FIN or RESET of either side,
//!   opens SUT streams in increasing order, within MAX_STREAMS and not
//!   after the SUT's GOAWAY (§8.2, §13.2), and carries exactly the bytes the
//!   application wrote; per §8.4, no WINDOW_UPDATE on a closed stream or
//!   after the peer's FIN, no BLOCKED on a closed or half-closed(local)
//!   stream, at most one RESET per stream (§8.7); BLOCKED never names a
//!   limit above the granted one (§11.1); a PING acknowledgement echoes a
//!   PING the peer sent; nothing follows a GOAWAY with an error (§13.3);
//! - bytes `read` returns are the bytes the peer sent, in order;
//! - `wants_transmit() == false` means `poll_transmit` adds nothing, and a
//!   `poll_transmit` with a non-zero budget that adds nothing leaves
//!   `wants_transmit() == false` (the driver relies on both, to sleep and
//!   to shut the transport down);
//! - data waiting on zero stream or connection credit for a probe interval
//!   (plus 1 s of BLOCKED budget) has had a BLOCKED scheduled for that
//!   credit (SPEC §11.1);
//! - after `handle_timeout(now)`, no timer is still due (no busy loop);
//!   a finished connection arms no timer;
//! - once `error()` is `Some` it never changes, further input is ignored
//!   (no frame counted), and no DATA goes out; the SUT fails with
//!   FLOW_CONTROL_ERROR / STREAM_LIMIT_ERROR only if the peer did exceed the
//!   credit / stream limit the SUT announced, and with a frame or preface
//!   error only if the peer sent garbage;
//! - `stats().transport_bytes_received` is the number of bytes delivered
//!   while the connection ran (each byte counted once).
//!
//! Raw garbage may decode as frames the test does not know of, and shift
//! the framing of the peer's later ones: after it, the checks that rely on
//! what the peer said (granted credit, the bytes it sent, its FINs, RESETs
//! and PINGs, which streams it opened, exact stream counts) are off; those
//! about what the SUT itself did, and every bound, stay.
//!
//! Frames the peer sends on SUT stream ids the SUT has allocated but not
//! yet announced are tolerated by the SUT (SPEC §8.5 lets it count them as
//! opened); the §8.4 checks above then only use what the peer could know.

#![no_main]

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use creditmux::config::Config;
use creditmux::conn::invariants::InvariantChecker;
use creditmux::conn::{Connection, Event, Priority, ReadOutcome, Side, TransmitBuf};
use creditmux::error::{ConnectionError, PriorityRequestError};
use creditmux::frame::{
    Blocked, BlockedOn, CONNECTION_WINDOW, Data, Decoded, ErrorCode, Frame, FrameDecoder, GoAway,
    HEADER_LEN, Header, INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD, MAX_STREAMS, MaxStreams,
    PREFACE_LEN, Ping, PriorityUpdate, Reset, ResetScope, Settings, SettingsValues, StreamId,
    WindowUpdate, encode_preface,
};
use libfuzzer_sys::fuzz_target;

#[path = "session/checks.rs"]
mod checks;
#[path = "session/input.rs"]
mod input;

use input::{BlockedSel, Input, Op, PeerFrame, PeerSettings, StreamSel};

// ----- the SUT's configuration ------------------------------------------------

const STREAM_WINDOW: u32 = 4 * 1024;
const CONN_WINDOW: u32 = 16 * 1024;
const MAX_FRAME: u32 = 1024;
const MAX_INCOMING: u32 = 8;
const BACKLOG: u32 = 8;
const SEND_BUFFER: u32 = 4 * 1024;
const MAX_STRAY: u32 = 16;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::builder()
            .stream_window(STREAM_WINDOW)
            .connection_window(CONN_WINDOW)
            // Window tuning (SPEC §9.8.1) within small bounds, so the
            // invariants' window bounds stay tight.
            .max_stream_window(4 * STREAM_WINDOW)
            .max_connection_window(4 * CONN_WINDOW)
            .max_frame_payload(MAX_FRAME)
            .max_incoming_streams(MAX_INCOMING)
            .accept_backlog(BACKLOG)
            .send_buffer(SEND_BUFFER)
            .max_stray_control(MAX_STRAY)
            .build()
            .expect("the fuzz configuration is valid")
    })
}

/// Virtual time starts here in every run; only offsets from it matter.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

// ----- helpers --------------------------------------------------------------------

/// The byte at offset `off` of what `from_peer`'s side sends on `id`; a byte
/// delivered at the wrong offset or on the wrong stream does not match.
fn pattern(id: StreamId, from_peer: bool, off: u64) -> u8 {
    let x = off ^ (u64::from(id.get()) << 40) ^ (u64::from(from_peer) << 63);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn pattern_bytes(id: StreamId, from_peer: bool, off: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| pattern(id, from_peer, off + i))
        .collect()
}

fn client_id(index: u64) -> Option<StreamId> {
    u32::try_from(1 + 2 * index).ok().and_then(StreamId::new)
}

fn server_id(index: u64) -> Option<StreamId> {
    u32::try_from(2 + 2 * index).ok().and_then(StreamId::new)
}

fn is_server_id(id: StreamId) -> bool {
    !id.is_client_initiated()
}

/// A frame's effect on what the SUT may send, applied once the SUT has
/// received the whole frame.
#[derive(Debug)]
enum Grant {
    Connection(u64),
    Stream(StreamId, u64),
    Streams(u64),
    /// The peer finished its direction of the stream.
    Fin(StreamId),
    /// The peer reset the stream, both directions or one.
    Reset(StreamId, ResetScope),
}

/// A send priority that varies with the stream id (without taking input
/// bytes, so earlier inputs decode as before): every urgency, both
/// flags, so the scheduler's levels and id-ordered sets are exercised.
fn priority_of(id: StreamId) -> Priority {
    let n = id.get();
    Priority::new((n.wrapping_mul(3) % 8) as u8, n % 3 != 0)
}

/// A stream the application holds.
#[derive(Debug)]
struct Handle {
    id: StreamId,
    /// The read half is still held (no `stop_reading`).
    reading: bool,
}

/// The test's picture of both directions, built from what was put on the
/// wire (the SUT's output, decoded) and what the peer sent.
#[derive(Debug, Default)]
struct Ledger {
    // SUT -> peer: what the peer granted, as far as the SUT has received it.
    peer_max_frame: u32,
    peer_stream_window: u64,
    /// The peer's SETTINGS announced DIRECTIONAL_RESET.
    peer_directional_reset: bool,
    /// The peer's SETTINGS announced PRIORITY_UPDATES.
    peer_priority_updates: bool,
    /// When the SUT's latest PRIORITY_UPDATEs went out (at most 500).
    sut_priority_sent: VecDeque<Instant>,
    granted_conn: u64,
    granted_stream: HashMap<StreamId, u64>,
    granted_streams: u64,
    // SUT -> peer: what the SUT sent.
    sut_conn_sent: u64,
    sut_stream_sent: HashMap<StreamId, u64>,
    /// Streams on which the SUT sent FIN.
    sut_fin: HashSet<StreamId>,
    /// Streams whose sending direction the SUT reset (RESET, or SEND).
    sut_send_reset: HashSet<StreamId>,
    /// Streams whose receiving direction the SUT reset (RESET, or RECEIVE).
    sut_recv_reset: HashSet<StreamId>,
    /// Index one past the highest SUT stream announced on the wire.
    sut_announced: u64,
    sut_goaway: bool,
    sut_goaway_error: bool,
    sut_settings_seen: bool,
    sut_last_ping: Option<[u8; 8]>,
    // Peer -> SUT: what the SUT announced.
    sut_conn_limit: u64,
    sut_stream_limit: HashMap<StreamId, u64>,
    sut_streams_limit: u64,
    // Peer -> SUT: what the peer sent.
    peer_conn_sent: u64,
    peer_stream_sent: HashMap<StreamId, u64>,
    peer_next_index: u64,
    peer_pings: HashSet<[u8; 8]>,
    /// Streams on which the SUT received the peer's FIN.
    peer_fin: HashSet<StreamId>,
    /// Streams on which the SUT received a RESET of its sending direction
    /// (RESET, or RECEIVE).
    peer_reset_sut_send: HashSet<StreamId>,
    /// Streams on which the SUT received a RESET of its receiving
    /// direction (RESET, or SEND).
    peer_reset_sut_recv: HashSet<StreamId>,
    peer_over_credit: bool,
    peer_over_streams: bool,
    peer_garbage: bool,
}

struct Harness {
    conn: Connection,
    now: Instant,
    ledger: Ledger,
    handles: Vec<Handle>,
    /// Ids the SUT opened, in order.
    opened: Vec<StreamId>,
    /// Every id the SUT may know: opened, or named by a peer DATA frame.
    ids: BTreeSet<StreamId>,
    /// Ids ever returned by `accept`.
    accepted: HashSet<StreamId>,
    /// Application bytes accepted by `write`, per stream.
    written: HashMap<StreamId, u64>,
    /// Bytes `read` returned, per stream.
    read: HashMap<StreamId, u64>,
    // Peer -> SUT bytes.
    pending: BytesMut,
    pending_grants: VecDeque<(u64, Grant)>,
    appended: u64,
    delivered: u64,
    /// Delivered while the connection was running.
    received: u64,
    /// Delivered, not yet consumed by the SUT (a partial frame).
    inbuf: BytesMut,
    // SUT -> peer bytes.
    tx: TransmitBuf,
    out_raw: BytesMut,
    out_decoder: FrameDecoder,
    preface_left: usize,
    /// The first error the SUT reported, and its frame count at that time.
    first_error: Option<(ConnectionError, u64)>,
    /// The connection had ended when the current `poll_transmit` began.
    ended_before_transmit: bool,
    /// The protocol's invariants (conn::invariants).
    checker: InvariantChecker,
}

impl Harness {
    fn new(settings: &PeerSettings) -> Harness {
        let now = base();
        let values = settings.values();
        let peer_max_frame = values.get(MAX_FRAME_PAYLOAD);
        let ledger = Ledger {
            peer_max_frame,
            peer_stream_window: u64::from(values.get(INITIAL_STREAM_WINDOW)),
            peer_directional_reset: settings.directional_reset,
            peer_priority_updates: settings.priority_updates(),
            granted_conn: u64::from(values.get(CONNECTION_WINDOW)),
            granted_streams: u64::from(values.get(MAX_STREAMS)),
            sut_conn_limit: u64::from(CONN_WINDOW),
            sut_streams_limit: u64::from(MAX_INCOMING),
            ..Ledger::default()
        };
        Harness {
            conn: Connection::new(Side::Server, config().clone(), now),
            now,
            ledger,
            handles: Vec::new(),
            opened: Vec::new(),
            ids: BTreeSet::new(),
            accepted: HashSet::new(),
            written: HashMap::new(),
            read: HashMap::new(),
            pending: BytesMut::new(),
            pending_grants: VecDeque::new(),
            appended: 0,
            delivered: 0,
            received: 0,
            inbuf: BytesMut::new(),
            tx: TransmitBuf::new(),
            out_raw: BytesMut::new(),
            // SPEC §4.2: everything the SUT sends fits the peer's maximum
            // (and before the peer's SETTINGS, 1024 bytes, which is the
            // smallest maximum the peer can choose).
            out_decoder: FrameDecoder::new(peer_max_frame),
            preface_left: PREFACE_LEN,
            first_error: None,
            ended_before_transmit: false,
            checker: InvariantChecker::new(),
        }
    }

    // ----- peer -> SUT -------------------------------------------------------

    fn append(&mut self, bytes: &[u8], grant: Option<Grant>) {
        self.pending.extend_from_slice(bytes);
        self.appended += bytes.len() as u64;
        if let Some(grant) = grant {
            self.pending_grants.push_back((self.appended, grant));
        }
    }

    /// Delivers all pending bytes but the last `hold`.
    fn deliver(&mut self, hold: usize) {
        let n = self.pending.len().saturating_sub(hold);
        if n == 0 {
            return;
        }
        let piece = self.pending.split_to(n);
        self.delivered += n as u64;
        if !self.conn.is_finished() {
            // An ended connection discards its input unread.
            self.received += n as u64;
        }
        self.inbuf.extend_from_slice(&piece);
        self.conn.handle_input(self.now, &mut self.inbuf);
        self.learn_grants();
    }

    /// Whole frames were processed: their grants are known to the SUT.
    fn learn_grants(&mut self) {
        while let Some((end, _)) = self.pending_grants.front() {
            if *end > self.delivered {
                break;
            }
            let (_, grant) = self.pending_grants.pop_front().expect("front exists");
            let l = &mut self.ledger;
            match grant {
                Grant::Connection(v) => l.granted_conn = l.granted_conn.max(v),
                Grant::Stream(id, v) => {
                    let window = l.peer_stream_window;
                    let g = l.granted_stream.entry(id).or_insert(window);
                    *g = (*g).max(v);
                }
                Grant::Streams(v) => l.granted_streams = l.granted_streams.max(v),
                Grant::Fin(id) => {
                    l.peer_fin.insert(id);
                }
                Grant::Reset(id, scope) => {
                    if scope != ResetScope::Send {
                        l.peer_reset_sut_send.insert(id);
                    }
                    if scope != ResetScope::Receive {
                        l.peer_reset_sut_recv.insert(id);
                    }
                }
            }
        }
    }

    fn pick(&self, sel: StreamSel) -> StreamId {
        let id = match sel {
            StreamSel::Held(h) if !self.handles.is_empty() => {
                Some(self.handles[usize::from(h) % self.handles.len()].id)
            }
            StreamSel::Held(_) | StreamSel::NewPeer => client_id(self.ledger.peer_next_index),
            StreamSel::SkipPeer(k) => client_id(self.ledger.peer_next_index + u64::from(k % 4)),
            StreamSel::Server(k) => server_id(u64::from(k % 16)),
            StreamSel::Raw(raw) => StreamId::new(raw & 0x7fff_ffff),
        };
        id.filter(|id| !id.is_connection())
            .unwrap_or(StreamId::new(1).expect("1 is a stream id"))
    }

    /// The peer may send on `id`: its own, or one the SUT announced.
    /// (The SUT tolerates frames on its allocated but unannounced ids,
    /// SPEC §8.5, but then the wire rules of §8.4 cannot apply.)
    fn peer_knows(&self, id: StreamId) -> bool {
        id.is_client_initiated() || self.ledger.sut_stream_sent.contains_key(&id)
    }

    fn sut_stream_limit(&self, id: StreamId) -> u64 {
        self.ledger
            .sut_stream_limit
            .get(&id)
            .copied()
            .unwrap_or(u64::from(STREAM_WINDOW))
    }

    fn peer_frame(&mut self, frame: PeerFrame) {
        let mut grant = None;
        let frame = match frame {
            PeerFrame::Data {
                stream,
                len,
                fin,
                within_credit,
            } => {
                let id = self.pick(stream);
                let sent = self.ledger.peer_stream_sent.get(&id).copied().unwrap_or(0);
                let mut n = u64::from(len) % (u64::from(MAX_FRAME) + 1);
                if within_credit {
                    let stream_left = self.sut_stream_limit(id).saturating_sub(sent);
                    let conn_left = self
                        .ledger
                        .sut_conn_limit
                        .saturating_sub(self.ledger.peer_conn_sent);
                    n = n.min(stream_left).min(conn_left);
                }
                let stream_limit = self.sut_stream_limit(id);
                let l = &mut self.ledger;
                if id.is_client_initiated() && id.index() >= l.peer_next_index {
                    // Opens a stream (SPEC §8.2, §9.6).
                    if id.index() >= l.sut_streams_limit {
                        l.peer_over_streams = true;
                    }
                    l.peer_next_index = id.index() + 1;
                }
                l.peer_conn_sent += n;
                l.peer_stream_sent.insert(id, sent + n);
                if l.peer_conn_sent > l.sut_conn_limit || sent + n > stream_limit {
                    l.peer_over_credit = true;
                }
                self.ids.insert(id);
                if fin && self.peer_knows(id) {
                    grant = Some(Grant::Fin(id));
                }
                Frame::Data(Data {
                    stream: id,
                    fin,
                    payload: Bytes::from(pattern_bytes(id, true, sent, n as usize)),
                })
            }
            PeerFrame::WindowUpdate { stream, limit } => {
                let (id, current) = match stream {
                    None => (StreamId::CONNECTION, self.ledger.granted_conn),
                    Some(sel) => {
                        let id = self.pick(sel);
                        let current = self
                            .ledger
                            .granted_stream
                            .get(&id)
                            .copied()
                            .unwrap_or(self.ledger.peer_stream_window);
                        (id, current)
                    }
                };
                let limit = limit.value(current);
                grant = Some(if id.is_connection() {
                    Grant::Connection(limit)
                } else {
                    Grant::Stream(id, limit)
                });
                Frame::WindowUpdate(WindowUpdate { stream: id, limit })
            }
            PeerFrame::MaxStreams(count) => {
                let count = count.value(self.ledger.granted_streams);
                grant = Some(Grant::Streams(count));
                Frame::MaxStreams(MaxStreams { count })
            }
            PeerFrame::Blocked { on, limit } => {
                let (on, current) = match on {
                    BlockedSel::Connection => (BlockedOn::Connection, self.ledger.sut_conn_limit),
                    BlockedSel::StreamCount => {
                        (BlockedOn::StreamCount, self.ledger.sut_streams_limit)
                    }
                    BlockedSel::Stream(sel) => {
                        let id = self.pick(sel);
                        (BlockedOn::Stream(id), self.sut_stream_limit(id))
                    }
                };
                Frame::Blocked(Blocked {
                    on,
                    limit: limit.value(current),
                })
            }
            PeerFrame::Reset {
                stream,
                code,
                scope,
            } => {
                let id = self.pick(stream);
                if self.peer_knows(id) {
                    grant = Some(Grant::Reset(id, scope.get()));
                }
                Frame::Reset(Reset {
                    stream: id,
                    code: code.get(),
                    scope: scope.get(),
                })
            }
            PeerFrame::Ping { ack, echo, payload } => {
                let payload = match self.ledger.sut_last_ping {
                    Some(p) if ack && echo => p,
                    _ => payload,
                };
                if !ack {
                    self.ledger.peer_pings.insert(payload);
                }
                Frame::Ping(Ping { ack, payload })
            }
            PeerFrame::GoAway {
                last,
                code,
                debug_len,
            } => Frame::GoAway(GoAway {
                last_stream: last.map_or(StreamId::CONNECTION, |sel| self.pick(sel)),
                code: code.get(),
                debug: Bytes::from(vec![b'd'; usize::from(debug_len)]),
            }),
            PeerFrame::Settings { ack } => Frame::Settings(Settings {
                ack,
                values: SettingsValues::default(),
            }),
            PeerFrame::Unknown { kind: 8, len } => {
                // Held streams the SUT opened may not be announced yet:
                // then the SUT sees an idle id, a protocol error.
                let stream = self
                    .held(len / 16)
                    .map_or(StreamId::new(1).expect("id 1"), |i| self.handles[i].id);
                Frame::PriorityUpdate(PriorityUpdate {
                    stream,
                    urgency: len % 8,
                    incremental: len & 8 != 0,
                })
            }
            PeerFrame::Unknown { kind, len } => {
                let header = Header {
                    len: u32::from(len),
                    kind: kind.max(9),
                    flags: 0,
                    stream: StreamId::CONNECTION,
                };
                let mut bytes = header.encode().to_vec();
                bytes.resize(HEADER_LEN + usize::from(len), 0);
                self.append(&bytes, None);
                return;
            }
        };
        let bytes = frame.to_bytes();
        self.append(&bytes, grant);
    }

    // ----- the application ---------------------------------------------------

    fn held(&self, h: u8) -> Option<usize> {
        (!self.handles.is_empty()).then(|| usize::from(h) % self.handles.len())
    }

    fn write(&mut self, h: u8, len: u16, zero_copy: bool) {
        let Some(i) = self.held(h) else { return };
        let id = self.handles[i].id;
        let off = self.written.get(&id).copied().unwrap_or(0);
        let len = usize::from(len) % (2 * SEND_BUFFER as usize + 1);
        let data = pattern_bytes(id, false, off, len);
        let result = if zero_copy {
            let mut bytes = Bytes::from(data);
            let result = self.conn.write_bytes(self.now, id, &mut bytes);
            if let Ok(n) = result {
                assert_eq!(bytes.len(), len - n, "write_bytes left the wrong rest");
            }
            result
        } else {
            self.conn.write(self.now, id, &data)
        };
        if let Ok(n) = result {
            assert!(n <= len, "write accepted more than it was given");
            *self.written.entry(id).or_insert(0) += n as u64;
        }
    }

    fn read(&mut self, h: u8, max: u16) {
        let Some(i) = self.held(h) else { return };
        if !self.handles[i].reading {
            return;
        }
        let id = self.handles[i].id;
        let max = usize::from(max);
        let mut got = match self.conn.read(self.now, id, max) {
            Ok(ReadOutcome::Data(bytes)) => Some(bytes),
            _ => None,
        };
        let room = max.max(1) - got.as_ref().map_or(0, Bytes::len);
        if max % 2 == 1 && room > 0 && self.inbuf.is_empty() {
            // Odd-sized reads then take the rest of a DATA payload in
            // progress straight from the undelivered input, as a reader
            // reading the transport into its own buffer does.
            let n = self
                .conn
                .direct_payload(id)
                .min(room)
                .min(self.pending.len());
            if n > 0 {
                let direct = self.pending.split_to(n).freeze();
                self.delivered += n as u64;
                if !self.conn.is_finished() {
                    self.received += n as u64;
                }
                if self.conn.commit_direct_payload(self.now, id, n) {
                    let mut all = got.map(|b| b.to_vec()).unwrap_or_default();
                    all.extend_from_slice(&direct);
                    got = Some(Bytes::from(all));
                } else {
                    assert!(
                        self.conn.error().is_some(),
                        "direct payload bytes refused without a connection error"
                    );
                }
                self.learn_grants();
            }
        }
        if let Some(bytes) = got {
            assert!(!bytes.is_empty(), "read returned empty Data");
            assert!(bytes.len() <= max.max(1), "read returned more than asked");
            let off = self.read.entry(id).or_insert(0);
            // (After garbage, any bytes may have been delivered.)
            assert!(
                self.ledger.peer_garbage
                    || bytes[..] == pattern_bytes(id, true, *off, bytes.len())[..],
                "read on {id} at offset {off} returned bytes the peer did not send there"
            );
            *off += bytes.len() as u64;
        }
    }

    /// `Op::DirectWrite`: what `driver/direct.rs` does, through the
    /// `cfg(fuzzing)` door of the core.
    fn direct_write(&mut self, h: u8, len: u16, taken: u8) {
        let Some(i) = self.held(h) else { return };
        let id = self.handles[i].id;
        let len = usize::from(len) % (2 * SEND_BUFFER as usize + 1);
        if len == 0 {
            return;
        }
        let allowance = self.conn.fuzz_direct_allowance(id).min(len);
        if allowance == 0 {
            let _ = self.conn.fuzz_wait_for_credit(self.now, id, len);
            return;
        }
        assert!(
            !self.conn.wants_transmit(),
            "a direct write was allowed while the core had something to send"
        );
        let off = self.written.get(&id).copied().unwrap_or(0);
        let data = pattern_bytes(id, false, off, allowance);
        let max_frame = self.conn.peer_max_frame_payload().max(1);
        let frames: Vec<&[u8]> = data.chunks(max_frame).collect();
        self.conn.fuzz_commit_direct(id, allowance, frames.len());
        let k = usize::from(taken) % (frames.len() + 1);
        let sent: usize = frames[..k].iter().map(|p| p.len()).sum();
        self.conn
            .fuzz_rollback_direct(id, allowance - sent, frames.len() - k);
        let mut out = BytesMut::new();
        for payload in &frames[..k] {
            Frame::Data(Data {
                stream: id,
                fin: false,
                payload: Bytes::copy_from_slice(payload),
            })
            .encode(&mut out);
        }
        *self.written.entry(id).or_insert(0) += sent as u64;
        self.ended_before_transmit = self.conn.error().is_some();
        self.on_output(&out);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Peer { frame, hold } => {
                self.peer_frame(frame);
                let hold = if hold >= 128 {
                    usize::from(hold - 128) % 24
                } else {
                    0
                };
                self.deliver(hold);
            }
            Op::Garbage(mut bytes) => {
                bytes.truncate(64);
                self.ledger.peer_garbage = true;
                self.append(&bytes, None);
                self.deliver(0);
            }
            Op::Eof => {
                self.conn.handle_eof(self.now);
                assert!(self.conn.error().is_some(), "end of input ended nothing");
            }
            Op::Accept => {
                if let Some(id) = self.conn.accept() {
                    assert!(id.is_client_initiated(), "accepted the SUT's own {id}");
                    // (Garbage may decode as DATA opening any id.)
                    assert!(
                        id.index() < self.ledger.peer_next_index || self.ledger.peer_garbage,
                        "accepted {id}, which the peer never opened"
                    );
                    assert!(self.accepted.insert(id), "accepted {id} twice");
                    self.ids.insert(id);
                    self.conn.set_priority(self.now, id, priority_of(id));
                    self.handles.push(Handle { id, reading: true });
                }
            }
            Op::Open => {
                if let Ok(Some(id)) = self.conn.open(self.now) {
                    let expected = server_id(self.opened.len() as u64);
                    assert_eq!(Some(id), expected, "open() skipped or reused an id");
                    self.opened.push(id);
                    self.ids.insert(id);
                    self.conn.set_priority(self.now, id, priority_of(id));
                    self.handles.push(Handle { id, reading: true });
                }
            }
            Op::Write { h, len } => {
                // Now and then a priority changes mid-stream (decided from
                // the length, so inputs decode as before).
                if len % 7 == 0
                    && let Some(i) = self.held(h)
                {
                    let id = self.handles[i].id;
                    let priority = priority_of(StreamId::new(u32::from(len) | 1).unwrap_or(id));
                    self.conn.set_priority(self.now, id, priority);
                }
                self.write(h, len, false)
            }
            Op::WriteBytes { h, len } => self.write(h, len, true),
            Op::Finish(h) => {
                if let Some(i) = self.held(h) {
                    let _ = self.conn.finish(self.now, self.handles[i].id);
                }
            }
            Op::Read { h, max } => {
                // Now and then the application asks the peer for another
                // priority (decided from `max`, so inputs decode as before).
                if max % 5 == 0
                    && let Some(i) = self.held(h)
                {
                    let id = self.handles[i].id;
                    let priority = priority_of(StreamId::new(u32::from(max) | 1).unwrap_or(id));
                    let result = self.conn.request_priority(self.now, id, priority);
                    if self.ledger.peer_priority_updates {
                        assert_ne!(
                            result,
                            Err(PriorityRequestError::Unsupported),
                            "the peer announced PRIORITY_UPDATES"
                        );
                    }
                }
                self.read(h, max)
            }
            Op::Reset { h, code } => {
                if let Some(i) = self.held(h) {
                    self.conn.reset(self.now, self.handles[i].id, code.get());
                }
            }
            Op::Release(h) => {
                if let Some(i) = self.held(h) {
                    let handle = self.handles.swap_remove(i);
                    self.conn.release(self.now, handle.id);
                }
            }
            Op::ResetSend { h, code } => {
                if let Some(i) = self.held(h) {
                    self.conn
                        .reset_send(self.now, self.handles[i].id, code.get());
                }
            }
            Op::Stop { h, code } => {
                if let Some(i) = self.held(h) {
                    self.handles[i].reading = false;
                    self.conn.stop(self.now, self.handles[i].id, code.get());
                }
            }
            Op::StopReading(h) => {
                if let Some(i) = self.held(h) {
                    self.handles[i].reading = false;
                    self.conn.stop_reading(self.now, self.handles[i].id);
                }
            }
            Op::Ping => self.conn.ping(self.now),
            Op::Close { code, debug_len } => {
                let debug = vec![b'c'; usize::from(debug_len) % 1200];
                self.conn.close(self.now, code.get(), &debug);
            }
            Op::AdvanceMillis(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.timeout();
            }
            Op::AdvanceSecs(s) => {
                self.now += Duration::from_secs(u64::from(s));
                self.timeout();
            }
            Op::ToTimeout => {
                if let Some(at) = self.conn.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.timeout();
            }
            Op::Transmit { max } => {
                self.transmit(usize::from(max));
                self.drain_events();
            }
            Op::DirectWrite { h, len, taken } => self.direct_write(h, len, taken),
            Op::TransmitAll { max } => {
                let max = usize::from(max).max(1);
                let mut rounds = 0u32;
                while self.transmit(max) > 0 {
                    rounds += 1;
                    assert!(rounds < 1_000_000, "poll_transmit never runs dry");
                }
                self.drain_events();
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(&input.settings);
    // The SUT's preface and SETTINGS go first, so the peer may acknowledge.
    h.transmit(usize::MAX);
    h.check();
    let mut hello = BytesMut::from(&encode_preface()[..]);
    Frame::Settings(Settings {
        ack: false,
        values: input.settings.values(),
    })
    .encode(&mut hello);
    if !input.withhold_ack {
        Frame::Settings(Settings {
            ack: true,
            values: SettingsValues::default(),
        })
        .encode(&mut hello);
    }
    h.append(&hello, None);
    h.deliver(0);
    h.check();
    for op in input.ops {
        h.apply(op);
        h.check();
    }
    // The end: everything owed goes out and is checked too.
    h.apply(Op::TransmitAll { max: u16::MAX });
    h.check();
});
