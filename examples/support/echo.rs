//! Echo logic shared by `echo_server`, `echo_client` and their tests: the
//! server side echoes every stream; the client side sends a deterministic
//! byte pattern, verifies every echoed byte and measures.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use creditmux::message::{self, MessageConfig};
use creditmux::{Session, Stream};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TABLE_LEN: usize = 1 << 16;

/// 64 KiB of pseudo-random bytes, computed once.
fn table() -> &'static [u8; TABLE_LEN] {
    static TABLE: std::sync::OnceLock<Box<[u8; TABLE_LEN]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u8; TABLE_LEN]);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for b in t.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        t
    })
}

/// The byte at `offset` of the pattern stream `seed` sends: a table lookup
/// at a per-stream rotation, mixed with the 64 KiB block number, so
/// misordered, crossed or repeated blocks are caught, not just flipped bytes.
pub fn pattern_byte(seed: u64, offset: u64) -> u8 {
    let rotation = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
    table()[((offset + rotation) as usize) & (TABLE_LEN - 1)]
        ^ (offset >> 16) as u8
        ^ (offset >> 24) as u8
}

/// Fills `buf` with the pattern of `seed` starting at `offset`.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let table = table();
    let rotation = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let start = ((at + rotation) as usize) & (TABLE_LEN - 1);
        // Stay within one table pass and one 64 KiB block of offsets.
        let n = (TABLE_LEN - start)
            .min(TABLE_LEN - (at as usize & (TABLE_LEN - 1)))
            .min(buf.len() - done);
        let mix = (at >> 16) as u8 ^ (at >> 24) as u8;
        for (dst, src) in buf[done..done + n].iter_mut().zip(&table[start..start + n]) {
            *dst = src ^ mix;
        }
        done += n;
    }
}

/// Position of the first byte of `buf` that differs from the pattern.
pub fn check_pattern(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut expected = [0u8; 4096];
    for (i, piece) in buf.chunks(expected.len()).enumerate() {
        let at = offset + (i * expected.len()) as u64;
        fill_pattern(seed, at, &mut expected[..piece.len()]);
        if piece != &expected[..piece.len()] {
            let j = piece
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Some(at + j as u64);
        }
    }
    None
}

/// What the client does.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each stream sends `size` bytes and reads them back.
    Bulk,
    /// Each stream sends `message_size`-byte requests one at a time and
    /// waits for each echo.
    Rr,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub streams: usize,
    pub size: u64,
    pub mode: Mode,
    pub message_size: usize,
    pub requests: u64,
    pub duration: Option<Duration>,
    /// Requests (rr) or streams (bulk) per second over all workers.
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
/// `None` (JSON `null`) where the session's engine does not know the value
/// (native QUIC, see `creditmux::SessionStats`).
pub struct SessionCounters {
    pub zero_window_events: Option<u64>,
    pub probes_sent: u64,
    pub probes_answered: Option<u64>,
    pub blocked_on_connection_ms: Option<u64>,
    pub blocked_on_streams_ms: Option<u64>,
    pub rtt_us: Option<u64>,
    pub smoothed_rtt_us: Option<u64>,
    /// Receive-window tuning on this side (SPEC §9.8.1): windows grown and
    /// shrunk, and the connection's receive credit open at the end.
    pub windows_grown: Option<u64>,
    pub windows_shrunk: Option<u64>,
    pub recv_window: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub verified: bool,
    pub mode: Mode,
    pub streams: usize,
    pub operations: u64,
    pub bytes_sent: u64,
    pub bytes_verified: u64,
    pub elapsed_secs: f64,
    pub throughput_mib_s: f64,
    pub latency: Latency,
    pub mismatches: u64,
    pub errors: Vec<String>,
    pub session: SessionCounters,
}

/// Counters a progress display can poll while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_verified: AtomicU64,
}

