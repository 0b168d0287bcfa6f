//! rr-under-load: 64-byte request/response on one stream, alone and then
//! while bulk streams of the same connection write as fast as they can
//! (raw TCP: connections of their own); for creditmux with the
//! request/response stream at top urgency and without a priority.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::{
    CHUNK, Metric, PAYLOAD, finish_and_ack, finish_echo, histogram, join_all, metric, mib_per_s,
    record, round_trip, round_trips, us, warmup_rounds,
};
use crate::harness::{Failure, Outcome, Res};
use crate::transports::{BoxStream, Client, s};

/// The round trips of each rr-under-load measurement.
#[derive(Clone, Copy, Debug)]
pub struct RrLoad {
    /// Round trips measured (alone: after a warm-up).
    pub rounds: usize,
    /// How long the bulk streams write before the round trips under load
    /// start (the request/response stream is warm from the round trips
    /// alone).
    pub ramp: Duration,
    /// Under load, the round trips stop once this much time has passed,
    /// even if fewer than `rounds`.
    pub cap: Duration,
    /// Under load, a round trip not done after this long is starved: that
    /// load's measurement ends and has no value.
    pub stall: Duration,
}

/// A bulk stream count of the rr-under-load scenario, with its metrics.
#[derive(Debug)]
pub struct LoadPoint {
    /// Bulk streams writing while the round trips run.
    pub streams: usize,
    pub p50: Metric,
    pub p99: Metric,
    pub p999: Metric,
    /// p99 under this load ÷ p99 alone.
    pub p99_vs_idle: Metric,
    /// Round trips measured (fewer than asked if the time cap ended them).
    pub round_trips: Metric,
    /// What the bulk streams wrote while the round trips ran.
    pub bulk_mib_per_s: Metric,
}

/// rr-under-load: 1, then 16 bulk streams.
pub(super) const LOAD_POINTS: [LoadPoint; 2] = [
    LoadPoint {
        streams: 1,
        p50: metric("load1_p50_us", "1 bulk p50 µs", false, 1),
        p99: metric("load1_p99_us", "1 bulk p99 µs", false, 1),
        p999: metric("load1_p999_us", "1 bulk p99.9 µs", false, 1),
        p99_vs_idle: metric("load1_p99_vs_idle", "1 bulk p99 ÷ idle", false, 2),
        round_trips: metric("load1_round_trips", "1 bulk round trips", true, 0),
        bulk_mib_per_s: metric("load1_bulk_mib_per_s", "1 bulk MiB/s", true, 0),
    },
    LoadPoint {
        streams: 16,
        p50: metric("load16_p50_us", "16 bulk p50 µs", false, 1),
        p99: metric("load16_p99_us", "16 bulk p99 µs", false, 1),
        p999: metric("load16_p999_us", "16 bulk p99.9 µs", false, 1),
        p99_vs_idle: metric("load16_p99_vs_idle", "16 bulk p99 ÷ idle", false, 2),
        round_trips: metric("load16_round_trips", "16 bulk round trips", true, 0),
        bulk_mib_per_s: metric("load16_bulk_mib_per_s", "16 bulk MiB/s", true, 0),
    },
];

/// rr-under-load's metrics, in the order [`rr_under_load`] returns them.
pub(super) fn rr_load_metrics() -> Vec<Metric> {
    let mut metrics = vec![
        metric("idle_p50_us", "idle p50 µs", false, 1),
        metric("idle_p99_us", "idle p99 µs", false, 1),
    ];
    for point in &LOAD_POINTS {
        metrics.extend([
            point.p50,
            point.p99,
            point.p999,
            point.p99_vs_idle,
            point.round_trips,
            point.bulk_mib_per_s,
        ]);
    }
    metrics
}

/// What one load's round trips measured.
struct Loaded {
    /// Round trip latencies, in ns.
    hist: Histogram<u64>,
    bulk_mib_per_s: f64,
}

