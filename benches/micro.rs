//! Micro-benchmarks of the sans-IO core: the frame codec, credit accounting
//! and the DATA scheduler, each measured per frame.
//!
//! ```sh
//! cargo bench --bench micro              # full run, about a minute
//! cargo bench --bench micro -- --test    # every benchmark once, a few seconds
//! cargo bench --bench micro -- scheduler # one group
//! ```
//!
//! Groups (every time is per frame, or per frame's worth of accounting):
//!
//! - `encode`: [`Frame::encode`] into a reused `BytesMut`: DATA with a
//!   16 KiB and a 64 B payload (the payload is copied), the DATA header
//!   alone (what the connection writes, handing the payload over by
//!   reference), WINDOW_UPDATE and PING.
//! - `decode`: [`FrameDecoder::decode_next`] taking frames off the front of
//!   a buffer that holds many frames of one kind, for the same frame types,
//!   plus `mixed`: a run of DATA (16 KiB and 64 B), WINDOW_UPDATE (stream
//!   and connection), BLOCKED, MAX_STREAMS, RESET and PING frames decoded
//!   from one fresh buffer. Only the decoding is timed; filling the input
//!   buffers is not. For the single-kind benchmarks the input buffer is
//!   already shared, as a read buffer is after its first frame: `bytes`
//!   allocates once per buffer when it is first split, a per-buffer cost
//!   that `mixed` shows spread over its 1,024 frames.
//! - `credit`: [`RecvCredit`] and [`SendCredit`] on the hot path, at stream
//!   and connection level together. `recv` is one 16 KiB DATA frame
//!   arriving and being read (`receive`, `release`, and `announce` when an
//!   update is due); `send` is one frame going out (`available`, `consume`,
//!   and `raise` when a WINDOW_UPDATE would have come).
//! - `scheduler`: [`Connection::poll_transmit`] producing one 16 KiB DATA
//!   frame (and the [`TransmitBuf`] handing it over) on a client with 1,
//!   100, 1,000 or 10,000 open streams, every one with data queued and
//!   credit, so each frame is one round-robin pick among that many ready
//!   streams; and 10,000 streams spread over the eight urgencies, half of
//!   each urgency not incremental (`_mixed_priorities`). The client and server are handshaken in memory; the client is
//!   then fed WINDOW_UPDATEs, as from the server, granting stream and
//!   connection credit up to the largest value a frame may carry, so credit
//!   never runs out, and the send buffers are refilled between timed
//!   batches. Payloads are slices of one shared 1 MiB `Bytes`, queued with
//!   `write_bytes`, so no payload byte is copied: the time is the
//!   scheduler's and the connection's bookkeeping, not memcpy's.
//!
//! Criterion does not count allocations, so before each group is measured
//! a counting global allocator (defined below, for this binary only) runs
//! every benchmark of the group 10,000 times and prints `allocs/frame`:
//! heap allocations (`alloc`, `alloc_zeroed` and `realloc` calls) divided
//! by the frames processed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use creditmux::Config;
use creditmux::conn::{Connection, Priority, Side, TransmitBuf};
use creditmux::flow::{RecvCredit, SendCredit};
use creditmux::frame::{
    Blocked, BlockedOn, Data, Decoded, ErrorCode, Frame, FrameDecoder, MAX_CREDIT, MaxStreams,
    Ping, Reset, StreamId, WindowUpdate,
};
use criterion::{Criterion, criterion_group, criterion_main};

// ----- allocation counting --------------------------------------------

/// The system allocator, counting every allocation it makes.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counter has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Frames each benchmark processes for its `allocs/frame` line.
const ALLOC_SAMPLE: u64 = 10_000;

/// Time and allocations of one timed region; setup outside it is in neither.
#[derive(Default)]
struct Measured {
    elapsed: Duration,
    allocations: u64,
}

impl Measured {
    /// Runs `op` as a timed region and adds its time and allocations.
    fn add(&mut self, op: impl FnOnce()) {
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        op();
        self.elapsed += start.elapsed();
        self.allocations += ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    }
}

/// A benchmark: processes the given number of frames, timing only the work
/// itself. State (buffers, connections) lives in the closure and carries
/// over from one call to the next.
type Run<'a> = Box<dyn FnMut(u64) -> Measured + 'a>;

