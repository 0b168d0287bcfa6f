//! What the property tests draw: configurations, pipe chunk sizes, and
//! sequences of operations; and the byte pattern every stream carries.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use creditmux::config::Config;
use creditmux::frame::StreamId;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;

pub const CLIENT: usize = 0;
pub const SERVER: usize = 1;

/// Steps after which a phase that should complete is declared stalled.
pub const STALL_STEPS: usize = 200_000;

/// `n` cases, unless `PROPTEST_CASES` asks for another number (a deeper
/// local run: `PROPTEST_CASES=5000 cargo test --release --test props_traffic`).
pub fn cases(n: u32) -> ProptestConfig {
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
pub const BASE_LEN: usize = 1_048_573;

pub fn base() -> &'static [u8] {
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
pub fn key(id: StreamId, sender: usize) -> u64 {
    (u64::from(id.get()) << 1) | sender as u64
}

pub fn start_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % BASE_LEN
}

/// Bytes `off..off + len` of the pattern `key`.
pub fn pattern(key: u64, off: u64, len: usize) -> Vec<u8> {
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
pub fn matches_pattern(key: u64, off: u64, data: &[u8]) -> bool {
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
pub fn config_strategy_with(half_close: bool) -> impl Strategy<Value = Config> {
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
pub fn config_strategy() -> impl Strategy<Value = Config> {
    config_strategy_with(true)
}

/// Bytes moved per direction and pipe step: small values split frames
/// across deliveries, large ones deliver many frames at once.
pub fn chunk_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![100usize..1000, 1000usize..70_000]
}

// ----- operations -----------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Op {
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
pub struct Weights {
    pub open: u32,
    pub accept: u32,
    pub write: u32,
    pub read: u32,
    pub finish: u32,
    pub reset: u32,
    pub release: u32,
    pub ping: u32,
    pub step: u32,
    pub drive: u32,
    pub advance: u32,
    pub timer: u32,
}

pub const ALL_OPS: Weights = Weights {
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

pub fn side() -> impl Strategy<Value = usize> {
    0usize..2
}

/// Mostly small sizes, sometimes a large one that exceeds windows and
/// buffers.
pub fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..64,
        3 => 64usize..8192,
        2 => 8192usize..300_000,
    ]
}

pub fn ops_strategy(w: Weights, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
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
pub fn close_strategy() -> impl Strategy<Value = Option<(usize, Index)>> {
    proptest::option::weighted(0.3, (side(), any::<Index>()))
}

pub fn with_close(mut ops: Vec<Op>, close: Option<(usize, Index)>) -> Vec<Op> {
    if let Some((who, at)) = close {
        ops.insert(at.index(ops.len() + 1), Op::Close(who));
    }
    ops
}
