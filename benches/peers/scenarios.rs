//! The scenarios, written once against the `Server`/`Client` interface of
//! transports.rs and run against every implementation. A scenario is one
//! or more measurements ("pairs": one server side, one client side, one
//! connection), each yielding one or more metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cpu::CpuMeter;
use crate::delay::Link;
use crate::harness::{BoxFut, Failure, Outcome, Res, ServerRuntime, run_pair, run_pair_on};
use crate::path::PathThread;
use crate::transports::{BoxStream, Client, Connector, Kind, Limits, Listener, Server, s};

mod many;
mod mt;
mod rr_load;
mod streams;

pub use mt::MtLoad;
pub use rr_load::RrLoad;
use rr_load::{LOAD_POINTS, rr_load_metrics, rr_under_load};
use streams::{
    CHUNK, PAYLOAD, REQUEST_BYTE, echo, echo_or_sink, finish_and_ack, join_all, join_each,
    mib_per_s, sink, sink_yielding, write_bytes,
};

/// Sizes and counts of one bench mode.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub bulk_bytes: usize,
    /// many: each stream's bytes with 100 streams.
    pub many_100_bytes: usize,
    /// many: each stream's bytes with 1,000 streams.
    pub many_1000_bytes: usize,
    pub rr_rounds: usize,
    pub rr_load: RrLoad,
    pub open_count: usize,
    pub open_in_flight: usize,
    pub idle_streams: usize,
    /// sessions: concurrent sessions (connections), each with
    /// [`SESSION_STREAMS`] streams.
    pub sessions: usize,
    pub hol_bytes: usize,
    pub hol_blocked_bytes: usize,
    /// hol: a shorter timeout for stream B than the measurements' own,
    /// if any: B's bytes take well under a second, the close after them
    /// up to 1 s (creditmux native QUIC waits for the parked stream A),
    /// and h2 with its default windows never moves them.
    pub hol_timeout: Option<Duration>,
    /// delay: the single stream's bytes.
    pub delay_bytes: usize,
    /// delay: each of the 16 streams' bytes.
    pub delay_many_bytes: usize,
    /// delay: a stream stops writing once this much time has passed, so
    /// that a window-bound implementation ends in time (its MiB/s counts
    /// what it moved).
    pub delay_cap: Duration,
    /// delay: the one-way delays.
    pub delays: &'static [DelayPoint],
    /// mt: how long the load runs before and while it is measured.
    pub mt: MtLoad,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        bulk_bytes: 512 << 20,
        many_100_bytes: 8 << 20,
        many_1000_bytes: 1 << 20,
        rr_rounds: 100_000,
        rr_load: RrLoad {
            rounds: 2000,
            ramp: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            stall: Duration::from_secs(2),
        },
        open_count: 10_000,
        open_in_flight: 64,
        idle_streams: 1000,
        sessions: 2000,
        hol_bytes: 64 << 20,
        hol_blocked_bytes: 1 << 20,
        hol_timeout: None,
        delay_bytes: 64 << 20,
        delay_many_bytes: 4 << 20,
        delay_cap: Duration::from_secs(8),
        delays: &[DELAY_25MS, DELAY_5MS],
        mt: MtLoad {
            warmup: Duration::from_millis(500),
            measured: Duration::from_secs(3),
            stall: Duration::from_secs(5),
        },
    };

    pub const QUICK: Sizes = Sizes {
        bulk_bytes: 32 << 20,
        many_100_bytes: 128 << 10,
        many_1000_bytes: 16 << 10,
        rr_rounds: 2000,
        // With creditmux's window variants 22 measurements: short, so
        // that the smoke fits its budget.
        rr_load: RrLoad {
            rounds: 100,
            ramp: Duration::from_millis(50),
            cap: Duration::from_millis(250),
            stall: Duration::from_millis(500),
        },
        open_count: 1000,
        open_in_flight: 64,
        idle_streams: 200,
        sessions: 200,
        hol_bytes: 8 << 20,
        hol_blocked_bytes: 1 << 20,
        hol_timeout: Some(Duration::from_secs(2)),
        delay_bytes: 2 << 20,
        delay_many_bytes: 128 << 10,
        delay_cap: Duration::from_secs(1),
        delays: &[DELAY_25MS],
        mt: MtLoad {
            warmup: Duration::from_millis(100),
            measured: Duration::from_millis(300),
            stall: Duration::from_millis(500),
        },
    };
}

/// sessions: the streams of each session.
const SESSION_STREAMS: usize = 4;

/// sessions: the bytes each stream echoes before it goes idle.
const SESSION_ECHO: usize = 4096;

/// sessions: how many sessions are being set up at a time.
const SESSIONS_IN_FLIGHT: usize = 16;

