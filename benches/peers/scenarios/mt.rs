//! mt: the server side on a multi-thread runtime, serving many sessions
//! at once, each mixing request/response with bulk: per session one
//! stream does 64-byte round trips (echoed) while the others write to the
//! server as fast as they can (sunk), for a fixed time after a warm-up.
//! The client side stays on its one current-thread runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::{
    Ctx, Mode, PAYLOAD, Pair, Scenario, Sizes, enough_fds, histogram, join_each,
    measure_sessions_on, metric, mib_per_s, record, round_trip, us,
};
use crate::cpu::ProcessCpuMeter;
use crate::harness::{Failure, Outcome, Res, ServerRuntime, worker_threads};
use crate::transports::{BoxStream, Client, Connector, s};

/// How long the load runs before it is measured, and while.
#[derive(Clone, Copy, Debug)]
pub struct MtLoad {
    pub warmup: Duration,
    pub measured: Duration,
    /// A round trip not answered after this long is starved: the rr
    /// values have none.
    pub stall: Duration,
}

/// Sessions (connections) at once.
const SESSIONS: usize = 64;

/// Streams of each session: one request/response stream, the others bulk.
const STREAMS: usize = 16;

/// The size of each bulk write.
const WRITE: usize = 64 << 10;

/// How many sessions are being set up at a time.
const SETUP_IN_FLIGHT: usize = 16;

pub(super) fn scenario(ctx: Ctx, sizes: Sizes) -> Scenario {
    let load = sizes.mt;
    Scenario {
        title: format!(
            "mt: the server side on a multi-thread runtime ({workers} worker threads, the \
             available parallelism), the client side on one current-thread runtime: \
             {SESSIONS} sessions × {STREAMS} streams at once (raw TCP and raw TLS: {} \
             connections); in each session 1 stream does 64-byte round trips and {} streams \
             write client to server in {} KiB writes as fast as they can; measured for {} ms \
             after {} ms of warm-up. MiB/s: the bulk streams' together; rr: over every \
             request/response stream, starved if a round trip took over {} s; CPU: every \
             thread of the process per GiB of bulk",
            SESSIONS * STREAMS,
            STREAMS - 1,
            WRITE >> 10,
            load.measured.as_millis(),
            load.warmup.as_millis(),
            load.stall.as_secs_f64(),
            workers = worker_threads(),
        ),
        pairs: vec![Pair {
            metrics: vec![
                metric("bulk_mib_per_s", "bulk MiB/s", true, 0).with_swing(),
                metric("rr_p50_us", "rr p50 µs", false, 0),
                metric("rr_p99_us", "rr p99 µs", false, 0),
                metric("cpu_ms_per_gib", "CPU ms/GiB", false, 0),
                metric("rr_round_trips", "rr round trips", true, 0),
            ],
            table: None,
            run: Box::new(move || {
                enough_fds(ctx.kind, SESSIONS, STREAMS)?;
                measure_sessions_on(
                    ServerRuntime::MultiThread,
                    ctx,
                    Mode::EchoOrSink,
                    move |c| Box::pin(mt(c, load)),
                )
            }),
        }],
        derived: None,
    }
}

/// One session's streams, set up and not yet used.
struct Session {
    /// Keeps the connection open.
    client: Arc<dyn Client>,
    rr: BoxStream,
    bulk: Vec<BoxStream>,
}

/// Connects a session, opens its request/response stream and does one
/// round trip on it (the server knows it by its first byte and echoes
/// it), then opens its bulk streams.
async fn set_up(connector: &Arc<dyn Connector>) -> Res<Session> {
    let client = connector.connect().await?;
    let mut rr = client.open().await?;
    round_trip(&mut rr).await?;
    let mut bulk = Vec::with_capacity(STREAMS - 1);
    for _ in 1..STREAMS {
        bulk.push(client.open().await?);
    }
    Ok(Session { client, rr, bulk })
}

/// The flags the coordinator sets and the count it reads.
#[derive(Clone, Default)]
struct Shared {
    /// Round trips started from now on are recorded.
    measuring: Arc<AtomicBool>,
    /// The request/response streams finish after their round trip in
    /// flight.
    stop_round_trips: Arc<AtomicBool>,
    /// Bytes the bulk streams' writes have taken, all together.
    written: Arc<AtomicUsize>,
}

