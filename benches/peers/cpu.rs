//! CPU time of a measurement's two sides: the client thread and the server
//! thread, each with its own current-thread runtime, so together they are
//! all the CPU the implementation spends (loopback kernel work done in
//! their system calls included). Read from the kernel's per-thread
//! scheduler statistics (`/proc/self/task/<tid>/schedstat`, whose first
//! field is the nanoseconds the thread has run), which needs no unsafe
//! clock call and is precise to the nanosecond.
//!
//! The kernel brings a thread's figure up to date when the thread blocks
//! or at a scheduler tick, so a thread that is running while it is read
//! can be behind by up to a tick. [`CpuMeter`] therefore lets both sides
//! go idle for a moment before each reading: at that point both figures
//! are exact.
//!
//! The figure is the time the threads ran, not the work they did: on a
//! VM or a machine busy with other work it also counts the cache misses
//! that work causes, so it rises with the load (rr's raw TCP figure
//! doubled on this project's 2-core VM while a build ran). Compare rows
//! of the same run.
//!
//! A measurement whose server side runs on a multi-thread runtime has no
//! two known threads: [`ProcessCpuMeter`] sums every thread of the
//! process instead (the process runs nothing else during a measurement).
//! It reads under load, where a running thread's figure can be behind by
//! up to a scheduler tick: over a measurement of seconds that is well
//! under a percent.

use std::cell::Cell;
use std::time::Duration;

use crate::harness::Res;
use crate::transports::s;

/// How long both sides idle before a reading, so that both threads have
/// blocked since their last work (see the module docs).
const SETTLE: Duration = Duration::from_millis(5);

thread_local! {
    /// On a client thread: the thread id of its measurement's server side.
    static PEER: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The kernel's id of the calling thread, from the `/proc/thread-self`
/// link (`<pid>/task/<tid>`).
pub fn current_thread() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Called on a client thread: `tid` is the server side's thread, measured
/// along with this one by every [`CpuMeter`] started on this thread.
pub fn set_peer(tid: Option<u32>) {
    PEER.with(|peer| peer.set(tid));
}

/// CPU time thread `tid` of this process has run so far.
fn thread_cpu(tid: u32) -> Res<Duration> {
    let path = format!("/proc/self/task/{tid}/schedstat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("{path}: empty"))?
        .parse()
        .map_err(s)?;
    Ok(Duration::from_nanos(ns))
}

/// CPU time of the measurement's client thread (the caller) and server
/// thread since [`CpuMeter::start`].
pub struct CpuMeter {
    threads: [u32; 2],
    start: Duration,
}

impl CpuMeter {
    /// Starts measuring, after both sides have idled for a moment. Call on
    /// the client side of a measurement.
    pub async fn start() -> Res<CpuMeter> {
        let client = current_thread().ok_or("no /proc/thread-self: CPU time not measurable")?;
        let server = PEER
            .with(Cell::get)
            .ok_or("the server side's thread is not known")?;
        let threads = [client, server];
        tokio::time::sleep(SETTLE).await;
        let start = Self::total(threads)?;
        Ok(CpuMeter { threads, start })
    }

    /// The CPU time both sides have run since [`start`](CpuMeter::start),
    /// read after both have idled for a moment.
    pub async fn stop(self) -> Res<Duration> {
        tokio::time::sleep(SETTLE).await;
        Ok(Self::total(self.threads)?.saturating_sub(self.start))
    }

    fn total(threads: [u32; 2]) -> Res<Duration> {
        Ok(thread_cpu(threads[0])? + thread_cpu(threads[1])?)
    }
}

/// CPU time every thread of this process has run so far: the sum over
/// `/proc/self/task/*/schedstat`. A thread that ends between the listing
/// and its reading is left out.
fn process_cpu() -> Res<Duration> {
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    let mut total = Duration::ZERO;
    for task in tasks {
        let Some(tid) = task
            .map_err(s)?
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if let Ok(cpu) = thread_cpu(tid) {
            total += cpu;
        }
    }
    Ok(total)
}

/// CPU time of every thread of the process since
/// [`ProcessCpuMeter::start`]: both sides of a measurement whatever their
/// runtimes, read without waiting for them to idle (see the module docs).
pub struct ProcessCpuMeter {
    start: Duration,
}

impl ProcessCpuMeter {
    pub fn start() -> Res<ProcessCpuMeter> {
        Ok(ProcessCpuMeter {
            start: process_cpu()?,
        })
    }

    /// The CPU time the process has run since [`start`](Self::start).
    pub fn elapsed(&self) -> Res<Duration> {
        Ok(process_cpu()?.saturating_sub(self.start))
    }
}