/// The delay scenario's link rate, each way: 1 Gbit/s.
const DELAY_RATE: u64 = 1_000_000_000;

/// The delay scenario's many-stream count.
const DELAY_STREAMS: usize = 16;

/// A one-way delay of the delay scenario, with its two metrics (1 stream
/// and 16 streams).
#[derive(Debug)]
pub struct DelayPoint {
    pub one_way: Duration,
    pub single: Metric,
    pub many: Metric,
}

const DELAY_25MS: DelayPoint = DelayPoint {
    one_way: Duration::from_millis(25),
    single: metric("d25ms_1_stream_mib_per_s", "25 ms 1 stream MiB/s", true, 1),
    many: metric(
        "d25ms_16_streams_mib_per_s",
        "25 ms 16 streams MiB/s",
        true,
        1,
    ),
};

const DELAY_5MS: DelayPoint = DelayPoint {
    one_way: Duration::from_millis(5),
    single: metric("d5ms_1_stream_mib_per_s", "5 ms 1 stream MiB/s", true, 1),
    many: metric(
        "d5ms_16_streams_mib_per_s",
        "5 ms 16 streams MiB/s",
        true,
        1,
    ),
};

/// One reported number.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// JSON key.
    pub key: &'static str,
    /// Table column.
    pub label: &'static str,
    pub higher_is_better: bool,
    /// Decimals shown in the table.
    pub decimals: usize,
    /// The table shows its swing across runs: (max − min) ÷ median.
    pub swing: bool,
}

const fn metric(
    key: &'static str,
    label: &'static str,
    higher_is_better: bool,
    decimals: usize,
) -> Metric {
    Metric {
        key,
        label,
        higher_is_better,
        decimals,
        swing: false,
    }
}

impl Metric {
    /// The same metric, with its swing across runs in the table.
    const fn with_swing(self) -> Metric {
        Metric {
            swing: true,
            ..self
        }
    }
}

/// One measurement: a connection, a server side and a client side.
pub struct Pair {
    pub metrics: Vec<Metric>,
    /// The heading of a table of its own for its metrics; `None`: the
    /// metrics are columns of the scenario's one table.
    pub table: Option<String>,
    /// Per metric its value or why it has none; or why the measurement
    /// has none at all.
    pub run: Box<dyn Fn() -> Outcome<Vec<Outcome<f64>>>>,
}

/// Every value of a measurement that has them all.
fn each(values: Vec<f64>) -> Vec<Outcome<f64>> {
    values.into_iter().map(Ok).collect()
}

/// A metric computed from the others of the same run.
pub struct Derived {
    pub metric: Metric,
    /// Indexes (into the scenario's metrics) of the inputs.
    pub inputs: Vec<usize>,
    pub compute: fn(&[f64]) -> f64,
}

pub struct Scenario {
    pub title: String,
    pub pairs: Vec<Pair>,
    pub derived: Option<Derived>,
}

pub const NAMES: [&str; 10] = [
    "bulk",
    "many",
    "mt",
    "rr",
    "rr-under-load",
    "open",
    "idle",
    "sessions",
    "hol",
    "delay",
];

/// A way of running an implementation through a scenario; each variant
/// is a row of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Every stream opened alike.
    Default,
    /// The request/response stream opened with [`Client::open_urgent`].
    RrUrgent,
    /// As `RrUrgent`, with creditmux's windows fixed: this many bytes for
    /// the connection, a quarter of it per stream, no tuning. Less in
    /// flight, so less for the urgent request to wait behind.
    RrUrgentWindow(u32),
}

impl Variant {
    /// The name in the JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::RrUrgent => "rr-urgent",
            Variant::RrUrgentWindow(1048576) => "rr-urgent-1mib-window",
            Variant::RrUrgentWindow(_) => "rr-urgent-256kib-window",
        }
    }

    /// Appended to the implementation's label in the tables.
    pub fn label_suffix(self) -> &'static str {
        match self {
            Variant::Default => "",
            Variant::RrUrgent => " (rr urgent)",
            Variant::RrUrgentWindow(1048576) => " (rr urgent, 1 MiB window)",
            Variant::RrUrgentWindow(_) => " (rr urgent, 256 KiB window)",
        }
    }
}

/// The variants of `kind` that scenario `name` runs: rr-under-load runs
/// an implementation with stream priorities both ways (one measured only
/// through the delay proxy is skipped, once).
pub fn variants(name: &str, kind: Kind) -> &'static [Variant] {
    if name == "rr-under-load" && kind.has_priorities() && !kind.only_delayed() {
        &[
            Variant::Default,
            Variant::RrUrgent,
            Variant::RrUrgentWindow(1 << 20),
            Variant::RrUrgentWindow(256 << 10),
        ]
    } else {
        &[Variant::Default]
    }
}

