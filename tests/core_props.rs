//! Property tests of the sans-IO core: two endpoints joined by the in-memory
//! [`Pair`] under virtual time, driven by random sequences of application
//! commands, pipe steps and clock advances. After every step the checks of
//! SPEC §8-§11 hold: no protocol error between two correct peers, receive
//! buffers within their windows, credit conservation (§9.7), the stream-count
//! bound (§9.6), and every byte read is the byte written at that offset.
//!
//! Case counts are set per property so that the whole file stays far below
//! 20 s in debug mode (`cargo test --test core_props`): about 5 s of CPU on
//! one core here (5-18 ms a case, unoptimised), so a CI machine a few times
//! slower still fits, even running the four properties one after another.
//! Each count (next to its property) buys as many random configs and op
//! sequences as that share allows. For a deeper run set `PROPTEST_CASES`,
//! which overrides every count here, e.g.
//! `PROPTEST_CASES=3000 cargo test --test core_props` (about 3 minutes).

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use creditmux::config::Config;
use creditmux::conn::{Connection, ReadOutcome};
use creditmux::error::{ConnectionError, Initiator, OpenError, StreamError};
use creditmux::frame::{
    BlockedOn, CONNECTION_WINDOW, ErrorCode, Frame, INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD,
    MAX_STREAMS, StreamId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;
use proptest::test_runner::{TestCaseError, TestCaseResult};
use support::pair::Pair;

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// Steps after which a phase that should complete is declared stalled.
const STALL_STEPS: usize = 200_000;

/// `n` cases, unless `PROPTEST_CASES` asks for another number (a deeper
/// local run: `PROPTEST_CASES=5000 cargo test --release --test core_props`).
fn cases(n: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        default.cases
    } else {
        n
    };
    ProptestConfig { cases, ..default }
}

// ----- the byte pattern -----------------------------------------------------

/// A pseudo-random byte string of prime length; every (stream, direction)
/// reads it cyclically from its own start, so a byte delivered at the wrong
/// offset, twice, or on the wrong stream does not match.
const BASE_LEN: usize = 1_048_573;

fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..BASE_LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// The pattern key of the bytes `sender` writes on `id`.
fn key(id: StreamId, sender: usize) -> u64 {
    (u64::from(id.get()) << 1) | sender as u64
}

fn start_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % BASE_LEN
}

/// Bytes `off..off + len` of the pattern `key`.
fn pattern(key: u64, off: u64, len: usize) -> Vec<u8> {
    let base = base();
    let mut out = Vec::with_capacity(len);
    let mut pos = (start_of(key) + (off % BASE_LEN as u64) as usize) % BASE_LEN;
    while out.len() < len {
        let n = (len - out.len()).min(BASE_LEN - pos);
        out.extend_from_slice(&base[pos..pos + n]);
        pos = 0;
    }
    out
}

/// Whether `data` equals the pattern `key` at `off`.
fn matches_pattern(key: u64, off: u64, data: &[u8]) -> bool {
    let base = base();
    let mut pos = (start_of(key) + (off % BASE_LEN as u64) as usize) % BASE_LEN;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(BASE_LEN - pos);
        if rest[..n] != base[pos..pos + n] {
            return false;
        }
        rest = &rest[n..];
        pos = 0;
    }
    true
}

// ----- configurations -------------------------------------------------------

/// Stream window 1 KiB..256 KiB, connection window 4..8 stream windows
/// (SPEC §7.3 demands at least 4), frames 1 KiB..64 KiB, any send buffer,
/// 1..16 concurrent incoming streams. Sizes are arbitrary byte counts, not
/// powers of two, so frame and window boundaries fall anywhere.
///
/// With `half_close` false the half-close timeout (SPEC §12.4) is off: its
/// STREAM_TIMEOUT reset is legitimate, and property 4 allows no reset.
fn config_strategy_with(half_close: bool) -> impl Strategy<Value = Config> {
    (
        1024u32..=256 * 1024,
        4u32..=8,
        0u32..1024,
        1024u32..=64 * 1024,
        1024u32..=256 * 1024,
        1u32..=16,
    )
        .prop_map(move |(stream, mult, extra, frame, send_buffer, streams)| {
            Config::builder()
                .stream_window(stream)
                .connection_window(stream * mult + extra)
                .max_frame_payload(frame)
                .send_buffer(send_buffer)
                .max_incoming_streams(streams)
                .half_close_timeout(if half_close {
                    Some(Duration::from_secs(60))
                } else {
                    None
                })
                // The simulated pipe moves a chunk per step however far
                // virtual time jumps, so a frame may take minutes to
                // arrive; the frame timeout (SPEC §12.2) has tests of
                // its own (tests/timeouts.rs).
                .frame_timeout(None)
                .build()
                .expect("generated config is valid")
        })
}

/// The configs of properties 1-3, half-close timeout on (60 s).
fn config_strategy() -> impl Strategy<Value = Config> {
    config_strategy_with(true)
}

/// Bytes moved per direction and pipe step: small values split frames
/// across deliveries, large ones deliver many frames at once.
fn chunk_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![100usize..1000, 1000usize..70_000]
}

// ----- operations -----------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Open(usize),
    Accept(usize),
    Write(usize, Index, usize),
    Read(usize, Index, usize),
    Finish(usize, Index),
    Reset(usize, Index, u32),
    Release(usize, Index),
    Ping(usize),
    /// Moves bytes this many times in each direction.
    Step(u8),
    /// Steps until nothing moves.
    Drive,
    /// Advances virtual time by this many milliseconds, or to the first
    /// timer due before that (running it), then steps once.
    Advance(u16),
    /// Runs the next timer of either side (probe, keepalive, drain,
    /// half-close; at most 20 s ahead), then drives.
    Timer,
    /// Graceful close (GOAWAY NO_ERROR).
    Close(usize),
}

/// Relative weights of the operations; 0 leaves one out. A close is not
/// among them: properties 1 and 2 insert at most one at a random position.
#[derive(Copy, Clone)]
struct Weights {
    open: u32,
    accept: u32,
    write: u32,
    read: u32,
    finish: u32,
    reset: u32,
    release: u32,
    ping: u32,
    step: u32,
    drive: u32,
    advance: u32,
    timer: u32,
}

const ALL_OPS: Weights = Weights {
    open: 8,
    accept: 8,
    write: 16,
    read: 14,
    finish: 3,
    reset: 2,
    release: 2,
    ping: 1,
    step: 10,
    drive: 4,
    advance: 3,
    timer: 2,
};

fn side() -> impl Strategy<Value = usize> {
    0usize..2
}

/// Mostly small sizes, sometimes a large one that exceeds windows and
/// buffers.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..64,
        3 => 64usize..8192,
        2 => 8192usize..300_000,
    ]
}

