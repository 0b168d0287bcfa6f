//! Runs one measurement: a server side and a client side, each on its own
//! thread with its own tokio runtime (current-thread, or for the server
//! side optionally multi-thread), under a timeout that is enforced from
//! outside both runtimes so that nothing can hang the bench.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::cpu;

/// A boxed, sendable future.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Results inside a measurement: errors are messages.
pub type Res<T> = Result<T, String>;

/// Why a measurement has no value.
#[derive(Clone, Debug)]
pub enum Failure {
    /// It did not finish within the scenario timeout.
    Timeout,
    /// It failed (an I/O or protocol error, or a panic).
    Error(String),
    /// It was not run (an earlier run of it failed, or the time budget is spent).
    Skipped(String),
    /// A request waited longer than the scenario allows (rr-under-load:
    /// starved by the load on its connection).
    Starved(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Error(msg) => write!(f, "error: {msg}"),
            Failure::Skipped(why) => write!(f, "skipped: {why}"),
            Failure::Starved(why) => write!(f, "starved: {why}"),
        }
    }
}

/// The value of a measurement or why there is none.
pub type Outcome<T> = Result<T, Failure>;

/// Extra time the server side gets beyond the client's timeout, and the
/// time allowed to a thread to wind down after its side is finished.
const GRACE: Duration = Duration::from_secs(3);

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}

/// A current-thread runtime with I/O and timers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

/// The runtime a measurement's server side runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRuntime {
    /// A current-thread runtime on the server side's own thread.
    CurrentThread,
    /// A multi-thread runtime with one worker thread per available core
    /// ([`worker_threads`]); the server future runs on a worker, spawned,
    /// not on the thread that started the runtime.
    MultiThread,
}

/// The worker threads of a [`ServerRuntime::MultiThread`] runtime: the
/// machine's available parallelism.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A multi-thread runtime with I/O and timers, [`worker_threads`] workers.
fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("peers-server-worker")
        .enable_all()
        .build()
        .expect("a multi-thread tokio runtime")
}

/// Runs `server` and `client`, each on its own thread and current-thread
/// runtime: [`run_pair_on`] with [`ServerRuntime::CurrentThread`].
pub fn run_pair<T, S, C>(timeout: Duration, server: S, client: C) -> Outcome<T>
where
    T: Send + 'static,
    S: FnOnce(mpsc::SyncSender<SocketAddr>) -> BoxFut<'static, Res<()>> + Send + 'static,
    C: FnOnce(SocketAddr) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    run_pair_on(ServerRuntime::CurrentThread, timeout, server, client)
}

/// Runs `server` on a thread of its own with a runtime of kind
/// `server_runtime`, and `client` on a thread of its own with a
/// current-thread runtime. `server` binds, sends its address through the
/// channel it is given, and serves until the client side is done (it is
/// then dropped).
/// Returns the client's value, `Timeout` if the client did not finish
/// within `timeout`, or the client's error (with the server's, if the
/// server side failed too).
///
/// With a current-thread server runtime, the client side can measure both
/// threads' CPU time with [`CpuMeter`](crate::cpu::CpuMeter); with a
/// multi-thread one, the process's with
/// [`ProcessCpuMeter`](crate::cpu::ProcessCpuMeter).
///
/// Threads that do not finish (a blocked thread, not just a pending
/// future) are left behind rather than joined, so the bench still ends.
pub fn run_pair_on<T, S, C>(
    server_runtime: ServerRuntime,
    timeout: Duration,
    server: S,
    client: C,
) -> Outcome<T>
where
    T: Send + 'static,
    S: FnOnce(mpsc::SyncSender<SocketAddr>) -> BoxFut<'static, Res<()>> + Send + 'static,
    C: FnOnce(SocketAddr) -> BoxFut<'static, Res<T>> + Send + 'static,
{
    let (addr_tx, addr_rx) = mpsc::sync_channel::<SocketAddr>(1);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (server_tx, server_rx) = mpsc::channel::<Res<()>>();
    // The server thread's id, known before it sends its address, for the
    // client side's CPU readings.
    let server_tid = Arc::new(OnceLock::new());
    let tid = server_tid.clone();
    let server_thread = std::thread::Builder::new()
        .name("peers-server".into())
        .spawn(move || {
            if let Some(id) = cpu::current_thread() {
                let _ = tid.set(id);
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let rt = match server_runtime {
                    ServerRuntime::CurrentThread => runtime(),
                    ServerRuntime::MultiThread => multi_thread_runtime(),
                };
                let result = rt.block_on(async move {
                    let served = server(addr_tx);
                    let served = match server_runtime {
                        ServerRuntime::CurrentThread => served,
                        // On a worker, as every task it spawns; a panic
                        // there comes back as the task's error.
                        ServerRuntime::MultiThread => {
                            let task = tokio::spawn(served);
                            Box::pin(async move { task.await.map_err(|e| e.to_string())? })
                        }
                    };
                    tokio::select! {
                        r = tokio::time::timeout(timeout + GRACE, served) => {
                            r.unwrap_or(Ok(()))
                        }
                        _ = done_rx => Ok(()),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
                result
            }));
            let _ = server_tx.send(outcome.unwrap_or_else(|p| Err(panic_message(p))));
        })
        .expect("spawn the server thread");

    let addr = match addr_rx.recv_timeout(timeout) {
        Ok(addr) => addr,
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(Failure::Timeout),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let msg = match server_rx.recv_timeout(GRACE) {
                Ok(Err(e)) => e,
                _ => "ended before listening".into(),
            };
            let _ = server_thread.join();
            return Err(Failure::Error(format!("server: {msg}")));
        }
    };

    let (client_tx, client_rx) = mpsc::channel::<Outcome<T>>();
    let server_tid = server_tid.get().copied();
    let client_thread = std::thread::Builder::new()
        .name("peers-client".into())
        .spawn(move || {
            cpu::set_peer(server_tid);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let rt = runtime();
                let result = rt.block_on(async move {
                    match tokio::time::timeout(timeout, client(addr)).await {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(Failure::Error(e)),
                        Err(_) => Err(Failure::Timeout),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
                result
            }));
            let _ =
                client_tx.send(outcome.unwrap_or_else(|p| Err(Failure::Error(panic_message(p)))));
            let _ = done_tx.send(());
        })
        .expect("spawn the client thread");

    let result = match client_rx.recv_timeout(timeout + GRACE) {
        Ok(result) => {
            let _ = client_thread.join();
            result
        }
        // The client thread is blocked outside its runtime: leave it.
        Err(_) => Err(Failure::Timeout),
    };
    let server_result = server_rx.recv_timeout(GRACE);
    if server_result.is_ok() {
        let _ = server_thread.join();
    } else {
        eprintln!("  (server thread did not end; left behind)");
    }
    match (result, server_result) {
        (Ok(v), _) => Ok(v),
        (Err(Failure::Error(c)), Ok(Err(s))) => {
            Err(Failure::Error(format!("client: {c}; server: {s}")))
        }
        (Err(f), Ok(Err(s))) => {
            eprintln!("  (server side: {s})");
            Err(f)
        }
        (Err(f), _) => Err(f),
    }
}