/// Everything a measurement needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub kind: Kind,
    pub variant: Variant,
    pub limits: Limits,
    pub timeout: Duration,
}

pub fn scenario(name: &str, ctx: Ctx, sizes: Sizes) -> Scenario {
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    match name {
        "bulk" => Scenario {
            title: format!(
                "bulk: 1 stream, {} MiB client to server; CPU: both sides' threads per GiB",
                mib(sizes.bulk_bytes)
            ),
            pairs: vec![transfer_pair(
                ctx,
                Transfer {
                    cpu: true,
                    ..Transfer::new(1, sizes.bulk_bytes)
                },
                vec![
                    metric("mib_per_s", "MiB/s", true, 0).with_swing(),
                    metric("cpu_ms_per_gib", "CPU ms/GiB", false, 0),
                ],
            )],
            derived: None,
        },
        "many" => many::scenario(ctx, sizes),
        "mt" => mt::scenario(ctx, sizes),
        "rr" => Scenario {
            title: format!(
                "rr: 64-byte request/response on one stream, {} round trips; CPU: both \
                 sides' threads per round trip",
                sizes.rr_rounds
            ),
            pairs: vec![Pair {
                table: None,
                metrics: vec![
                    metric("p50_us", "p50 µs", false, 1),
                    metric("p99_us", "p99 µs", false, 1),
                    metric("p999_us", "p99.9 µs", false, 1),
                    metric("cpu_us_per_round_trip", "CPU µs/rt", false, 1),
                ],
                run: Box::new(move || {
                    let rounds = sizes.rr_rounds;
                    measure(ctx, Mode::Echo, move |c| Box::pin(rr(c, rounds))).map(each)
                }),
            }],
            derived: None,
        },
        "rr-under-load" => Scenario {
            title: format!(
                "rr-under-load: 64-byte request/response on one stream, {} round trips alone, \
                 then while {} other streams of the same connection write to the server as \
                 fast as they can (raw TCP: a connection each): after {} ms of load alone, {} \
                 round trips or {} s, whichever ends first; a round trip not done in {} s is \
                 starved. Bulk MiB/s: written by the bulk streams while the round trips ran. \
                 rr urgent: the request/response stream at urgency 0, not incremental; \
                 1 MiB / 256 KiB window: creditmux's connection window fixed at that (a \
                 quarter of it per stream, no tuning) instead of the tuned default",
                sizes.rr_load.rounds,
                LOAD_POINTS
                    .iter()
                    .map(|p| p.streams.to_string())
                    .collect::<Vec<_>>()
                    .join(", then "),
                sizes.rr_load.ramp.as_millis(),
                sizes.rr_load.rounds,
                sizes.rr_load.cap.as_secs_f64(),
                sizes.rr_load.stall.as_secs_f64(),
            ),
            pairs: vec![Pair {
                table: None,
                metrics: rr_load_metrics(),
                run: Box::new(move || {
                    let limits = sizes.rr_load;
                    let urgent = ctx.variant != Variant::Default;
                    let mut ctx = ctx;
                    if let Variant::RrUrgentWindow(window) = ctx.variant {
                        ctx.limits.window_cap = Some(window);
                    }
                    measure(ctx, Mode::EchoFirst, move |c| {
                        Box::pin(rr_under_load(c, limits, urgent))
                    })
                }),
            }],
            derived: None,
        },
        "open" => {
            let count = sizes.open_count;
            let in_flight = sizes.open_in_flight;
            let open_pair = move |key, label, concurrency: usize| Pair {
                table: None,
                metrics: vec![metric(key, label, true, 0)],
                run: Box::new(move || {
                    measure(ctx, Mode::Sink, move |c| {
                        Box::pin(open(c, count, concurrency))
                    })
                    .map(|v| vec![Ok(v)])
                }),
            };
            Scenario {
                title: format!(
                    "open: {count} streams, each opened, 1 byte each way, closed (opens/s)"
                ),
                pairs: vec![
                    open_pair("sequential_per_s", "sequential /s", 1),
                    open_pair("in_flight_per_s", "64 in flight /s", in_flight),
                ],
                derived: None,
            }
        }
        "idle" => Scenario {
            title: format!(
                "idle: memory per idle stream, {} streams, both sides together (bytes/stream)",
                sizes.idle_streams
            ),
            pairs: vec![Pair {
                table: None,
                metrics: vec![metric("heap_bytes_per_stream", "heap B/stream", false, 0)],
                run: Box::new(move || {
                    let n = sizes.idle_streams;
                    measure(ctx, Mode::Idle(1), move |c| Box::pin(idle(c, n))).map(each)
                }),
            }],
            derived: None,
        },
        "hol" => {
            let bytes = sizes.hol_bytes;
            let blocked = sizes.hol_blocked_bytes;
            let alone = transfer_pair(
                ctx,
                Transfer::new(1, bytes),
                vec![metric("alone_mib_per_s", "alone MiB/s", true, 0)],
            );
            Scenario {
                title: format!(
                    "hol: stream A gets {} MiB written and is never read; stream B moves {} MiB",
                    mib(blocked),
                    mib(bytes)
                ),
                pairs: vec![
                    Pair {
                        table: None,
                        metrics: vec![metric("b_mib_per_s", "B MiB/s", true, 0)],
                        run: Box::new(move || {
                            let mut ctx = ctx;
                            if let Some(timeout) = sizes.hol_timeout {
                                ctx.timeout = ctx.timeout.min(timeout);
                            }
                            measure(ctx, Mode::HolFirstParked, move |c| {
                                Box::pin(hol(c, bytes, blocked))
                            })
                            .map(|v| vec![Ok(v)])
                        }),
                    },
                    alone,
                ],
                derived: Some(Derived {
                    metric: metric("b_vs_alone", "B ÷ alone", true, 2),
                    inputs: vec![0, 1],
                    compute: |v| v[0] / v[1],
                }),
            }
        }
        // Every implementation through the same delay proxy (a userspace
        // link, tests/support/delay.rs), where a window smaller than the
        // bandwidth-delay product caps a stream at window / round trip,
        // which loopback hides. QUIC runs over UDP, which the TCP proxy
        // cannot carry: its implementations are skipped.
        "delay" => {
            let delays: Vec<String> = sizes
                .delays
                .iter()
                .map(|p| format!("{} ms", p.one_way.as_millis()))
                .collect();
            let pairs = sizes
                .delays
                .iter()
                .flat_map(|point| {
                    let link = Link::new(point.one_way, DELAY_RATE);
                    [
                        delayed_pair(
                            ctx,
                            link,
                            point.single,
                            1,
                            sizes.delay_bytes,
                            sizes.delay_cap,
                        ),
                        delayed_pair(
                            ctx,
                            link,
                            point.many,
                            DELAY_STREAMS,
                            sizes.delay_many_bytes,
                            sizes.delay_cap,
                        ),
                    ]
                })
                .collect();
            Scenario {
                title: format!(
                    "delay: client to server through a delay proxy at {} one way, 1 Gbit/s each way, \
                     queue one bandwidth-delay product: 1 stream × {} MiB and {DELAY_STREAMS} \
                     streams × {} MiB, each stream writing for at most {} s. QUIC runs over UDP, \
                     which the TCP proxy cannot carry: skipped",
                    delays.join(" and "),
                    mib(sizes.delay_bytes),
                    mib(sizes.delay_many_bytes),
                    sizes.delay_cap.as_secs(),
                ),
                pairs,
                derived: None,
            }
        }
        "sessions" => Scenario {
            title: format!(
                "sessions: memory per idle session, {} concurrent sessions (connections) × \
                 {SESSION_STREAMS} streams, each stream having echoed {} KiB once, measured \
                 after {} ms with no traffic, both sides \
                 together (raw TCP and raw TLS: {SESSION_STREAMS} connections a session). Heap: \
                 the counting allocator; RSS: the process's resident memory (VmRSS, free heap \
                 returned to the system first); kernel socket memory is in neither",
                sizes.sessions,
                SESSION_ECHO >> 10,
                SESSIONS_IDLE.as_millis(),
            ),
            pairs: vec![Pair {
                table: None,
                metrics: vec![
                    metric("heap_kib_per_session", "heap KiB/session", false, 1),
                    metric("rss_kib_per_session", "RSS KiB/session", false, 1),
                ],
                run: Box::new(move || {
                    let n = sizes.sessions;
                    enough_fds(ctx.kind, n, SESSION_STREAMS)?;
                    measure_sessions(ctx, Mode::Idle(SESSION_ECHO), move |c| {
                        Box::pin(sessions(c, n, SESSION_STREAMS, SESSION_ECHO))
                    })
                    .map(each)
                }),
            }],
            derived: None,
        },
        other => panic!("unknown scenario {other}"),
    }
}