struct WorkerResult {
    histogram: Histogram<u64>,
    operations: u64,
    bytes_sent: u64,
    bytes_verified: u64,
    mismatches: u64,
    error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

/// Runs the client side over `session` and returns a verified summary.
pub async fn run_client(
    session: &Session,
    opts: &ClientOptions,
    progress: Arc<Progress>,
) -> Summary {
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let per_worker_interval = opts
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(opts.streams as f64 / r));
    let mut tasks = Vec::with_capacity(opts.streams);
    for worker in 0..opts.streams {
        let session = session.clone();
        let opts = opts.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = WorkerResult {
                histogram: new_histogram(),
                operations: 0,
                bytes_sent: 0,
                bytes_verified: 0,
                mismatches: 0,
                error: None,
            };
            let outcome = match opts.mode {
                Mode::Bulk => {
                    bulk_worker(
                        &session,
                        &opts,
                        worker as u64,
                        deadline,
                        per_worker_interval,
                        &progress,
                        &mut result,
                    )
                    .await
                }
                Mode::Rr => {
                    rr_worker(
                        &session,
                        &opts,
                        worker as u64,
                        deadline,
                        per_worker_interval,
                        &progress,
                        &mut result,
                    )
                    .await
                }
            };
            if let Err(e) = outcome {
                result.error = Some(e);
            }
            result
        }));
    }
    let mut histogram = new_histogram();
    let mut summary = Summary {
        verified: true,
        mode: opts.mode,
        streams: opts.streams,
        operations: 0,
        bytes_sent: 0,
        bytes_verified: 0,
        elapsed_secs: 0.0,
        throughput_mib_s: 0.0,
        latency: Latency::default(),
        mismatches: 0,
        errors: Vec::new(),
        session: SessionCounters::default(),
    };
    // Streams ended by the end of the session itself, and the first such
    // error (they all say the same).
    let mut lost = 0u64;
    let mut first_lost = None;
    for task in tasks {
        match task.await {
            Ok(r) => {
                histogram.add(&r.histogram).ok();
                summary.operations += r.operations;
                summary.bytes_sent += r.bytes_sent;
                summary.bytes_verified += r.bytes_verified;
                summary.mismatches += r.mismatches;
                match r.error {
                    Some(e) if e.contains("connection lost") => {
                        lost += 1;
                        first_lost.get_or_insert(e);
                    }
                    Some(e) if summary.errors.len() < 10 => summary.errors.push(e),
                    _ => {}
                }
            }
            Err(e) => summary.errors.push(format!("worker failed: {e}")),
        }
    }
    // A session failure ends every stream at once: say it once, with its
    // first cause, instead of once per stream.
    let failure = session.error().filter(|e| !e.is_graceful());
    if failure.is_some() || lost > 0 {
        let cause = match (failure, first_lost) {
            (Some(cause), _) => cause.to_string(),
            (None, Some(first)) => first,
            (None, None) => unreachable!("lost > 0 has a first error"),
        };
        let line = match lost {
            0 => format!("session failed: {cause}"),
            1 => format!("session failed: {cause} (1 stream ended by it)"),
            n => format!("session failed: {cause} ({n} streams ended by it)"),
        };
        summary.errors.insert(0, line);
    }
    let elapsed = start.elapsed();
    summary.elapsed_secs = elapsed.as_secs_f64();
    // Echoed bytes cross the connection twice; throughput counts them once.
    summary.throughput_mib_s =
        summary.bytes_verified as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9);
    summary.verified = summary.mismatches == 0
        && summary.errors.is_empty()
        && summary.bytes_verified == summary.bytes_sent;
    summary.latency = Latency {
        count: histogram.len(),
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    };
    // One PING for the RTT line; a failure here shows in the stats only.
    let _ = session.ping().await;
    let stats = session.stats();
    summary.session = SessionCounters {
        zero_window_events: stats.zero_window_events,
        probes_sent: stats.probes_sent,
        probes_answered: stats.probes_answered,
        blocked_on_connection_ms: stats.blocked_on_connection.map(|d| d.as_millis() as u64),
        blocked_on_streams_ms: stats.blocked_on_streams.map(|d| d.as_millis() as u64),
        rtt_us: stats.rtt.map(|d| d.as_micros() as u64),
        smoothed_rtt_us: stats.smoothed_rtt.map(|d| d.as_micros() as u64),
        windows_grown: stats.windows_grown,
        windows_shrunk: stats.windows_shrunk,
        recv_window: stats.recv_window,
    };
    summary
}