fn ops_strategy(w: Weights, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let mut arms: Vec<(u32, BoxedStrategy<Op>)> = Vec::new();
    let mut arm = |weight: u32, s: BoxedStrategy<Op>| {
        if weight > 0 {
            arms.push((weight, s));
        }
    };
    arm(w.open, side().prop_map(Op::Open).boxed());
    arm(w.accept, side().prop_map(Op::Accept).boxed());
    arm(
        w.write,
        (side(), any::<Index>(), size())
            .prop_map(|(s, i, n)| Op::Write(s, i, n))
            .boxed(),
    );
    arm(
        w.read,
        (side(), any::<Index>(), size())
            .prop_map(|(s, i, n)| Op::Read(s, i, n))
            .boxed(),
    );
    arm(
        w.finish,
        (side(), any::<Index>())
            .prop_map(|(s, i)| Op::Finish(s, i))
            .boxed(),
    );
    arm(
        w.reset,
        (side(), any::<Index>(), any::<u32>())
            .prop_map(|(s, i, c)| Op::Reset(s, i, c))
            .boxed(),
    );
    arm(
        w.release,
        (side(), any::<Index>())
            .prop_map(|(s, i)| Op::Release(s, i))
            .boxed(),
    );
    arm(w.ping, side().prop_map(Op::Ping).boxed());
    arm(w.step, (1u8..=8).prop_map(Op::Step).boxed());
    arm(w.drive, Just(Op::Drive).boxed());
    // Mostly short; sometimes past the probe interval (1 s) so BLOCKED
    // probes and their answers join in (SPEC §11).
    arm(
        w.advance,
        prop_oneof![3 => 1u16..=400, 1 => 400u16..=5000]
            .prop_map(Op::Advance)
            .boxed(),
    );
    arm(w.timer, Just(Op::Timer).boxed());
    proptest::collection::vec(Union::new_weighted(arms), 1..=max_len)
}

/// In about a third of the cases, one graceful close (either side) at a
/// random position of the sequence.
fn close_strategy() -> impl Strategy<Value = Option<(usize, Index)>> {
    proptest::option::weighted(0.3, (side(), any::<Index>()))
}

fn with_close(mut ops: Vec<Op>, close: Option<(usize, Index)>) -> Vec<Op> {
    if let Some((who, at)) = close {
        ops.insert(at.index(ops.len() + 1), Op::Close(who));
    }
    ops
}

// ----- the credit ledger ----------------------------------------------------

/// What one direction's receiver granted (as it put it on the wire) and
/// what its sender used. A sender can only know limits the receiver emitted
/// earlier, so checking DATA against emitted limits is sound.
#[derive(Default)]
struct Direction {
    settings_seen: bool,
    initial_stream_window: u64,
    max_frame_payload: u64,
    conn_limit: u64,
    stream_limits: HashMap<u32, u64>,
    streams_limit: u64,
    conn_sent: u64,
    stream_sent: HashMap<u32, u64>,
    /// Streams on which the sender sent FIN or RESET.
    sender_done: HashSet<u32>,
    /// Index one past the highest stream the sender opened.
    opened: u64,
}

/// Both directions; index = the sending side.
#[derive(Default)]
struct Ledger {
    dirs: [Direction; 2],
    violations: Vec<String>,
}

impl Ledger {
    /// A frame `from` put on the wire.
    fn on_frame(&mut self, from: usize, frame: &Frame) {
        let to = 1 - from;
        match frame {
            Frame::Settings(s) if !s.ack => {
                // Limits for the opposite direction: `from` receives it.
                let d = &mut self.dirs[to];
                d.settings_seen = true;
                d.initial_stream_window = u64::from(s.values.get(INITIAL_STREAM_WINDOW));
                d.conn_limit = u64::from(s.values.get(CONNECTION_WINDOW));
                d.streams_limit = u64::from(s.values.get(MAX_STREAMS));
                d.max_frame_payload = u64::from(s.values.get(MAX_FRAME_PAYLOAD));
            }
            Frame::WindowUpdate(u) => {
                let d = &mut self.dirs[to];
                if u.stream.is_connection() {
                    d.conn_limit = d.conn_limit.max(u.limit);
                } else {
                    let l = d.stream_limits.entry(u.stream.get()).or_insert(0);
                    *l = (*l).max(u.limit);
                }
            }
            Frame::MaxStreams(m) => {
                let d = &mut self.dirs[to];
                d.streams_limit = d.streams_limit.max(m.count);
            }
            Frame::Reset(r) => {
                self.dirs[from].sender_done.insert(r.stream.get());
            }
            Frame::Blocked(b) => {
                // SPEC §11.1: a probe carries the limit the sender is stuck
                // at, which the receiver must have announced.
                let d = &self.dirs[from];
                let known = match b.on {
                    BlockedOn::Connection => d.conn_limit,
                    BlockedOn::StreamCount => d.streams_limit,
                    BlockedOn::Stream(id) => d
                        .stream_limits
                        .get(&id.get())
                        .copied()
                        .unwrap_or(d.initial_stream_window),
                };
                if b.limit > known {
                    self.violations.push(format!(
                        "side {from} sent BLOCKED {:?} at {} above the announced limit {known}",
                        b.on, b.limit
                    ));
                }
            }
            Frame::Data(data) => {
                let n = data.payload.len() as u64;
                let id = data.stream;
                let d = &mut self.dirs[from];
                let mut bad = Vec::new();
                if !d.settings_seen {
                    bad.push("DATA before the receiver's SETTINGS".to_string());
                }
                if n > d.max_frame_payload {
                    bad.push(format!(
                        "payload {n} above MAX_FRAME_PAYLOAD {}",
                        d.max_frame_payload
                    ));
                }
                if d.sender_done.contains(&id.get()) {
                    bad.push("DATA after the sender's FIN or RESET".to_string());
                }
                let own = id.is_client_initiated() == (from == CLIENT);
                if own && !d.stream_sent.contains_key(&id.get()) {
                    // First frame of a stream `from` opens (SPEC §8.2, §9.6).
                    if id.index() >= d.streams_limit {
                        bad.push(format!(
                            "opened index {} beyond MAX_STREAMS {}",
                            id.index(),
                            d.streams_limit
                        ));
                    }
                    if id.index() < d.opened {
                        bad.push(format!(
                            "opened out of order: index {} after {}",
                            id.index(),
                            d.opened
                        ));
                    }
                    d.opened = d.opened.max(id.index() + 1);
                }
                let sent = d.stream_sent.entry(id.get()).or_insert(0);
                *sent += n;
                let stream_limit = d
                    .stream_limits
                    .get(&id.get())
                    .copied()
                    .unwrap_or(d.initial_stream_window);
                if *sent > stream_limit {
                    bad.push(format!(
                        "stream offset {} beyond the stream limit {stream_limit}",
                        *sent
                    ));
                }
                d.conn_sent += n;
                if d.conn_sent > d.conn_limit {
                    bad.push(format!(
                        "connection offset {} beyond the connection limit {}",
                        d.conn_sent, d.conn_limit
                    ));
                }
                if data.fin {
                    d.sender_done.insert(id.get());
                }
                for b in bad {
                    self.violations
                        .push(format!("side {from}, stream {id}, {n} bytes: {b}"));
                }
            }
            _ => {}
        }
    }
}

// ----- the model ------------------------------------------------------------