/// Prints `allocs/frame` for every benchmark of a group, then measures them.
fn run_group(c: &mut Criterion, group: &str, mut benches: Vec<(String, Run<'_>)>) {
    for (id, run) in &mut benches {
        let measured = run(ALLOC_SAMPLE);
        println!(
            "{group}/{id}: {:.4} allocs/frame ({} allocations over {ALLOC_SAMPLE} frames)",
            measured.allocations as f64 / ALLOC_SAMPLE as f64,
            measured.allocations,
        );
    }
    let mut g = c.benchmark_group(group);
    for (id, mut run) in benches {
        g.bench_function(id, |b| b.iter_custom(|iters| run(iters).elapsed));
    }
    g.finish();
}

// ----- frames ----------------------------------------------------------

/// The default (and usual) maximum frame payload.
const MAX_PAYLOAD: u32 = 16 * 1024;

fn stream(id: u32) -> StreamId {
    StreamId::new(id).expect("a valid stream id")
}

fn data_frame(len: usize) -> Frame {
    Frame::Data(Data {
        stream: stream(1),
        fin: false,
        payload: Bytes::from(vec![0xa5; len]),
    })
}

fn window_update_frame() -> Frame {
    Frame::WindowUpdate(WindowUpdate {
        stream: stream(1),
        limit: 1 << 40,
    })
}

fn ping_frame() -> Frame {
    Frame::Ping(Ping {
        ack: false,
        payload: *b"12345678",
    })
}

fn encode_run<'a>(frame: Frame) -> Run<'a> {
    let mut dst = BytesMut::with_capacity(frame.encoded_len());
    Box::new(move |frames| {
        let mut m = Measured::default();
        m.add(|| {
            for _ in 0..frames {
                black_box(&frame).encode(&mut dst);
                black_box(&dst);
                dst.clear();
            }
        });
        m
    })
}

fn header_run<'a>(len: usize) -> Run<'a> {
    let Frame::Data(data) = data_frame(len) else {
        unreachable!("data_frame builds DATA")
    };
    let mut dst = BytesMut::with_capacity(64);
    Box::new(move |frames| {
        let mut m = Measured::default();
        m.add(|| {
            for _ in 0..frames {
                dst.extend_from_slice(&black_box(&data).header().encode());
                black_box(&dst);
                dst.clear();
            }
        });
        m
    })
}

fn encode(c: &mut Criterion) {
    run_group(
        c,
        "encode",
        vec![
            ("data_16k".into(), encode_run(data_frame(16 * 1024))),
            ("data_64b".into(), encode_run(data_frame(64))),
            ("data_header_only".into(), header_run(16 * 1024)),
            ("window_update".into(), encode_run(window_update_frame())),
            ("ping".into(), encode_run(ping_frame())),
        ],
    );
}

/// Decodes frames off buffers that each hold `frames_per_buffer` encoded
/// copies of `template`'s frames, refilling the buffer (untimed) when empty.
/// With `pre_share`, each fresh buffer is made shared before timing starts.
fn decode_run<'a>(template: Vec<Frame>, copies: usize, pre_share: bool) -> Run<'a> {
    let mut encoded = BytesMut::new();
    for _ in 0..copies {
        for frame in &template {
            frame.encode(&mut encoded);
        }
    }
    let encoded = encoded.freeze();
    let frames_per_buffer = (template.len() * copies) as u64;
    let mut decoder = FrameDecoder::new(MAX_PAYLOAD);
    let mut src = BytesMut::new();
    let mut left_in_buffer = 0u64;
    Box::new(move |frames| {
        let mut m = Measured::default();
        let mut left = frames;
        while left > 0 {
            if left_in_buffer == 0 {
                src = BytesMut::from(&encoded[..]);
                if pre_share {
                    drop(src.split_to(0));
                }
                left_in_buffer = frames_per_buffer;
            }
            let n = left.min(left_in_buffer);
            m.add(|| {
                for _ in 0..n {
                    match decoder.decode_next(&mut src) {
                        Ok(Some(Decoded::Frame(frame))) => {
                            black_box(frame);
                        }
                        other => panic!("expected a frame, got {other:?}"),
                    }
                }
            });
            left -= n;
            left_in_buffer -= n;
        }
        m
    })
}

fn mixed_frames() -> Vec<Frame> {
    vec![
        data_frame(16 * 1024),
        data_frame(64),
        window_update_frame(),
        Frame::WindowUpdate(WindowUpdate {
            stream: StreamId::CONNECTION,
            limit: 1 << 44,
        }),
        Frame::Blocked(Blocked {
            on: BlockedOn::Stream(stream(3)),
            limit: 1 << 20,
        }),
        Frame::MaxStreams(MaxStreams { count: 200 }),
        Frame::Reset(Reset::both(stream(5), ErrorCode::CANCEL)),
        ping_frame(),
    ]
}

fn decode(c: &mut Criterion) {
    run_group(
        c,
        "decode",
        vec![
            (
                "data_16k".into(),
                decode_run(vec![data_frame(16 * 1024)], 64, true),
            ),
            (
                "data_64b".into(),
                decode_run(vec![data_frame(64)], 1024, true),
            ),
            (
                "window_update".into(),
                decode_run(vec![window_update_frame()], 1024, true),
            ),
            ("ping".into(), decode_run(vec![ping_frame()], 1024, true)),
            // 1024 frames, about 2.1 MiB, in one fresh buffer.
            ("mixed".into(), decode_run(mixed_frames(), 128, false)),
        ],
    );
}

// ----- credit ----------------------------------------------------------

const FRAME: u64 = 16 * 1024;
const STREAM_WINDOW: u64 = 256 * 1024;
const CONNECTION_WINDOW: u64 = 8 * 1024 * 1024;

/// One DATA frame arriving and being read, at stream and connection level.
fn recv_credit_run<'a>() -> Run<'a> {
    let mut stream = RecvCredit::new(STREAM_WINDOW);
    let mut connection = RecvCredit::new(CONNECTION_WINDOW);
    Box::new(move |frames| {
        let mut m = Measured::default();
        m.add(|| {
            for _ in 0..frames {
                let n = black_box(FRAME);
                stream.receive(n).expect("within the stream credit");
                connection.receive(n).expect("within the connection credit");
                if stream.release(n) {
                    black_box(stream.announce());
                }
                if connection.release(n) {
                    black_box(connection.announce());
                }
            }
        });
        m
    })
}

/// One DATA frame going out; when credit runs short the peer's
/// WINDOW_UPDATE is applied, as it would arrive.
fn send_credit_run<'a>() -> Run<'a> {
    let mut stream = SendCredit::new(STREAM_WINDOW);
    let mut connection = SendCredit::new(CONNECTION_WINDOW);
    Box::new(move |frames| {
        let mut m = Measured::default();
        m.add(|| {
            for _ in 0..frames {
                let want = black_box(FRAME);
                if stream.available() < want {
                    black_box(stream.raise(stream.sent() + STREAM_WINDOW));
                }
                if connection.available() < want {
                    black_box(connection.raise(connection.sent() + CONNECTION_WINDOW));
                }
                let n = want.min(stream.available()).min(connection.available());
                stream.consume(n);
                connection.consume(n);
            }
        });
        m
    })
}

fn credit(c: &mut Criterion) {
    run_group(
        c,
        "credit",
        vec![
            ("recv".into(), recv_credit_run()),
            ("send".into(), send_credit_run()),
        ],
    );
}

// ----- scheduler -------------------------------------------------------

/// Size of the shared buffer every stream queues slices of.
const PAYLOAD_LEN: usize = 1 << 20;

/// Bytes each stream may have queued; kept full between timed batches.
const SEND_BUFFER: u32 = 16 << 20;

/// The 16 KiB frames a stream can send from a full send buffer, with a
/// margin for the chunk a refill cannot top up.
const FRAMES_PER_REFILL: u64 = (SEND_BUFFER as u64 - PAYLOAD_LEN as u64) / FRAME / 2;

/// Moves bytes between two connections until neither has anything to send.
fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
    let mut out = TransmitBuf::new();
    for _ in 0..100 {
        let mut moved = false;
        for a_sends in [true, false] {
            let (from, to) = if a_sends {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            from.poll_transmit(now, &mut out, usize::MAX);
            if !out.is_empty() {
                let mut input = BytesMut::from(&out.take_contiguous()[..]);
                to.handle_input(now, &mut input);
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the pair did not settle");
}

/// A client with `streams` open streams, each with a full send buffer and
/// more credit than it will ever use.
struct Scheduler {
    client: Connection,
    ids: Vec<StreamId>,
    now: Instant,
    out: TransmitBuf,
    /// What every stream queues: slices of it are sent, never copied.
    payload: Bytes,
}

impl Scheduler {
    /// `mixed`: the streams spread over every urgency, every other one
    /// not incremental (served one at a time, by id, within its level).
    fn new(streams: u32, mixed: bool) -> Scheduler {
        let now = Instant::now();
        let client = Config::builder()
            .send_buffer(SEND_BUFFER)
            .build()
            .expect("a valid client config");
        let server = Config::builder()
            .max_incoming_streams(streams)
            .build()
            .expect("a valid server config");
        let mut client = Connection::new(Side::Client, client, now);
        let mut server = Connection::new(Side::Server, server, now);
        exchange(&mut client, &mut server, now);
        assert!(client.is_established() && server.is_established());

        let ids: Vec<StreamId> = (0..streams)
            .map(|_| {
                client
                    .open(now)
                    .expect("open succeeds")
                    .expect("within the server's stream limit")
            })
            .collect();
        // The server's WINDOW_UPDATEs, granting the most a frame can carry.
        let mut updates = BytesMut::new();
        for stream in ids.iter().copied().chain([StreamId::CONNECTION]) {
            Frame::WindowUpdate(WindowUpdate {
                stream,
                limit: MAX_CREDIT,
            })
            .encode(&mut updates);
        }
        client.handle_input(now, &mut updates);
        assert!(client.error().is_none(), "{:?}", client.error());
        if mixed {
            for (i, &id) in ids.iter().enumerate() {
                client.set_priority(now, id, Priority::new((i % 8) as u8, (i / 8) % 2 == 0));
            }
        }

        let mut scheduler = Scheduler {
            client,
            ids,
            now,
            out: TransmitBuf::new(),
            payload: Bytes::from(vec![0x5a; PAYLOAD_LEN]),
        };
        scheduler.refill();
        // One round, so every stream's opening frame is behind us.
        for _ in 0..streams {
            scheduler.send_one_frame();
        }
        scheduler.refill();
        scheduler
    }

    /// Tops every send buffer up with whole copies of the shared payload.
    fn refill(&mut self) {
        for &id in &self.ids {
            while self.client.send_capacity(id) >= PAYLOAD_LEN {
                let mut chunk = self.payload.clone();
                self.client
                    .write_bytes(self.now, id, &mut chunk)
                    .expect("the stream accepts data");
            }
        }
    }

    /// Produces one DATA frame and hands it to the (imaginary) transport.
    fn send_one_frame(&mut self) {
        self.client.poll_transmit(self.now, &mut self.out, 1);
        self.out.advance(self.out.len());
    }

    fn run(&mut self, frames: u64) -> Measured {
        let mut m = Measured::default();
        let batch = FRAMES_PER_REFILL * self.ids.len() as u64;
        let mut left = frames;
        while left > 0 {
            let n = left.min(batch);
            let before = self.client.stats();
            m.add(|| {
                for _ in 0..n {
                    self.send_one_frame();
                }
            });
            // Every call produced exactly one full DATA frame.
            let after = self.client.stats();
            assert_eq!(after.frames_sent - before.frames_sent, n);
            assert_eq!(after.data_bytes_sent - before.data_bytes_sent, n * FRAME);
            left -= n;
            self.refill();
        }
        m
    }
}

fn scheduler(c: &mut Criterion) {
    let benches = [
        (1, false),
        (100, false),
        (1_000, false),
        (10_000, false),
        (10_000, true),
    ]
    .into_iter()
    .map(|(streams, mixed)| {
        let mut scheduler = Scheduler::new(streams, mixed);
        let run: Run<'_> = Box::new(move |frames| scheduler.run(frames));
        let priorities = if mixed { "_mixed_priorities" } else { "" };
        (format!("data_frame/{streams}_streams{priorities}"), run)
    })
    .collect();
    run_group(c, "scheduler", benches);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = micro;
    config = config();
    targets = encode, decode, credit, scheduler
}
criterion_main!(micro);
