//! The simulation behind the property tests: two sans-IO endpoints joined
//! by the in-memory [`Pair`] under virtual time, a model of what each
//! application did, and the invariants checked after every step (SPEC
//! §8-§11).

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use creditmux::config::Config;
use creditmux::conn::invariants::InvariantChecker;
use creditmux::conn::{Connection, ReadOutcome};
use creditmux::error::{ConnectionError, Initiator, OpenError, StreamError};
use creditmux::frame::{ErrorCode, Frame, StreamId};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestCaseResult};

use super::pair::Pair;

pub mod extra;
pub mod ledger;
pub mod strategies;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use extra::*;
#[allow(unused_imports)]
pub use ledger::Ledger;
#[allow(unused_imports)]
pub use strategies::*;

// ----- the model ------------------------------------------------------------

/// What the test knows about one stream on one side.
#[derive(Debug, Default)]
pub struct StreamModel {
    /// Bytes `write` accepted: the pattern offset of the next write.
    pub written: u64,
    /// The offset up to which the test itself put this side's pattern on
    /// the wire, beyond its credit (property 5).
    pub injected: u64,
    /// Bytes `read` returned, all checked against the peer's pattern.
    pub read: u64,
    /// `finish` succeeded.
    pub finished: bool,
    /// `read` returned `Finished`.
    pub read_finished: bool,
    /// A read reported the stream reset (either side).
    pub reset_seen: bool,
    /// Codes this side's application passed to `reset`.
    pub reset_codes: Vec<u32>,
    /// `release` was called.
    pub released: bool,
}

#[derive(Copy, Clone)]
pub struct Opts {
    /// A RESET of any kind fails the property.
    pub forbid_resets: bool,
    /// Install the credit ledger (property 2) on the pipe. Properties 2-4
    /// use it; property 1 keeps the pipe unfiltered, carrying the sender's
    /// bytes as they are.
    pub ledger: bool,
}

pub struct Sim {
    pub pair: Pair,
    pub configs: [Config; 2],
    pub streams: [BTreeMap<StreamId, StreamModel>; 2],
    /// Ids each side opened, in order.
    pub opened: [Vec<StreamId>; 2],
    /// Highest id each side accepted.
    pub last_accepted: [Option<StreamId>; 2],
    pub closed: bool,
    /// The protocol's invariants (conn::invariants), one per side.
    pub checkers: [InvariantChecker; 2],
    /// The test played a client that broke the server's credit (property
    /// 5): from then on the server may fail with FLOW_CONTROL_ERROR, the
    /// client with its GOAWAY, and streams may be reset for DATA after FIN.
    pub violated: bool,
    pub eof: [bool; 2],
    pub opts: Opts,
    pub ledger: Option<Rc<RefCell<Ledger>>>,
}

pub fn conn_of(pair: &mut Pair, who: usize) -> &mut Connection {
    if who == CLIENT {
        &mut pair.client
    } else {
        &mut pair.server
    }
}

pub fn is_flow_control_error(err: Option<&ConnectionError>) -> bool {
    matches!(
        err,
        Some(ConnectionError::ProtocolViolation {
            code: ErrorCode::FLOW_CONTROL_ERROR,
            ..
        })
    )
}

pub fn fail(msg: String) -> TestCaseResult {
    Err(TestCaseError::fail(msg))
}