/// What the test knows about one stream on one side.
#[derive(Debug, Default)]
struct StreamModel {
    /// Bytes `write` accepted: the pattern offset of the next write.
    written: u64,
    /// The offset up to which the test itself put this side's pattern on
    /// the wire, beyond its credit (property 5).
    injected: u64,
    /// Bytes `read` returned, all checked against the peer's pattern.
    read: u64,
    /// `finish` succeeded.
    finished: bool,
    /// `read` returned `Finished`.
    read_finished: bool,
    /// A read reported the stream reset (either side).
    reset_seen: bool,
    /// Codes this side's application passed to `reset`.
    reset_codes: Vec<u32>,
    /// `release` was called.
    released: bool,
}

/// A stall the checks watch (SPEC §11.1).
#[derive(Debug)]
struct Stall {
    since: std::time::Instant,
    /// The stream's bytes sent then: a change means it moved.
    bytes_sent: u64,
    /// Probes counted then, for the stream or the connection.
    probes: u64,
    /// Blocked on the stream's credit (else on the connection's).
    on_stream: bool,
}

#[derive(Copy, Clone)]
struct Opts {
    /// A RESET of any kind fails the property.
    forbid_resets: bool,
    /// Install the credit ledger (property 2) on the pipe. Properties 2-4
    /// use it; property 1 keeps the pipe unfiltered, carrying the sender's
    /// bytes as they are.
    ledger: bool,
}

struct Sim {
    pair: Pair,
    configs: [Config; 2],
    streams: [BTreeMap<StreamId, StreamModel>; 2],
    /// Ids each side opened, in order.
    opened: [Vec<StreamId>; 2],
    /// Highest id each side accepted.
    last_accepted: [Option<StreamId>; 2],
    closed: bool,
    /// Streams seen with data waiting on zero credit, and since when.
    stalls: HashMap<(usize, StreamId), Stall>,
    /// The test played a client that broke the server's credit (property
    /// 5): from then on the server may fail with FLOW_CONTROL_ERROR, the
    /// client with its GOAWAY, and streams may be reset for DATA after FIN.
    violated: bool,
    eof: [bool; 2],
    opts: Opts,
    ledger: Option<Rc<RefCell<Ledger>>>,
}

fn conn_of(pair: &mut Pair, who: usize) -> &mut Connection {
    if who == CLIENT {
        &mut pair.client
    } else {
        &mut pair.server
    }
}

fn is_flow_control_error(err: Option<&ConnectionError>) -> bool {
    matches!(
        err,
        Some(ConnectionError::ProtocolViolation {
            code: ErrorCode::FLOW_CONTROL_ERROR,
            ..
        })
    )
}

fn fail(msg: String) -> TestCaseResult {
    Err(TestCaseError::fail(msg))
}

impl Sim {
    fn new(client: Config, server: Config, chunk: usize, opts: Opts) -> Sim {
        let mut pair = Pair::new(client.clone(), server.clone());
        pair.chunk = chunk;
        let ledger = opts.ledger.then(|| {
            let ledger = Rc::new(RefCell::new(Ledger::default()));
            let l = ledger.clone();
            pair.to_server.filter = Some(Box::new(move |f: &Frame| {
                l.borrow_mut().on_frame(CLIENT, f);
                true
            }));
            let l = ledger.clone();
            pair.to_client.filter = Some(Box::new(move |f: &Frame| {
                l.borrow_mut().on_frame(SERVER, f);
                true
            }));
            ledger
        });
        pair.connect();
        Sim {
            pair,
            configs: [client, server],
            streams: [BTreeMap::new(), BTreeMap::new()],
            opened: [Vec::new(), Vec::new()],
            last_accepted: [None, None],
            closed: false,
            violated: false,
            stalls: HashMap::new(),
            eof: [false, false],
            opts,
            ledger,
        }
    }

    fn conn(&mut self, who: usize) -> &mut Connection {
        conn_of(&mut self.pair, who)
    }

    /// A stream of `who` that the application still holds.
    fn pick(&self, who: usize, index: &Index) -> Option<StreamId> {
        let live: Vec<StreamId> = self.streams[who]
            .iter()
            .filter(|(_, m)| !m.released)
            .map(|(id, _)| *id)
            .collect();
        (!live.is_empty()).then(|| live[index.index(live.len())])
    }

    fn apply(&mut self, op: &Op) -> TestCaseResult {
        match *op {
            Op::Open(who) => self.open(who).map(|_| ()),
            Op::Accept(who) => self.accept(who).map(|_| ()),
            Op::Write(who, ref i, len) => match self.pick(who, i) {
                Some(id) => self.write(who, id, len).map(|_| ()),
                None => Ok(()),
            },
            Op::Read(who, ref i, max) => match self.pick(who, i) {
                Some(id) => self.read(who, id, max).map(|_| ()),
                None => Ok(()),
            },
            Op::Finish(who, ref i) => match self.pick(who, i) {
                Some(id) => self.finish(who, id),
                None => Ok(()),
            },
            Op::Reset(who, ref i, code) => {
                if let Some(id) = self.pick(who, i) {
                    self.conn(who).reset(id, ErrorCode(code));
                    self.model(who, id).reset_codes.push(code);
                }
                self.check()
            }
            Op::Release(who, ref i) => {
                if let Some(id) = self.pick(who, i) {
                    self.release(who, id);
                }
                self.check()
            }
            Op::Ping(who) => {
                self.conn(who).ping();
                self.check()
            }
            Op::Step(n) => {
                for _ in 0..n {
                    self.step()?;
                }
                Ok(())
            }
            Op::Drive => self.drive(),
            Op::Advance(ms) => {
                let limit = self.pair.now + Duration::from_millis(u64::from(ms));
                self.pair.advance(limit);
                self.check()?;
                self.step().map(|_| ())
            }
            Op::Timer => {
                // What is on the wire arrives before the jump: a PING that
                // an earlier `Advance` fired must not be outrun by the
                // peer's idle timer (a network silent for 20 s would end
                // the connection, rightly).
                self.drive()?;
                let limit = self.pair.now + Duration::from_secs(20);
                self.pair.advance(limit);
                self.check()?;
                // Delivers the PING a keepalive sends and its answer, so
                // the next jump cannot outrun a live peer's reply.
                self.drive()
            }
            Op::Close(who) => {
                let now = self.pair.now;
                self.conn(who).close(now, ErrorCode::NO_ERROR, b"done");
                self.closed = true;
                self.check()
            }
        }
    }

    fn model(&mut self, who: usize, id: StreamId) -> &mut StreamModel {
        self.streams[who].entry(id).or_default()
    }

    fn open(&mut self, who: usize) -> Result<Option<StreamId>, TestCaseError> {
        let now = self.pair.now;
        let closed = self.closed;
        match self.conn(who).open(now) {
            Ok(Some(id)) => {
                let expected = (1 + who + 2 * self.opened[who].len()) as u32;
                prop_assert_eq!(id.get(), expected, "side {} opened ids out of order", who);
                self.opened[who].push(id);
                self.streams[who].insert(id, StreamModel::default());
                self.check()?;
                Ok(Some(id))
            }
            Ok(None) => Ok(None),
            Err(OpenError::GoingAway | OpenError::ConnectionLost(_)) if closed => Ok(None),
            Err(e) => fail(format!("side {who}: open failed: {e}")).map(|_| None),
        }
    }