/// A measurement of `transfer`, with `metrics` in the order of the values
/// [`transfer`] returns.
fn transfer_pair(ctx: Ctx, transfer: Transfer, metrics: Vec<Metric>) -> Pair {
    Pair {
        metrics,
        table: None,
        run: Box::new(move || {
            measure(ctx, Mode::Sink, move |c| {
                Box::pin(self::transfer(c, transfer))
            })
            .map(each)
        }),
    }
}

/// `streams` streams through the delay proxy over `link`, each writing
/// `bytes` or for `cap`, whichever ends first.
fn delayed_pair(
    ctx: Ctx,
    link: Link,
    metric: Metric,
    streams: usize,
    bytes: usize,
    cap: Duration,
) -> Pair {
    Pair {
        table: None,
        metrics: vec![metric],
        run: Box::new(move || {
            if ctx.kind.over_udp() {
                return Err(Failure::Skipped("QUIC is UDP, the delay proxy TCP".into()));
            }
            measure_via(ctx, Mode::Sink, Some(link), move |c| {
                Box::pin(transfer_for(c, streams, bytes, cap))
            })
            .map(|v| vec![Ok(v)])
        }),
    }
}

// ----- running one measurement ----------------------------------------------

/// What the server side does with each accepted stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Read to the end, then answer "k" and finish.
    Sink,
    /// Echo everything back until the end.
    Echo,
    /// Echo the first stream; sink the others, yielding after each read.
    EchoFirst,
    /// Echo this many bytes once, then hold the stream in a parked task.
    Idle(usize),
    /// Hold the first stream unread in a parked task; sink the others.
    HolFirstParked,
    /// Echo a stream whose first byte is [`REQUEST_BYTE`]; sink the
    /// others, yielding after each read.
    EchoOrSink,
}