impl Sim {
    pub fn new(client: Config, server: Config, chunk: usize, opts: Opts) -> Sim {
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
            checkers: [InvariantChecker::new(), InvariantChecker::new()],
            eof: [false, false],
            opts,
            ledger,
        }
    }

    pub fn conn(&mut self, who: usize) -> &mut Connection {
        conn_of(&mut self.pair, who)
    }

    /// A stream of `who` that the application still holds.
    pub fn pick(&self, who: usize, index: &Index) -> Option<StreamId> {
        let live: Vec<StreamId> = self.streams[who]
            .iter()
            .filter(|(_, m)| !m.released)
            .map(|(id, _)| *id)
            .collect();
        (!live.is_empty()).then(|| live[index.index(live.len())])
    }

    pub fn apply(&mut self, op: &Op) -> TestCaseResult {
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
                    let now = self.pair.now;
                    self.conn(who).reset(now, id, ErrorCode(code));
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
                let now = self.pair.now;
                self.conn(who).ping(now);
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

    pub fn model(&mut self, who: usize, id: StreamId) -> &mut StreamModel {
        self.streams[who].entry(id).or_default()
    }

    pub fn open(&mut self, who: usize) -> Result<Option<StreamId>, TestCaseError> {
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

    pub fn accept(&mut self, who: usize) -> Result<Option<StreamId>, TestCaseError> {
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

    pub fn write(&mut self, who: usize, id: StreamId, len: usize) -> Result<usize, TestCaseError> {
        // Never build more than fits (plus a little, to see `Ok(0)`).
        let len = len.min(self.conn(who).send_capacity(id) + 16);
        let off = self.model(who, id).written;
        let data = pattern(key(id, who), off, len);
        let now = self.pair.now;
        let result = self.conn(who).write(now, id, &data);
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
    pub fn read(
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
        let now = self.pair.now;
        let mut result = self.conn(who).read(now, id, max);
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
                    let now = self.pair.now;
                    result = self.conn(who).read(now, id, max);
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

    pub fn finish(&mut self, who: usize, id: StreamId) -> TestCaseResult {
        let now = self.pair.now;
        match self.conn(who).finish(now, id) {
            Ok(()) => self.model(who, id).finished = true,
            Err(err) => self.stream_error(who, id, err, false)?,
        }
        self.check()
    }

    pub fn release(&mut self, who: usize, id: StreamId) {
        let now = self.pair.now;
        self.conn(who).release(now, id);
        self.model(who, id).released = true;
    }

    /// Judges a stream error: a reset must come from a reset some
    /// application asked for (or from a timeout or a close), never from a
    /// protocol complaint between two correct peers.
    ///
    /// `read` says a read reported it: then no data may follow. A reset
    /// that a write reports may still leave data to read (SPEC §8.7: the
    /// peer's RESET after its FIN keeps its finished direction readable).
    pub fn stream_error(
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

    pub fn step(&mut self) -> Result<bool, TestCaseError> {
        let moved = self.pair.step();
        self.deliver_eof();
        self.check()?;
        Ok(moved)
    }

    pub fn drive(&mut self) -> TestCaseResult {
        for _ in 0..STALL_STEPS {
            if !self.step()? {
                return Ok(());
            }
        }
        fail("the pair did not settle".into())
    }

    /// A finished side's driver would shut the transport down once its
    /// last bytes are out: the peer sees end of file.
    pub fn deliver_eof(&mut self) {
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
    pub fn check(&mut self) -> TestCaseResult {
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
            let closed = self.closed;
            let violated = self.violated;
            let conn = if who == CLIENT {
                &self.pair.client
            } else {
                &self.pair.server
            };
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
            // The protocol's invariants, as the model in proto/model has
            // them (windows, conservation, control reserve, probes).
            let known = ids
                .iter()
                .filter(|&&id| conn.stream_stats(id).is_some())
                .count() as u64;
            let open = conn.stats().open_streams;
            if let Err(violation) = self.checkers[who].check(conn, now, ids.iter().copied(), true) {
                return fail(format!("side {who}: {violation}"));
            }
            // The model knows every stream either side opened.
            prop_assert_eq!(open, known, "side {} stream count", who);
        }
        Ok(())
    }

    pub fn run(&mut self, ops: &[Op]) -> TestCaseResult {
        for op in ops {
            self.apply(op)?;
        }
        self.drive()
    }

    pub fn accept_all(&mut self) -> TestCaseResult {
        for who in [CLIENT, SERVER] {
            while self.accept(who)?.is_some() {}
        }
        Ok(())
    }

    /// Reads everything `who` has buffered on `id`; true once the stream
    /// ended (Finished, reset, connection lost).
    pub fn read_all(&mut self, who: usize, id: StreamId) -> Result<bool, TestCaseError> {
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
    pub fn read_until_ended(&mut self, mut pending: Vec<(usize, StreamId)>) -> TestCaseResult {
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
    pub fn held(&self, who: usize) -> Vec<StreamId> {
        self.streams[who]
            .iter()
            .filter(|(_, m)| !m.released)
            .map(|(id, _)| *id)
            .collect()
    }
}