    fn accept(&mut self, who: usize) -> Result<Option<StreamId>, TestCaseError> {
        let Some(id) = self.conn(who).accept() else {
            return Ok(None);
        };
        prop_assert!(
            self.opened[1 - who].contains(&id),
            "side {} accepted {}, which the peer never opened",
            who,
            id
        );
        prop_assert!(
            self.last_accepted[who].is_none_or(|last| id > last),
            "side {} accepted {} after {:?}",
            who,
            id,
            self.last_accepted[who]
        );
        self.last_accepted[who] = Some(id);
        self.streams[who].insert(id, StreamModel::default());
        self.check()?;
        Ok(Some(id))
    }

    fn write(&mut self, who: usize, id: StreamId, len: usize) -> Result<usize, TestCaseError> {
        // Never build more than fits (plus a little, to see `Ok(0)`).
        let len = len.min(self.conn(who).send_capacity(id) + 16);
        let off = self.model(who, id).written;
        let data = pattern(key(id, who), off, len);
        let result = self.conn(who).write(id, &data);
        let n = match result {
            Ok(n) => {
                let m = self.model(who, id);
                prop_assert!(!m.finished, "side {} wrote {} after finish", who, id);
                prop_assert!(n <= len);
                m.written += n as u64;
                n
            }
            Err(StreamError::Finished) => {
                prop_assert!(self.model(who, id).finished, "Finished error before finish");
                0
            }
            Err(err) => {
                self.stream_error(who, id, err, false)?;
                0
            }
        };
        self.check()?;
        Ok(n)
    }

    /// One `read`; returns the bytes read, or None once the stream ended
    /// (finished, reset, connection lost).
    fn read(
        &mut self,
        who: usize,
        id: StreamId,
        max: usize,
    ) -> Result<Option<usize>, TestCaseError> {
        let peer_written = self.streams[1 - who].get(&id).map_or(0, |m| m.written);
        let peer_sent = self.streams[1 - who]
            .get(&id)
            .map_or(0, |m| m.written.max(m.injected));
        let peer_finished = self.streams[1 - who]
            .get(&id)
            .is_some_and(|m| m.finished || m.released);
        let mut result = self.conn(who).read(id, max);
        if matches!(result, Ok(ReadOutcome::Blocked)) && max % 2 == 1 {
            // Odd-sized reads (half the random ones, and the unbounded
            // reads that drain every stream at the end) take the rest of a DATA payload in progress
            // straight off the wire, as a reader with its own buffer does.
            let rest = self.conn(who).direct_payload(id).min(max);
            let wire = if who == CLIENT {
                &mut self.pair.to_client
            } else {
                &mut self.pair.to_server
            };
            if let Some(bytes) = wire.take_direct(rest) {
                let now = self.pair.now;
                if self.conn(who).commit_direct_payload(now, id, bytes.len()) {
                    result = Ok(ReadOutcome::Data(bytes));
                } else {
                    // Only a payload beyond the credit is refused.
                    prop_assert!(
                        self.violated && is_flow_control_error(self.conn(who).error()),
                        "side {} stream {}: {} direct bytes refused",
                        who,
                        id,
                        bytes.len()
                    );
                    result = self.conn(who).read(id, max);
                }
            }
        }
        let out = match result {
            Ok(ReadOutcome::Data(bytes)) => {
                let m = self.model(who, id);
                prop_assert!(!bytes.is_empty(), "empty Data from read");
                prop_assert!(bytes.len() <= max, "read returned more than asked");
                prop_assert!(!m.read_finished, "data after Finished on {}", id);
                prop_assert!(!m.reset_seen, "data after a reset on {}", id);
                prop_assert!(
                    matches_pattern(key(id, 1 - who), m.read, &bytes),
                    "side {} stream {}: {} bytes at offset {} differ from what the peer wrote",
                    who,
                    id,
                    bytes.len(),
                    m.read
                );
                m.read += bytes.len() as u64;
                prop_assert!(
                    m.read <= peer_sent,
                    "side {} stream {} read {} bytes, the peer sent {}",
                    who,
                    id,
                    m.read,
                    peer_sent
                );
                Some(bytes.len())
            }
            Ok(ReadOutcome::Finished) => {
                let m = self.model(who, id);
                prop_assert!(
                    peer_finished,
                    "Finished on {} but the peer never finished",
                    id
                );
                prop_assert_eq!(
                    m.read,
                    peer_written,
                    "side {} stream {} finished after {} of {} bytes",
                    who,
                    id,
                    m.read,
                    peer_written
                );
                m.read_finished = true;
                None
            }
            Ok(ReadOutcome::Blocked) => {
                if let Some(stats) = self.conn(who).stream_stats(id) {
                    prop_assert_eq!(stats.recv_buffered, 0, "Blocked with bytes buffered");
                }
                Some(0)
            }
            Err(err) => {
                self.stream_error(who, id, err, true)?;
                None
            }
        };
        self.check()?;
        Ok(out)
    }

    fn finish(&mut self, who: usize, id: StreamId) -> TestCaseResult {
        match self.conn(who).finish(id) {
            Ok(()) => self.model(who, id).finished = true,
            Err(err) => self.stream_error(who, id, err, false)?,
        }
        self.check()
    }

    fn release(&mut self, who: usize, id: StreamId) {
        self.conn(who).release(id);
        self.model(who, id).released = true;
    }

    /// Judges a stream error: a reset must come from a reset some
    /// application asked for (or from a timeout or a close), never from a
    /// protocol complaint between two correct peers.
    ///
    /// `read` says a read reported it: then no data may follow. A reset
    /// that a write reports may still leave data to read (SPEC §8.7: the
    /// peer's RESET after its FIN keeps its finished direction readable).
    fn stream_error(
        &mut self,
        who: usize,
        id: StreamId,
        err: StreamError,
        read: bool,
    ) -> TestCaseResult {
        match err {
            StreamError::Reset {
                code: ErrorCode::STREAM_CLOSED,
                ..
            } if self.violated => {
                // The injected DATA followed the peer's FIN (SPEC §14).
                self.model(who, id).reset_seen |= read;
                Ok(())
            }
            StreamError::Reset { code, initiator } => {
                prop_assert!(
                    !self.opts.forbid_resets,
                    "side {} stream {} reset ({}, {:?}) though nobody reset anything",
                    who,
                    id,
                    code,
                    initiator
                );
                let by_close =
                    self.closed && (code == ErrorCode::CANCEL || code == ErrorCode::REFUSED_STREAM);
                let timeout = code == ErrorCode::STREAM_TIMEOUT;
                let ok = match initiator {
                    Initiator::Local => {
                        let m = self.model(who, id);
                        m.reset_codes.contains(&code.0) || m.released || timeout || by_close
                    }
                    Initiator::Remote => {
                        self.streams[1 - who].get(&id).is_some_and(|m| {
                            m.reset_codes.contains(&code.0)
                                || (m.released && code == ErrorCode::CANCEL)
                        }) || timeout
                            || by_close
                    }
                };
                prop_assert!(
                    ok,
                    "side {} stream {} reset ({}, {:?}) without cause",
                    who,
                    id,
                    code,
                    initiator
                );
                self.model(who, id).reset_seen |= read;
                Ok(())
            }
            StreamError::ConnectionLost(e) => {
                prop_assert!(
                    self.closed || self.violated,
                    "side {} lost the connection: {}",
                    who,
                    e
                );
                Ok(())
            }
            StreamError::Finished => fail(format!("side {who} stream {id}: unexpected {err}")),
            other => fail(format!("side {who} stream {id}: unexpected {other}")),
        }
    }