/// Runs one measurement of `ctx.kind`: the server side serves streams in
/// `mode`, the client side connects, runs `client`, and closes.
fn measure<T, F>(ctx: Ctx, mode: Mode, client: F) -> Outcome<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn Client>) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    measure_via(ctx, mode, None, client)
}

/// [`measure`], with the client side connecting through a delay proxy
/// over `path` if there is one.
fn measure_via<T, F>(ctx: Ctx, mode: Mode, path: Option<Link>, client: F) -> Outcome<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn Client>) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    if path.is_none() {
        on_loopback(ctx.kind)?;
    }
    run_pair(
        ctx.timeout,
        move |addr_tx| {
            Box::pin(async move {
                let server = ctx.kind.serve(ctx.limits, addr_tx).await?;
                serve(server, mode).await
            })
        },
        move |addr| {
            Box::pin(async move {
                // The proxy outlives the connection's close.
                let path = path.map(|link| PathThread::start(addr, link)).transpose()?;
                let addr = path.as_ref().map_or(addr, PathThread::addr);
                let conn = ctx.kind.connect(ctx.limits, addr).await?;
                let result = client(conn.clone()).await;
                conn.close().await;
                drop(path);
                result
            })
        },
    )
}

/// Skipped if `kind` is measured through the delay proxy only.
fn on_loopback(kind: Kind) -> Outcome<()> {
    if kind.only_delayed() {
        return Err(Failure::Skipped(
            "measured through the delay proxy only: on loopback it is creditmux".into(),
        ));
    }
    Ok(())
}

/// Accepts streams and handles each on its own task until the client side
/// is done (the harness then drops this future). Fails with the first
/// stream handler's error.
async fn serve(server: Arc<dyn Server>, mode: Mode) -> Res<()> {
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<String>();
    let mut first = true;
    loop {
        let accepted = tokio::select! {
            accepted = server.accept() => accepted?,
            Some(e) = err_rx.recv() => return Err(e),
        };
        let Some(mut stream) = accepted else { break };
        let park = matches!(mode, Mode::Idle(_)) || (mode == Mode::HolFirstParked && first);
        let echoes = mode == Mode::Echo || (mode == Mode::EchoFirst && first);
        first = false;
        let err_tx = err_tx.clone();
        tokio::spawn(async move {
            let result = match mode {
                _ if echoes => echo(&mut stream).await,
                Mode::EchoFirst => sink_yielding(&mut stream).await,
                Mode::EchoOrSink => echo_or_sink(&mut stream).await,
                _ if park && mode == Mode::HolFirstParked => Ok(()),
                Mode::Idle(bytes) => {
                    let mut buf = vec![0u8; bytes];
                    async {
                        stream.read_exact(&mut buf).await?;
                        stream.write_all(&buf).await?;
                        stream.flush().await
                    }
                    .await
                    .map_err(s)
                }
                _ => sink(&mut stream).await,
            };
            if let Err(e) = result {
                let _ = err_tx.send(e);
            } else if park {
                // Hold the stream until the measurement ends.
                std::future::pending::<()>().await;
            }
        });
    }
    // The client closed the connection; streams may still be finishing.
    std::future::pending::<Res<()>>().await
}