/// Sets up [`SESSIONS`] sessions, then runs them all for `load.warmup`
/// and `load.measured`; over the measured part: bulk MiB/s, rr p50 and
/// p99 in µs, CPU ms per GiB of bulk and the round trips measured. The rr
/// values are starved if a round trip took over `load.stall`.
async fn mt(connector: Arc<dyn Connector>, load: MtLoad) -> Res<Vec<Outcome<f64>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let setups: Vec<JoinHandle<Res<Vec<Session>>>> = (0..SETUP_IN_FLIGHT)
        .map(|_| {
            let (connector, next) = (connector.clone(), next.clone());
            tokio::spawn(async move {
                let mut sessions = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < SESSIONS {
                    sessions.push(set_up(&connector).await?);
                }
                Ok(sessions)
            })
        })
        .collect();
    let sessions: Vec<Session> = join_each(setups).await?.into_iter().flatten().collect();

    let shared = Shared::default();
    let mut clients = Vec::with_capacity(SESSIONS);
    let mut rr_tasks = Vec::with_capacity(SESSIONS);
    let mut bulk_tasks = Vec::with_capacity(SESSIONS * (STREAMS - 1));
    for session in sessions {
        let rr = round_trips_until(session.rr, shared.clone(), load.stall);
        rr_tasks.push(tokio::spawn(rr));
        for stream in session.bulk {
            bulk_tasks.push(tokio::spawn(write_until(stream, shared.clone())));
        }
        clients.push(session.client);
    }

    tokio::time::sleep(load.warmup).await;
    let cpu = ProcessCpuMeter::start()?;
    let written = shared.written.load(Ordering::Relaxed);
    let start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(load.measured).await;
    let cpu = cpu.elapsed()?;
    let bytes = shared.written.load(Ordering::Relaxed) - written;
    let elapsed = start.elapsed();
    shared.stop_round_trips.store(true, Ordering::Relaxed);

    // The round trips in flight finish under the same load (or starve);
    // then the bulk streams are dropped where they are, with the
    // connections: draining what the peers' windows let them queue
    // would take seconds.
    let mut hist = Ok(histogram()?);
    let mut held = Vec::with_capacity(SESSIONS);
    for (rr, stream) in join_each(rr_tasks).await? {
        held.push(stream);
        match (&mut hist, rr) {
            (Ok(all), Ok(one)) => all.add(one).map_err(s)?,
            (Ok(_), Err(starved)) => hist = Err(starved),
            (Err(_), _) => {}
        }
    }
    for task in bulk_tasks {
        if task.is_finished() {
            task.await.map_err(s)??;
        } else {
            task.abort();
        }
    }
    drop((held, clients));
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let rr = |value: fn(&Histogram<u64>) -> f64| hist.as_ref().map(value).map_err(Clone::clone);
    Ok(vec![
        Ok(mib_per_s(bytes, elapsed)),
        rr(|h| us(h, 0.50)),
        rr(|h| us(h, 0.99)),
        Ok(cpu.as_secs_f64() * 1e3 / gib),
        rr(|h| h.len() as f64),
    ])
}

/// Round trips on `stream` until `shared.stop_round_trips`, recording
/// those started while `shared.measuring`; starved if one takes over
/// `stall`. Returns the stream too: it is dropped as it is, with the
/// connection, once every such task is done (the server side takes a
/// reset stream for an error and ends).
async fn round_trips_until(
    mut stream: BoxStream,
    shared: Shared,
    stall: Duration,
) -> Res<(Outcome<Histogram<u64>>, BoxStream)> {
    let mut hist = histogram()?;
    while !shared.stop_round_trips.load(Ordering::Relaxed) {
        let measured = shared.measuring.load(Ordering::Relaxed);
        let start = Instant::now();
        let Ok(done) = tokio::time::timeout(stall, round_trip(&mut stream)).await else {
            let why = format!("a round trip took over {} s", stall.as_secs_f64());
            return Ok((Err(Failure::Starved(why)), stream));
        };
        done?;
        if measured {
            record(&mut hist, start)?;
        }
    }
    Ok((Ok(hist), stream))
}

/// Writes [`WRITE`]-byte writes (each may take less) until aborted,
/// counting what they took. Yields after each write: with room in its
/// buffers a writer would otherwise keep the client's one thread, which
/// the request/response streams share, for up to tokio's cooperative
/// budget.
async fn write_until(mut stream: BoxStream, shared: Shared) -> Res<()> {
    loop {
        let n = stream.write(&PAYLOAD[..WRITE]).await.map_err(s)?;
        if n == 0 {
            return Err("a bulk write took no byte".into());
        }
        shared.written.fetch_add(n, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
}