    fn step(&mut self) -> Result<bool, TestCaseError> {
        let moved = self.pair.step();
        self.deliver_eof();
        self.check()?;
        Ok(moved)
    }

    fn drive(&mut self) -> TestCaseResult {
        for _ in 0..STALL_STEPS {
            if !self.step()? {
                return Ok(());
            }
        }
        fail("the pair did not settle".into())
    }

    /// A finished side's driver would shut the transport down once its
    /// last bytes are out: the peer sees end of file.
    fn deliver_eof(&mut self) {
        let now = self.pair.now;
        for from in [CLIENT, SERVER] {
            let to = 1 - from;
            let drained = if from == CLIENT {
                self.pair.to_server.inflight.is_empty()
            } else {
                self.pair.to_client.inflight.is_empty()
            };
            if !self.eof[to] && drained && self.conn(from).is_finished() {
                self.eof[to] = true;
                self.conn(to).handle_eof(now);
            }
        }
    }

    /// The invariants that hold after every step.
    fn check(&mut self) -> TestCaseResult {
        if let Some(ledger) = &self.ledger {
            let ledger = ledger.borrow();
            prop_assert!(
                ledger.violations.is_empty(),
                "credit violations: {:?}",
                ledger.violations
            );
        }
        let ids: Vec<StreamId> = self.opened[0]
            .iter()
            .chain(self.opened[1].iter())
            .copied()
            .collect();
        let now = self.pair.now;
        for who in [CLIENT, SERVER] {
            let config = self.configs[who].clone();
            let closed = self.closed;
            let violated = self.violated;
            let conn = self.conn(who);
            match conn.error() {
                None => {}
                // Property 5: the server refuses the broken credit, the
                // client learns it from the GOAWAY (or the end of input).
                Some(e) if violated && who == SERVER && is_flow_control_error(Some(e)) => {}
                Some(
                    ConnectionError::ClosedByPeer {
                        code: ErrorCode::FLOW_CONTROL_ERROR,
                        ..
                    }
                    | ConnectionError::TransportClosed,
                ) if violated && who == CLIENT => {}
                Some(
                    ConnectionError::LocallyClosed {
                        code: ErrorCode::NO_ERROR,
                    }
                    | ConnectionError::ClosedByPeer {
                        code: ErrorCode::NO_ERROR,
                        ..
                    },
                ) if closed => {}
                Some(e) => return fail(format!("side {who}: connection error: {e:?}")),
            }
            let mut known = 0u64;
            let mut peer_streams = 0u64;
            let mut buffered = 0u64;
            let mut stalled = Vec::new();
            let conn_stats = conn.stats();
            // Probes of the connection (and stream-count) credit: all
            // probes but the live streams' own.
            let mut conn_probes = conn_stats.probes_sent;
            for &id in &ids {
                let Some(stats) = conn.stream_stats(id) else {
                    continue;
                };
                known += 1;
                conn_probes = conn_probes.saturating_sub(stats.probes_sent);
                // Data waiting on zero credit, of the stream or of the
                // connection (SPEC §11.1).
                if stats.send_buffered > 0
                    && (stats.send_window == 0 || conn_stats.send_window == 0)
                {
                    stalled.push((id, stats));
                }
                if id.is_client_initiated() != (who == CLIENT) {
                    peer_streams += 1;
                }
                prop_assert!(
                    stats.recv_buffered <= u64::from(config.stream_window()),
                    "side {} stream {} buffers {} bytes, window {}",
                    who,
                    id,
                    stats.recv_buffered,
                    config.stream_window()
                );
                buffered += stats.recv_buffered;
            }
            let stats = conn.stats();
            prop_assert!(
                stats.recv_buffered <= u64::from(config.connection_window()),
                "side {} buffers {} bytes, connection window {}",
                who,
                stats.recv_buffered,
                config.connection_window()
            );
            // SPEC §9.7: unreleased connection credit is exactly the unread
            // data of live streams.
            prop_assert_eq!(
                stats.recv_buffered,
                buffered,
                "side {}: connection holds {} unreleased bytes, its streams {}",
                who,
                stats.recv_buffered,
                buffered
            );
            prop_assert_eq!(stats.open_streams, known, "side {} stream count", who);
            // SPEC §11.1: data waiting on zero credit for a probe interval
            // has had a BLOCKED scheduled (1 s of slack for the
            // 50-per-second budget, §11.2).
            let failed = conn.error().is_some();
            let mut seen = HashSet::new();
            for (id, s) in stalled {
                seen.insert(id);
                let on_stream = s.send_window == 0;
                let stall = self.stalls.entry((who, id)).or_insert(Stall {
                    since: now,
                    bytes_sent: s.bytes_sent,
                    probes: if on_stream {
                        s.probes_sent
                    } else {
                        conn_probes
                    },
                    on_stream,
                });
                if stall.bytes_sent != s.bytes_sent || stall.on_stream != on_stream {
                    // It moved since: a new stall.
                    *stall = Stall {
                        since: now,
                        bytes_sent: s.bytes_sent,
                        probes: if on_stream {
                            s.probes_sent
                        } else {
                            conn_probes
                        },
                        on_stream,
                    };
                }
                let probes = if on_stream {
                    s.probes_sent
                } else {
                    conn_probes
                };
                let due = stall.since + config.probe_interval() + Duration::from_secs(1);
                prop_assert!(
                    failed || now < due || probes > stall.probes,
                    "side {} stream {}: data waiting on zero {} credit since {:?} ago, no BLOCKED",
                    who,
                    id,
                    if on_stream { "stream" } else { "connection" },
                    now - stall.since
                );
            }
            self.stalls
                .retain(|(w, id), _| *w != who || seen.contains(id));
            // SPEC §9.6: MAX_STREAMS bounds the peer's unreleased streams.
            prop_assert!(
                peer_streams <= u64::from(config.max_incoming_streams()),
                "side {} holds {} peer streams, limit {}",
                who,
                peer_streams,
                config.max_incoming_streams()
            );
        }
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> TestCaseResult {
        for op in ops {
            self.apply(op)?;
        }
        self.drive()
    }

    fn accept_all(&mut self) -> TestCaseResult {
        for who in [CLIENT, SERVER] {
            while self.accept(who)?.is_some() {}
        }
        Ok(())
    }

    /// Reads everything `who` has buffered on `id`; true once the stream
    /// ended (Finished, reset, connection lost).
    fn read_all(&mut self, who: usize, id: StreamId) -> Result<bool, TestCaseError> {
        loop {
            match self.read(who, id, usize::MAX)? {
                Some(0) => return Ok(false),
                Some(_) => {}
                None => return Ok(true),
            }
        }
    }

    /// Steps and reads until every stream in `pending` ended on its side,
    /// releasing each as it ends. Fails if the pair stops moving first.
    fn read_until_ended(&mut self, mut pending: Vec<(usize, StreamId)>) -> TestCaseResult {
        let mut idle_rounds = 0;
        for _ in 0..STALL_STEPS {
            let mut progress = false;
            let mut still = Vec::new();
            for (who, id) in pending {
                let before = self.model(who, id).read;
                if self.read_all(who, id)? {
                    self.release(who, id);
                    progress = true;
                } else {
                    progress |= self.model(who, id).read > before;
                    still.push((who, id));
                }
            }
            pending = still;
            progress |= self.step()?;
            if pending.is_empty() && !progress {
                return Ok(());
            }
            idle_rounds = if progress { 0 } else { idle_rounds + 1 };
            if idle_rounds > 2 {
                return fail(format!(
                    "stalled with streams still open: {pending:?}; client {:?}; server {:?}",
                    self.pair.client.stats(),
                    self.pair.server.stats()
                ));
            }
        }
        fail("read_until_ended did not finish".into())
    }

    /// Streams the application of `who` still holds.
    fn held(&self, who: usize) -> Vec<StreamId> {
        self.streams[who]
            .iter()
            .filter(|(_, m)| !m.released)
            .map(|(id, _)| *id)
            .collect()
    }
}

// ----- property 1 -----------------------------------------------------------

proptest! {
    // 256 cases of up to 121 operations, ~5.5 ms each in debug mode:
    // ~1.4 s.
    #![proptest_config(cases(256))]

    /// Random configs and operations on both sides, including resets,
    /// releases and a graceful close: after every step neither side reports
    /// a protocol error, receive buffers stay within the stream and
    /// connection windows, connection credit equals the streams' unread
    /// bytes, the peer-stream count stays within MAX_STREAMS, and every
    /// byte read is the byte written at that offset, once and in order.
    #[test]
    fn random_operations_keep_windows_credit_and_byte_order_intact(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 120),
        close in close_strategy(),
    ) {
        let ops = with_close(ops, close);
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                sim.read_all(who, id)?;
            }
        }
        sim.drive()?;
        if !sim.closed {
            // Liveness: a PING still round-trips after all of it.
            for who in [CLIENT, SERVER] {
                let done = sim.conn(who).pings_completed();
                sim.conn(who).ping();
                sim.drive()?;
                prop_assert!(!sim.conn(who).ping_in_flight(), "side {} PING unanswered", who);
                prop_assert_eq!(sim.conn(who).pings_completed(), done + 1);
            }
        }
    }
}