/// Runs one measurement of `ctx.kind` with many connections: the server
/// side accepts every connection to its listener and serves the streams
/// of each in `mode`; the client side runs `client` with a connector.
/// The connections are not closed: the client side's runtime drops them.
fn measure_sessions<T, F>(ctx: Ctx, mode: Mode, client: F) -> Outcome<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn Connector>) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    measure_sessions_on(ServerRuntime::CurrentThread, ctx, mode, client)
}

/// [`measure_sessions`], with the server side on a runtime of kind
/// `server_runtime`.
fn measure_sessions_on<T, F>(
    server_runtime: ServerRuntime,
    ctx: Ctx,
    mode: Mode,
    client: F,
) -> Outcome<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<dyn Connector>) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    on_loopback(ctx.kind)?;
    run_pair_on(
        server_runtime,
        ctx.timeout,
        move |addr_tx| {
            Box::pin(async move {
                let listener = ctx.kind.listen(ctx.limits, addr_tx).await?;
                serve_many(listener, mode).await
            })
        },
        move |addr| {
            Box::pin(async move {
                let connector = ctx.kind.connector(ctx.limits, addr).await?;
                client(connector).await
            })
        },
    )
}

/// Accepts connections and [`serve`]s each on its own task until the
/// client side is done. Fails with the first error.
async fn serve_many(listener: Arc<dyn Listener>, mode: Mode) -> Res<()> {
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let server = tokio::select! {
            server = listener.accept() => server?,
            Some(e) = err_rx.recv() => return Err(e),
        };
        let err_tx = err_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(server, mode).await {
                let _ = err_tx.send(e);
            }
        });
    }
}

/// Fails as skipped if the process may not open the file descriptors
/// `sessions` sessions of `kind` with `streams` streams each take (both
/// sides, plus a margin); raw TCP and raw TLS take one per stream and
/// side.
fn enough_fds(kind: Kind, sessions: usize, streams: usize) -> Outcome<()> {
    let per_session = match kind {
        Kind::Tcp | Kind::Tls => 2 * streams,
        _ if kind.over_udp() => 0,
        _ => 2,
    };
    let needed = sessions * per_session + 256;
    let Some(limit) = fd_limit() else {
        return Ok(());
    };
    if needed > limit {
        return Err(Failure::Skipped(format!(
            "fd limit: needs about {needed} file descriptors, the soft limit is {limit} \
             (raise it with ulimit -n)"
        )));
    }
    Ok(())
}

/// The soft limit on this process's open file descriptors, from
/// `/proc/self/limits`.
fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ----- client sides ------------------------------------------------------------

/// A client-to-server transfer: `streams` concurrent streams, each
/// writing `bytes` in writes of `write` bytes, then finishing and waiting
/// for the server's ack.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    streams: usize,
    bytes: usize,
    write: usize,
    /// Also measure both sides' CPU time.
    cpu: bool,
    /// Also report the spread of the streams' times.
    spread: bool,
}

impl Transfer {
    /// `streams` × `bytes` in [`CHUNK`]-sized writes, MiB/s only.
    fn new(streams: usize, bytes: usize) -> Transfer {
        Transfer {
            streams,
            bytes,
            write: CHUNK,
            cpu: false,
            spread: false,
        }
    }
}

/// Runs `transfer`: MiB/s over all its streams; with `cpu` the CPU time
/// of both sides in ms per GiB; with `spread` the slowest stream's time
/// ÷ the fastest's, each stream timed from the start of its task (its
/// open included) to its ack.
async fn transfer(client: Arc<dyn Client>, transfer: Transfer) -> Res<Vec<f64>> {
    let Transfer {
        streams,
        bytes,
        write,
        ..
    } = transfer;
    let meter = if transfer.cpu {
        Some(CpuMeter::start().await?)
    } else {
        None
    };
    let start = Instant::now();
    let tasks: Vec<JoinHandle<Res<Duration>>> = (0..streams)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let mut stream = client.open().await?;
                write_bytes(&mut stream, bytes, write).await?;
                finish_and_ack(&mut stream).await?;
                Ok(began.elapsed())
            })
        })
        .collect();
    let times = join_each(tasks).await?;
    let mut values = vec![mib_per_s(streams * bytes, start.elapsed())];
    if let Some(meter) = meter {
        let gib = (streams * bytes) as f64 / (1u64 << 30) as f64;
        values.push(meter.stop().await?.as_secs_f64() * 1e3 / gib);
    }
    if transfer.spread {
        let (fastest, slowest) = times
            .iter()
            .fold((Duration::MAX, Duration::ZERO), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        values.push(slowest.as_secs_f64() / fastest.as_secs_f64());
    }
    Ok(values)
}