fn done(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

async fn pace(next: &mut Option<tokio::time::Instant>, interval: Option<Duration>) {
    if let (Some(at), Some(interval)) = (next.as_mut(), interval) {
        tokio::time::sleep_until(*at).await;
        *at += interval;
    }
}

const IO_CHUNK: usize = 64 * 1024;

/// One stream per round: send `size` bytes while reading the echo.
async fn bulk_worker(
    session: &Session,
    opts: &ClientOptions,
    worker: u64,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    progress: &Progress,
    result: &mut WorkerResult,
) -> Result<(), String> {
    let mut next = interval.map(|_| tokio::time::Instant::now());
    let mut round = 0u64;
    loop {
        pace(&mut next, interval).await;
        let seed = worker << 32 | round;
        let started = Instant::now();
        let stream = session.open().await.map_err(|e| format!("open: {e}"))?;
        let (mut reader, mut writer) = stream.split();
        let size = opts.size;
        let send = tokio::spawn(async move {
            let mut buf = vec![0u8; IO_CHUNK];
            let mut offset = 0u64;
            while offset < size {
                let n = (size - offset).min(IO_CHUNK as u64) as usize;
                fill_pattern(seed, offset, &mut buf[..n]);
                writer.write_all(&buf[..n]).await?;
                offset += n as u64;
            }
            writer.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let mut buf = vec![0u8; IO_CHUNK];
        let mut offset = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            if let Some(at) = check_pattern(seed, offset, &buf[..n]) {
                result.mismatches += 1;
                return Err(format!(
                    "stream {}: echoed byte {at} differs from what was sent",
                    reader.id()
                ));
            }
            offset += n as u64;
            progress
                .bytes_verified
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        send.await
            .map_err(|e| format!("writer: {e}"))?
            .map_err(|e| format!("write: {e}"))?;
        result.bytes_sent += size;
        result.bytes_verified += offset;
        if offset != size {
            return Err(format!(
                "stream {}: {offset} bytes echoed of {size}",
                reader.id()
            ));
        }
        result.operations += 1;
        result
            .histogram
            .saturating_record(started.elapsed().as_micros() as u64);
        round += 1;
        if deadline.is_none() || done(deadline) {
            return Ok(());
        }
    }
}

/// One request of the rr mode, sent as a typed message
/// (`creditmux::message`): the server echoes the bytes blindly and the
/// client decodes the echo as the same type and checks every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Per-stream sequence number, from 0.
    pub seq: u64,
    /// Length of `payload`.
    pub len: u32,
    /// FNV-1a (32-bit) of `payload`.
    pub checksum: u32,
    /// The deterministic pattern at this request's offset.
    pub payload: Vec<u8>,
}

/// 32-bit FNV-1a.
pub fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The message limit for rr payloads of `size` bytes: the payload plus
/// the header fields and bincode's length prefix, with room to spare.
pub fn rr_message_config(size: usize) -> MessageConfig {
    let max = u32::try_from(size.saturating_add(64)).unwrap_or(u32::MAX);
    MessageConfig::new().with_max_message_size(max)
}

/// One stream, many request/response exchanges on it, each a typed message.
async fn rr_worker(
    session: &Session,
    opts: &ClientOptions,
    worker: u64,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    progress: &Progress,
    result: &mut WorkerResult,
) -> Result<(), String> {
    let stream: Stream = session.open().await.map_err(|e| format!("open: {e}"))?;
    let id = stream.id();
    let (mut responses, mut requests) =
        message::framed::<Request, Request>(stream, rr_message_config(opts.message_size));
    let seed = worker;
    let size = opts.message_size;
    let len = u32::try_from(size).map_err(|_| format!("message size {size} above 4 GiB"))?;
    let mut payload = vec![0u8; size];
    let mut offset = 0u64;
    let mut next = interval.map(|_| tokio::time::Instant::now());
    let mut sent = 0u64;
    while (deadline.is_some() || sent < opts.requests) && !done(deadline) {
        pace(&mut next, interval).await;
        fill_pattern(seed, offset, &mut payload);
        let request = Request {
            seq: sent,
            len,
            checksum: checksum(&payload),
            payload: payload.clone(),
        };
        let started = Instant::now();
        requests
            .send(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        result.bytes_sent += size as u64;
        let response = match responses.recv().await {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                result.mismatches += 1;
                if let Some(code) = e.reset_code() {
                    requests.get_mut().reset(code);
                }
                return Err(format!("stream {id}: response {sent}: {e}"));
            }
            None => return Err(format!("stream {id}: ended before response {sent}")),
        };
        result
            .histogram
            .saturating_record(started.elapsed().as_micros() as u64);
        let problem = if response.seq != sent {
            Some(format!(
                "sequence number {} instead of {sent}",
                response.seq
            ))
        } else if response.len != len || response.payload.len() != size {
            Some(format!(
                "payload length {} (header {}) instead of {size}",
                response.payload.len(),
                response.len
            ))
        } else if response.checksum != checksum(&response.payload) {
            Some("checksum does not match the payload".to_string())
        } else {
            check_pattern(seed, offset, &response.payload)
                .map(|at| format!("echoed byte {at} differs from what was sent"))
        };
        if let Some(problem) = problem {
            result.mismatches += 1;
            return Err(format!("stream {id}: response {sent}: {problem}"));
        }
        offset += size as u64;
        sent += 1;
        result.operations += 1;
        result.bytes_verified += size as u64;
        progress
            .bytes_verified
            .fetch_add(size as u64, Ordering::Relaxed);
    }
    requests
        .close()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    match responses.recv().await {
        None => Ok(()),
        Some(Ok(extra)) => {
            result.mismatches += 1;
            Err(format!(
                "stream {id}: unexpected response {} after the last one",
                extra.seq
            ))
        }
        Some(Err(e)) => {
            result.mismatches += 1;
            Err(format!("stream {id}: after the last response: {e}"))
        }
    }
}

/// Totals of one served connection.
#[derive(Debug, Default, Clone)]
pub struct ServeStats {
    /// Streams accepted.
    pub streams: u64,
    /// Streams echoed to their end: every byte read was written back and
    /// the FIN was written to the transport (`shutdown` returned).
    pub completed: u64,
    /// Bytes echoed (written back).
    pub bytes: u64,
    /// Streams that ended otherwise (reset, or the connection ended).
    pub errors: u64,
    /// The last of those errors, or the accept loop's.
    pub last_error: Option<String>,
}

/// Echoes every stream of `session` until the peer closes it (or it ends).
pub async fn serve(session: Session) -> ServeStats {
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut stats = ServeStats::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let stream = match session.accept().await {
            Ok(Some(stream)) => stream,
            Ok(None) => break,
            Err(e) => {
                stats.last_error = Some(e.to_string());
                break;
            }
        };
        stats.streams += 1;
        let bytes = bytes.clone();
        let errors = errors.clone();
        let completed = completed.clone();
        let last_error = last_error.clone();
        tasks.spawn(async move {
            let (mut r, mut w) = stream.split();
            // Counted as echoed only once the FIN is on the transport.
            let outcome = match tokio::io::copy(&mut r, &mut w).await {
                Ok(n) => {
                    bytes.fetch_add(n, Ordering::Relaxed);
                    w.shutdown().await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    *last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
        // Reap finished echo tasks so the set stays as small as the number
        // of open streams (bounded by the session's stream limit).
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    stats.bytes = bytes.load(Ordering::Relaxed);
    stats.errors = errors.load(Ordering::Relaxed);
    stats.completed = completed.load(Ordering::Relaxed);
    let stream_error = last_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    if stats.last_error.is_none() {
        stats.last_error = stream_error;
    }
    stats
}

/// Parses a byte size: `4096`, `64k`, `64KiB`, `8M`, `1GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: `10`, `10s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}"))
}