// ----- property 2 -----------------------------------------------------------

/// Writes dominate and reads are rare, so senders keep running into both
/// limits.
const PRESSING: Weights = Weights {
    write: 24,
    read: 6,
    ..ALL_OPS
};

proptest! {
    // 192 cases, ~5 ms each in debug mode (the ledger filter decodes and
    // re-encodes every frame): ~1 s.
    #![proptest_config(cases(192))]

    /// With every frame on the wire inspected: the DATA bytes a side sends
    /// on a stream never exceed the highest stream limit the receiver put on
    /// the wire (INITIAL_STREAM_WINDOW, then WINDOW_UPDATE), the total never
    /// exceeds the connection limit (CONNECTION_WINDOW, then WINDOW_UPDATE 0),
    /// new streams stay below MAX_STREAMS and open in id order, frames stay
    /// within MAX_FRAME_PAYLOAD, and no DATA follows the sender's FIN/RESET.
    #[test]
    fn a_sender_never_exceeds_the_credit_its_receiver_announced(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(PRESSING, 80),
        close in close_strategy(),
    ) {
        let ops = with_close(ops, close);
        let opts = Opts { forbid_resets: false, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        // Then everyone reads everything, which makes every sender use all
        // the credit it gets back.
        sim.accept_all()?;
        let pending: Vec<(usize, StreamId)> = [CLIENT, SERVER]
            .into_iter()
            .flat_map(|who| sim.held(who).into_iter().map(move |id| (who, id)))
            .collect();
        for &(who, id) in &pending {
            sim.finish(who, id)?;
        }
        sim.read_until_ended(pending)?;
        let ledger = sim.ledger.clone().expect("ledger installed");
        let ledger = ledger.borrow();
        prop_assert!(ledger.violations.is_empty(), "{:?}", ledger.violations);
        prop_assert!(ledger.dirs[CLIENT].settings_seen && ledger.dirs[SERVER].settings_seen);
    }
}

// ----- property 3 -----------------------------------------------------------

/// How the final drain treats a stream the application still holds.
#[derive(Copy, Clone, Debug)]
enum Drain {
    /// Finish, read to the end, then release.
    ReadToEnd,
    /// Drop the handle with whatever is unread.
    Release,
    /// Reset with CANCEL, then release.
    Reset,
}

fn drain_strategy() -> impl Strategy<Value = Vec<Drain>> {
    proptest::collection::vec(
        prop_oneof![
            2 => Just(Drain::ReadToEnd),
            1 => Just(Drain::Release),
            1 => Just(Drain::Reset),
        ],
        1..=8,
    )
}

impl Sim {
    /// Moves `2 * window` bytes from `from` to its peer over fresh streams,
    /// as many as the peer's window ratio and stream limit allow, reading
    /// as they arrive. Fails if the transfer stalls.
    fn transfer_twice_the_window(&mut self, from: usize) -> TestCaseResult {
        let to = 1 - from;
        // Frame splitting was exercised before; here the point is the
        // credit, and 100-byte deliveries of megabytes cost seconds.
        self.pair.chunk = self.pair.chunk.max(64 * 1024);
        let window = u64::from(self.configs[to].connection_window());
        let per_window = window / u64::from(self.configs[to].stream_window());
        let want = per_window.clamp(1, u64::from(self.configs[to].max_incoming_streams()));
        let mut ids = Vec::new();
        for _ in 0..want {
            match self.open(from)? {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        prop_assert!(
            !ids.is_empty(),
            "side {} cannot open a stream after the drain",
            from
        );
        let total = 2 * window;
        let share = total.div_ceil(ids.len() as u64);
        let mut idle_rounds = 0;
        for _ in 0..STALL_STEPS {
            let mut progress = false;
            for &id in &ids {
                let left = share - self.model(from, id).written;
                if left > 0 {
                    let len = (left as usize).min(256 * 1024);
                    progress |= self.write(from, id, len)? > 0;
                }
            }
            progress |= self.step()?;
            self.accept_all()?;
            let mut got = 0;
            for &id in &ids {
                if self.streams[to].contains_key(&id) {
                    let before = self.model(to, id).read;
                    prop_assert!(!self.read_all(to, id)?, "stream {} ended early", id);
                    progress |= self.model(to, id).read > before;
                    got += self.model(to, id).read;
                }
            }
            if got >= share * ids.len() as u64 {
                let mut pending = Vec::new();
                for &id in &ids {
                    for who in [from, to] {
                        self.finish(who, id)?;
                        pending.push((who, id));
                    }
                }
                return self.read_until_ended(pending);
            }
            idle_rounds = if progress { 0 } else { idle_rounds + 1 };
            prop_assert!(
                idle_rounds <= 2,
                "a transfer of twice the connection window stalled after {} of {} bytes; \
                 sender {:?}; receiver {:?}",
                got,
                total,
                self.conn(from).stats(),
                self.conn(to).stats()
            );
        }
        fail("transfer did not finish".into())
    }
}

proptest! {
    // 96 cases, ~18 ms each in debug mode (each ends with two transfers of
    // twice a connection window, up to 4 MiB each way): ~1.7 s.
    #![proptest_config(cases(96))]

    /// After random transfers, resets and releases, and a drain where every
    /// stream is finished or reset and released on both sides: no stream is
    /// left, no received byte is held, the sender's view of the connection
    /// credit equals the receiver's and is at least half a window, and
    /// twice the connection window then moves in each direction.
    #[test]
    fn credit_is_conserved_once_every_stream_is_closed_and_released(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 60),
        drain in drain_strategy(),
    ) {
        let opts = Opts { forbid_resets: false, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let mut pending = Vec::new();
        let mut n = 0;
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                match drain[n % drain.len()] {
                    Drain::ReadToEnd => {
                        sim.finish(who, id)?;
                        pending.push((who, id));
                    }
                    Drain::Release => sim.release(who, id),
                    Drain::Reset => {
                        sim.conn(who).reset(id, ErrorCode::CANCEL);
                        sim.model(who, id).reset_codes.push(ErrorCode::CANCEL.0);
                        sim.release(who, id);
                    }
                }
                n += 1;
            }
        }
        sim.check()?;
        sim.read_until_ended(pending)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams: {:?}", who, stats);
            prop_assert_eq!(stats.recv_buffered, 0, "side {} holds bytes: {:?}", who, stats);
            let peer = sim.conn(1 - who).stats();
            prop_assert_eq!(
                stats.send_window, peer.recv_window,
                "side {}: its send window and the peer's receive window disagree", who
            );
            let window = u64::from(sim.configs[1 - who].connection_window());
            prop_assert!(
                stats.send_window >= window / 2,
                "side {} may send {} of the peer's {} connection window",
                who, stats.send_window, window
            );
        }
        sim.transfer_twice_the_window(CLIENT)?;
        sim.transfer_twice_the_window(SERVER)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams", who);
            prop_assert_eq!(stats.recv_buffered, 0, "side {} holds bytes", who);
        }
    }
}