/// [`transfer`], except that each stream stops writing once `cap` has
/// passed; MiB/s over the bytes all of them moved, up to the last ack.
async fn transfer_for(
    client: Arc<dyn Client>,
    streams: usize,
    bytes: usize,
    cap: Duration,
) -> Res<f64> {
    let start = Instant::now();
    let deadline = start + cap;
    let tasks: Vec<JoinHandle<Res<usize>>> = (0..streams)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut stream = client.open().await?;
                let mut sent = 0;
                while sent < bytes && Instant::now() < deadline {
                    let n = CHUNK.min(bytes - sent);
                    stream.write_all(&PAYLOAD[..n]).await.map_err(s)?;
                    sent += n;
                }
                stream.flush().await.map_err(s)?;
                finish_and_ack(&mut stream).await?;
                Ok(sent)
            })
        })
        .collect();
    let mut moved = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await.map_err(s).and_then(|r| r) {
            Ok(sent) => moved += sent,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(mib_per_s(moved, start.elapsed())),
    }
}

/// The unrecorded round trips before `rounds` recorded ones.
fn warmup_rounds(rounds: usize) -> usize {
    (rounds / 10).min(1000)
}

/// An empty latency histogram, 1 ns to 60 s.
fn histogram() -> Res<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(s)
}

/// Records the time since `start` in `hist`, in ns.
fn record(hist: &mut Histogram<u64>, start: Instant) -> Res<()> {
    hist.record(start.elapsed().as_nanos().max(1) as u64)
        .map_err(s)
}

/// One 64-byte round trip on `stream` (the server echoes).
async fn round_trip(stream: &mut BoxStream) -> Res<()> {
    let request = [REQUEST_BYTE; 64];
    let mut response = [0u8; 64];
    stream.write_all(&request).await.map_err(s)?;
    stream.flush().await.map_err(s)?;
    stream.read_exact(&mut response).await.map_err(s)?;
    Ok(())
}

/// `warmup` then `rounds` round trips on `stream`; the latencies of the
/// `rounds`, in ns.
async fn round_trips(stream: &mut BoxStream, warmup: usize, rounds: usize) -> Res<Histogram<u64>> {
    let mut hist = histogram()?;
    for i in 0..warmup + rounds {
        let start = Instant::now();
        round_trip(stream).await?;
        if i >= warmup {
            record(&mut hist, start)?;
        }
    }
    Ok(hist)
}

/// The `q` quantile of a histogram in ns, in µs.
fn us(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

/// Finishes the write side of an echoed stream and reads to its end.
async fn finish_echo(stream: &mut BoxStream) -> Res<()> {
    stream.shutdown().await.map_err(s)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.map_err(s)?;
    Ok(())
}

/// 64-byte ping-pong on one stream; p50, p99 and p99.9 in µs, and the
/// CPU time of both sides per measured round trip in µs.
async fn rr(client: Arc<dyn Client>, rounds: usize) -> Res<Vec<f64>> {
    let mut stream = client.open().await?;
    round_trips(&mut stream, warmup_rounds(rounds), 0).await?;
    let cpu = CpuMeter::start().await?;
    let hist = round_trips(&mut stream, 0, rounds).await?;
    let cpu = cpu.stop().await?;
    finish_echo(&mut stream).await?;
    Ok(vec![
        us(&hist, 0.50),
        us(&hist, 0.99),
        us(&hist, 0.999),
        cpu.as_secs_f64() * 1e6 / rounds as f64,
    ])
}

/// `count` streams, at most `concurrency` at a time, each: open, 1 byte and
/// FIN out, 1 byte and FIN back. Opens per second.
async fn open(client: Arc<dyn Client>, count: usize, concurrency: usize) -> Res<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks = (0..concurrency.min(count))
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let mut stream = client.open().await?;
                    stream.write_all(&[1]).await.map_err(s)?;
                    finish_and_ack(&mut stream).await?;
                }
                Ok(())
            })
        })
        .collect();
    join_all(tasks).await?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Opens `n` streams (1 byte each way so both sides know them), holds each