/// Round trips on `stream` while `load` writes, up to `limits.rounds`
/// until `limits.cap` has passed; `load` is stopped at the end. A round
/// trip not done after `limits.stall` ends the measurement without a
/// value: `load` is stopped first, then that round trip completes, so
/// that `stream` can go on.
async fn round_trips_loaded(
    stream: &mut BoxStream,
    load: BulkLoad,
    limits: RrLoad,
) -> Res<Outcome<Loaded>> {
    let mut hist = histogram()?;
    let began = Instant::now();
    let written = load.written();
    while hist.len() < limits.rounds as u64 && began.elapsed() < limits.cap {
        let start = Instant::now();
        let mut trip = pin!(round_trip(stream));
        let Ok(done) = tokio::time::timeout(limits.stall, &mut trip).await else {
            load.stop().await?;
            trip.await?;
            let why = format!("a round trip took over {} s", limits.stall.as_secs_f64());
            return Ok(Err(Failure::Starved(why)));
        };
        done?;
        record(&mut hist, start)?;
    }
    let bulk_mib_per_s = mib_per_s(load.written() - written, began.elapsed());
    load.stop().await?;
    Ok(Ok(Loaded {
        hist,
        bulk_mib_per_s,
    }))
}

/// 64-byte ping-pong on one stream (opened urgent if `urgent`): first
/// alone, then while the bulk streams of each of [`LOAD_POINTS`] write on
/// the same connection (raw TCP: on connections of their own), the load
/// stopped and drained before the next measurement. p50 and p99 alone,
/// then per load the values of [`load_values`]; latencies in µs.
pub(super) async fn rr_under_load(
    client: Arc<dyn Client>,
    limits: RrLoad,
    urgent: bool,
) -> Res<Vec<Outcome<f64>>> {
    let open = if urgent {
        client.open_urgent()
    } else {
        client.open()
    };
    let mut stream = open.await?;
    let warmup = warmup_rounds(limits.rounds);
    let idle = round_trips(&mut stream, warmup, limits.rounds).await?;
    let idle_p99 = us(&idle, 0.99);
    let mut values = vec![Ok(us(&idle, 0.50)), Ok(idle_p99)];
    for point in &LOAD_POINTS {
        let load = BulkLoad::start(&client, point.streams);
        tokio::time::sleep(limits.ramp).await;
        let loaded = round_trips_loaded(&mut stream, load, limits).await?;
        values.extend(load_values(loaded, idle_p99));
    }
    finish_echo(&mut stream).await?;
    Ok(values)
}

/// The values of one load, in the order of its [`LoadPoint`] metrics:
/// p50, p99 and p99.9 in µs, p99 ÷ `idle_p99`, the round trips and the
/// bulk MiB/s.
fn load_values(loaded: Outcome<Loaded>, idle_p99: f64) -> [Outcome<f64>; 6] {
    match loaded {
        Ok(Loaded {
            hist,
            bulk_mib_per_s,
        }) => {
            let p99 = us(&hist, 0.99);
            [
                Ok(us(&hist, 0.50)),
                Ok(p99),
                Ok(us(&hist, 0.999)),
                Ok(p99 / idle_p99),
                Ok(hist.len() as f64),
                Ok(bulk_mib_per_s),
            ]
        }
        Err(failure) => std::array::from_fn(|_| Err(failure.clone())),
    }
}

/// Bulk streams, each on its own task, writing as fast as they can until
/// stopped; the server sinks them.
struct BulkLoad {
    stop: Arc<AtomicBool>,
    /// Bytes the streams have written, all together.
    written: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Res<()>>>,
}

impl BulkLoad {
    /// Opens `streams` bulk streams of `client`.
    fn start(client: &Arc<dyn Client>, streams: usize) -> BulkLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let tasks = (0..streams)
            .map(|_| {
                let (client, stop, written) = (client.clone(), stop.clone(), written.clone());
                tokio::spawn(write_until(client, stop, written))
            })
            .collect();
        BulkLoad {
            stop,
            written,
            tasks,
        }
    }

    /// Bytes written so far, all streams together.
    fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the writing and waits until every stream is finished and
    /// acknowledged, so that the connection is idle again.
    async fn stop(mut self) -> Res<()> {
        self.stop.store(true, Ordering::Relaxed);
        join_all(std::mem::take(&mut self.tasks)).await
    }
}

impl Drop for BulkLoad {
    /// Dropped without [`BulkLoad::stop`] (an error ended the
    /// measurement): the streams stop writing and finish on their own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One stream writing whole chunks until `stop` is set, counting them in
/// `written`, then finished and acknowledged. It yields after each chunk:
/// with room left in its buffers a writer would otherwise keep the thread,
/// which the request/response stream shares, for up to tokio's
/// cooperative budget.
async fn write_until(
    client: Arc<dyn Client>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> Res<()> {
    let mut stream = client.open().await?;
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(&PAYLOAD).await.map_err(s)?;
        written.fetch_add(CHUNK, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    stream.flush().await.map_err(s)?;
    finish_and_ack(&mut stream).await
}