// ----- property 4 -----------------------------------------------------------

/// No resets or releases during the random phase (and no close).
const NO_ABORTS: Weights = Weights {
    reset: 0,
    release: 0,
    ..ALL_OPS
};

proptest! {
    // 192 cases, ~5.5 ms each in debug mode: ~1 s.
    #![proptest_config(cases(192))]

    /// Without resets, everything written and finished is delivered: once
    /// both sides finish every stream and read until Finished, each
    /// direction of each stream delivered exactly the bytes written, in
    /// order, and no stream was reset.
    #[test]
    fn everything_written_and_finished_is_delivered_in_order(
        client in config_strategy_with(false),
        server in config_strategy_with(false),
        chunk in chunk_strategy(),
        ops in ops_strategy(NO_ABORTS, 80),
    ) {
        let opts = Opts { forbid_resets: true, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let mut pending = Vec::new();
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                sim.finish(who, id)?;
                pending.push((who, id));
            }
        }
        sim.read_until_ended(pending)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            for id in sim.opened[who].clone() {
                let sent = sim.streams[who][&id].written;
                let reader = &sim.streams[1 - who][&id];
                prop_assert!(reader.read_finished, "stream {} from side {} never finished", id, who);
                prop_assert_eq!(reader.read, sent, "stream {} from side {}", id, who);
            }
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams", who);
        }
    }
}

// ----- property 5 -----------------------------------------------------------

impl Sim {
    /// Plays a client that breaks the server's credit: after the pair
    /// settles, DATA frames the client's core never wrote go onto the wire
    /// to the server, on the client stream `pick` chooses, `overshoot`
    /// bytes beyond the credit left for it (the lower of its stream credit,
    /// while the server still counts it, and the connection credit). The
    /// payload is the client's pattern at the server's offset, so bytes
    /// within credit that the server delivers read as the client's; frame
    /// sizes come from `sizes`, cycled.
    fn inject_credit_violation(
        &mut self,
        pick: &Index,
        overshoot: u64,
        sizes: &[u32],
    ) -> TestCaseResult {
        self.drive()?;
        if self.opened[CLIENT].is_empty() || self.pair.server.is_finished() {
            return Ok(());
        }
        let id = self.opened[CLIENT][pick.index(self.opened[CLIENT].len())];
        let server = &self.pair.server;
        let conn_left = server.stats().recv_window;
        let (offset, left) = match server.stream_stats(id) {
            Some(s) => (s.bytes_received, conn_left.min(s.recv_window)),
            None => (0, conn_left),
        };
        let total = left + overshoot;
        let max_frame = u64::from(self.configs[SERVER].max_frame_payload());
        let mut wire = bytes::BytesMut::new();
        let mut sent = 0u64;
        let mut i = 0;
        while sent < total {
            let size = u64::from(sizes[i % sizes.len()]).clamp(1, max_frame);
            i += 1;
            let n = size.min(total - sent);
            Frame::Data(creditmux::frame::Data {
                stream: id,
                fin: false,
                payload: pattern(key(id, CLIENT), offset + sent, n as usize).into(),
            })
            .encode(&mut wire);
            sent += n;
        }
        self.pair.to_server.inflight.extend_from_slice(&wire);
        // The server may read the bytes within credit as the client's.
        self.model(CLIENT, id).injected = offset + total;
        self.violated = true;
        Ok(())
    }
}