/// in a parked task on both sides, and reports the growth of the process's
/// heap (the counting allocator in main.rs) per stream. Both sides are in
/// this process, so the figure covers both together, including the two
/// parked tasks. (RSS is no use here: earlier scenarios leave freed heap
/// pages that the streams reuse, so it barely moves.)
async fn idle(client: Arc<dyn Client>, n: usize) -> Res<Vec<f64>> {
    tokio::time::sleep(QUIET).await;
    let heap_before = crate::heap_bytes();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(open_idle(&client, 1).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let heap = (crate::heap_bytes() - heap_before) as f64 / n as f64;
    for task in held {
        task.abort();
    }
    tokio::task::yield_now().await;
    Ok(vec![heap])
}

/// How long the idle scenarios wait before their first reading, for what
/// setting up the connection left to finish.
const QUIET: Duration = Duration::from_millis(50);

/// How long the idle scenarios wait once every stream is idle before
/// reading again: the last acknowledgements and window updates settle.
const SETTLE: Duration = Duration::from_millis(100);

/// How long `sessions` waits once every session is idle before reading
/// again: an idle session, not one just past its last byte (creditmux
/// gives its connection buffers back after 1 s without traffic).
const SESSIONS_IDLE: Duration = Duration::from_millis(1500);

/// Opens a stream of `client`, echoes `bytes` on it (so that both sides
/// know the stream; the server's side is [`Mode::Idle`]) and holds it in
/// a parked task until that task is aborted.
async fn open_idle(client: &Arc<dyn Client>, bytes: usize) -> Res<JoinHandle<()>> {
    let mut stream = client.open().await?;
    stream.write_all(&PAYLOAD[..bytes]).await.map_err(s)?;
    stream.flush().await.map_err(s)?;
    let mut echoed = vec![0u8; bytes];
    stream.read_exact(&mut echoed).await.map_err(s)?;
    Ok(tokio::spawn(async move {
        let _stream = stream;
        std::future::pending::<()>().await;
    }))
}

/// The process's heap (counting allocator) and resident memory, in bytes.
struct Footprint {
    heap: i64,
    rss: i64,
}

impl Footprint {
    /// Now, after returning free heap memory to the system, so that the
    /// resident memory does not include what earlier measurements freed.
    fn now() -> Res<Footprint> {
        crate::release_free_memory();
        Ok(Footprint {
            heap: crate::heap_bytes(),
            rss: rss_bytes()?,
        })
    }
}

/// The process's resident memory (VmRSS), in bytes.
fn rss_bytes() -> Res<i64> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(s)?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// `sessions` connections of `connector` with `streams` idle streams each
/// ([`open_idle`], echoing `bytes`), set up [`SESSIONS_IN_FLIGHT`] at a
/// time and all held at once; the growth of the process's heap and of
/// its resident memory per session, in KiB. Both sides are in this
/// process, so the figures cover both together, parked tasks included.
async fn sessions(
    connector: Arc<dyn Connector>,
    sessions: usize,
    streams: usize,
    bytes: usize,
) -> Res<Vec<f64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = SESSIONS_IN_FLIGHT.min(sessions);
    // Room for everything held, allocated before the first reading.
    let per_worker = sessions.div_ceil(workers);
    let mut rooms: Vec<_> = (0..workers)
        .map(|_| {
            (
                Vec::<Arc<dyn Client>>::with_capacity(per_worker),
                Vec::<JoinHandle<()>>::with_capacity(per_worker * streams),
            )
        })
        .collect();
    tokio::time::sleep(QUIET).await;
    let before = Footprint::now()?;
    let tasks: Vec<JoinHandle<Res<_>>> = rooms
        .drain(..)
        .map(|(mut clients, mut held)| {
            let (connector, next) = (connector.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < sessions {
                    let client = connector.connect().await?;
                    for _ in 0..streams {
                        held.push(open_idle(&client, bytes).await?);
                    }
                    clients.push(client);
                }
                Ok((clients, held))
            })
        })
        .collect();
    let mut first_error = None;
    for task in tasks {
        match task.await.map_err(s).and_then(|r| r) {
            Ok(room) => rooms.push(room),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    tokio::time::sleep(SESSIONS_IDLE).await;
    let after = Footprint::now()?;
    let per_session = |grown: i64| grown as f64 / 1024.0 / sessions as f64;
    let values = vec![
        per_session(after.heap - before.heap),
        per_session(after.rss - before.rss),
    ];
    for (_, held) in &rooms {
        for task in held {
            task.abort();
        }
    }
    tokio::task::yield_now().await;
    Ok(values)
}

/// Stream A gets `blocked` bytes written and is never read by the server;
/// then stream B moves `bytes`. B's MiB/s.
async fn hol(client: Arc<dyn Client>, bytes: usize, blocked: usize) -> Res<f64> {
    let mut a = client.open().await?;
    let a_task = tokio::spawn(async move {
        // Blocks once A's credit is used up; that is the point.
        let _ = write_bytes(&mut a, blocked, CHUNK).await;
        std::future::pending::<()>().await;
    });
    // A's bytes go out first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    // B runs on a spawned task, as every stream of `transfer` (the alone
    // figure) does, so the two differ only in A.
    let b_task = tokio::spawn(async move {
        let mut b = client.open().await?;
        write_bytes(&mut b, bytes, CHUNK).await?;
        finish_and_ack(&mut b).await
    });
    b_task.await.map_err(s)??;
    let result = mib_per_s(bytes, start.elapsed());
    a_task.abort();
    Ok(result)
}