proptest! {
    // 128 cases, ~6 ms each in debug mode: ~0.8 s.
    #![proptest_config(cases(128))]

    /// A peer that sends beyond the credit it was granted, after random
    /// traffic, in frames of random sizes delivered in random pieces (so
    /// the frame that breaks the credit often arrives in parts, and odd
    /// reads take payloads straight off the wire): after every step the
    /// connection's unreleased bytes equal its streams' unread bytes
    /// (SPEC §9.7), the bytes read are the bytes sent within credit, the
    /// server ends with FLOW_CONTROL_ERROR whenever the connection credit
    /// was broken, and once everything readable is read and every stream
    /// released, the server holds no received byte.
    #[test]
    fn a_peer_breaking_credit_leaves_every_received_byte_accounted_for(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 60),
        pick in any::<Index>(),
        overshoot in prop_oneof![1u64..16, 16u64..70_000],
        sizes in proptest::collection::vec(1u32..70_000, 1..6),
    ) {
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let conn_left = sim.pair.server.stats().recv_window;
        sim.inject_credit_violation(&pick, overshoot, &sizes)?;
        let broke_connection_credit = sim.violated
            && sim.pair.server.stream_stats(sim.opened[CLIENT][pick.index(sim.opened[CLIENT].len())])
                .is_none_or(|s| s.recv_window >= conn_left);
        // Delivered in the chunk's pieces, read as they arrive, with the
        // server transmitting nothing meanwhile: reads release credit, but
        // no new limit is announced that would cover the injected bytes.
        loop {
            sim.accept_all()?;
            for id in sim.held(SERVER) {
                sim.read_all(SERVER, id)?;
            }
            if !sim.pair.deliver_one_way(true) {
                break;
            }
            sim.check()?;
        }
        if broke_connection_credit {
            prop_assert!(
                is_flow_control_error(sim.pair.server.error()),
                "the connection credit was broken, yet the server reports {:?}",
                sim.pair.server.error()
            );
        }
        sim.accept_all()?;
        for id in sim.held(SERVER) {
            sim.read_all(SERVER, id)?;
            sim.release(SERVER, id);
        }
        sim.drive()?;
        if sim.pair.server.is_finished() {
            let stats = sim.pair.server.stats();
            prop_assert_eq!(stats.recv_buffered, 0, "the server holds bytes: {:?}", stats);
        }
    }
}

// ----- property 6 -----------------------------------------------------------

proptest! {
    // 64 cases, ~10 ms each in debug mode.
    #![proptest_config(cases(64))]

    /// SPEC §11.1: data that waits on zero stream or connection credit for
    /// a probe interval has had a BLOCKED scheduled for that credit (the
    /// check after every step). Both sides open streams and keep writing;
    /// nobody reads, so every stream and then the connection run out of
    /// credit while time passes in random steps. The connection stays up
    /// (§10.4: only the streams stall).
    #[test]
    fn every_stall_is_probed(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        streams in 1usize..=12,
        advances in proptest::collection::vec(prop_oneof![1u16..=1500, 1500u16..=5000], 5..25),
    ) {
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        let mut ids = Vec::new();
        for who in [CLIENT, SERVER] {
            for _ in 0..streams {
                if let Some(id) = sim.open(who)? {
                    ids.push((who, id));
                }
            }
        }
        for ms in advances {
            for &(who, id) in &ids {
                sim.write(who, id, 300_000)?;
            }
            for _ in 0..4 {
                sim.step()?;
            }
            sim.apply(&Op::Advance(ms))?;
        }
        for who in [CLIENT, SERVER] {
            prop_assert!(sim.conn(who).error().is_none(), "{:?}", sim.conn(who).error());
        }
    }
}

// ----- regressions: the minimal cases the properties found ------------------

fn tiny_config(max_incoming_streams: u32) -> Config {
    Config::builder()
        .stream_window(1024)
        .connection_window(4096)
        .max_frame_payload(1024)
        .send_buffer(1024)
        .max_incoming_streams(max_incoming_streams)
        .build()
        .expect("valid config")
}

fn read_to_end(conn: &mut Connection, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match conn.read(id, usize::MAX) {
            Ok(ReadOutcome::Data(bytes)) => out.extend_from_slice(&bytes),
            Ok(ReadOutcome::Finished) => return out,
            other => panic!("stream {id} did not finish: {other:?}"),
        }
    }
}

/// Property 3 found it: a stream reset while it waited in the DATA queue
/// (finished, then released before its FIN went out) was never forgotten,
/// so the connection kept it, and a peer stream in that state would have
/// kept its stream-count credit, forever.
#[test]
fn a_stream_reset_while_queued_for_sending_is_forgotten_once_released() {
    let mut pair = Pair::new(tiny_config(1), tiny_config(1));
    pair.connect();
    let id = pair.server.open(pair.now).unwrap().unwrap();
    assert_eq!(pair.server.write(id, &[7; 1024]).unwrap(), 1024);
    pair.drive();
    pair.server.finish(id).unwrap();
    // Nothing received from the client yet: release resets with CANCEL.
    pair.server.release(id);
    pair.drive();
    let cid = pair.client.accept().expect("the stream arrived");
    pair.client.release(cid);
    pair.drive();
    assert_eq!(pair.server.stats().open_streams, 0);
    assert_eq!(pair.client.stats().open_streams, 0);
}

/// Property 3 found it: a stream opened and reset before its first frame
/// went out had used stream-count credit the peer never learned of, so with
/// MAX_STREAMS 1 the opener could never open a stream again.
#[test]
fn a_stream_reset_before_it_was_announced_returns_its_stream_credit() {
    let mut pair = Pair::new(tiny_config(1), tiny_config(1));
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.reset(id, ErrorCode::CANCEL);
    pair.client.release(id);
    pair.drive();
    let sid = pair.server.accept().expect("the id was announced");
    assert_eq!(
        pair.server.read(sid, 1),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    pair.server.release(sid);
    pair.drive();
    let again = pair.client.open(pair.now).unwrap();
    assert!(again.is_some(), "stream-count credit came back");
    assert!(pair.client.error().is_none() && pair.server.error().is_none());
}

/// Property 1 found it: the opening frame of a stream opened just before a
/// graceful close went out behind the GOAWAY (control frames first); the
/// peer, with no stream of its own, closed at once and the stream was lost.
#[test]
fn a_graceful_close_lets_a_stream_opened_just_before_it_complete() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.server.open(pair.now).unwrap().unwrap();
    pair.server.write(id, b"last words").unwrap();
    pair.server.finish(id).unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.client.error(), None);
    let cid = pair.client.accept().expect("the stream arrived");
    assert_eq!(read_to_end(&mut pair.client, cid), b"last words");
    pair.client.write(cid, b"ack").unwrap();
    pair.client.finish(cid).unwrap();
    pair.client.release(cid);
    pair.drive();
    assert_eq!(read_to_end(&mut pair.server, id), b"ack");
    pair.server.release(id);
    pair.drive();
    assert_eq!(
        pair.server.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
    assert!(matches!(
        pair.client.error(),
        Some(ConnectionError::ClosedByPeer {
            code: ErrorCode::NO_ERROR,
            ..
        })
    ));
}

/// Property 1 found it: after this side's graceful GOAWAY the peer closed
/// the transport once its streams were done (SPEC §13.2), but a closed
/// stream this side's application still held made that end of input read
/// as an abrupt `TransportClosed`.
#[test]
fn end_of_input_after_a_graceful_goaway_completes_the_shutdown() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.finish(sid).unwrap();
    pair.drive();
    assert_eq!(read_to_end(&mut pair.server, sid), b"");
    pair.server.release(sid);
    assert_eq!(read_to_end(&mut pair.client, id), b"");
    // The client's application still holds its closed stream: that does
    // not hold the close up (SPEC §13.2 counts closed streams, not
    // released ones), and the end of input that follows changes nothing.
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert!(pair.server.is_finished(), "the server drained at once");
    assert!(pair.client.is_finished(), "the client drained at once");
    pair.client.handle_eof(pair.now);
    assert_eq!(
        pair.client.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
}
