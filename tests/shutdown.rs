//! Done means delivered (SPEC §13, BRIEF "Done means delivered"): a side
//! that writes, awaits `shutdown()` and `close()`, and then drops its
//! runtime at once has lost nothing. Races hide on an idle machine, so
//! each loop runs with a thread burning CPU beside it.
//!
//! `SHUTDOWN_LOOPS` sets the iterations (default 200 each).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use creditmux::{Config, ErrorCode, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn loops() -> usize {
    std::env::var("SHUTDOWN_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Spins on one core until dropped, so scheduling races show.
struct Burner(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Burner {
    fn start() -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Burner(stop, Some(thread))
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7919)) as u8)
        .collect()
}

/// How the writing side ends its stream before `close()`.
#[derive(Copy, Clone, Debug)]
enum End {
    /// `shutdown().await`, then the handle stays alive through `close()`.
    Hold,
    /// `shutdown().await`, then the handle is dropped before `close()`.
    Drop,
}

/// The writing side, on a runtime of its own in a thread of its own:
/// connects, writes `data` on one stream, awaits `shutdown()` and
/// `close()`, and drops the runtime the moment `close()` returns.
fn write_then_exit(addr: SocketAddr, data: Vec<u8>, end: End) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let session = Session::client(socket, Config::default()).await.unwrap();
            let mut stream = session.open().await.unwrap();
            for chunk in data.chunks(50_000) {
                stream.write_all(chunk).await.unwrap();
            }
            stream.shutdown().await.unwrap();
            let held = match end {
                End::Hold => Some(stream),
                End::Drop => {
                    drop(stream);
                    None
                }
            };
            let _ = session.close(ErrorCode::NO_ERROR).await;
            drop(held);
        });
        // The process "exits": every task and the driver are dropped now.
        drop(runtime);
    })
}

/// Accepts one session and one stream, reads it to its end (which needs
/// the FIN), checks every byte, then lets go of the stream.
async fn read_all(listener: &TcpListener, expected: &[u8], round: usize) {
    let (socket, _) = listener.accept().await.unwrap();
    let session = Session::server(socket, Config::default()).await.unwrap();
    let mut stream = session
        .accept()
        .await
        .unwrap_or_else(|e| panic!("round {round}: accept failed: {e}"))
        .unwrap_or_else(|| panic!("round {round}: no stream"));
    let mut got = Vec::with_capacity(expected.len());
    let result = stream.read_to_end(&mut got).await;
    assert!(
        result.is_ok(),
        "round {round}: read {} of {} bytes, then {result:?}",
        got.len(),
        expected.len()
    );
    assert_eq!(got.len(), expected.len(), "round {round}: byte count");
    assert!(got == expected, "round {round}: bytes differ");
    drop(stream);
    session.closed().await;
}

async fn shutdown_loop(end: End) {
    let _burner = Burner::start();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for round in 0..loops() {
        let data = pattern(round, 64 * 1024 + round * 997);
        let writer = write_then_exit(addr, data.clone(), end);
        tokio::time::timeout(Duration::from_secs(20), read_all(&listener, &data, round))
            .await
            .unwrap_or_else(|_| panic!("round {round} ({end:?}): no end within 20 s"));
        writer.join().expect("the writing side panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_awaits_shutdown_and_close_then_exits_loses_nothing() {
    shutdown_loop(End::Hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_drops_its_stream_after_shutdown_then_closes_and_exits_loses_nothing() {
    shutdown_loop(End::Drop).await;
}

/// The exiting side is an echo server: it accepts one stream, copies it
/// back, awaits `shutdown()`, drops the stream, awaits `close()` and drops
/// its runtime at once.
fn echo_then_exit(
    listener: std::net::TcpListener,
    close_early: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let (socket, _) = listener.accept().await.unwrap();
            let session = Session::server(socket, Config::default()).await.unwrap();
            let stream = session.accept().await.unwrap().unwrap();
            let echo = tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
            if close_early {
                // GOAWAY while the stream is in flight (a server told to
                // stop): the stream still completes.
                let _ = session.close(ErrorCode::NO_ERROR).await;
                echo.await.unwrap();
            } else {
                echo.await.unwrap();
                let _ = session.close(ErrorCode::NO_ERROR).await;
            }
        });
        drop(runtime);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_server_that_closes_and_exits_after_each_stream_loses_nothing() {
    echo_loop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_server_that_closes_while_its_stream_is_in_flight_loses_nothing() {
    echo_loop(true).await;
}

async fn echo_loop(close_early: bool) {
    let _burner = Burner::start();
    for round in 0..loops() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = echo_then_exit(listener, close_early);
        let data = pattern(round, 64 * 1024 + round * 997);
        let check = async {
            let socket = TcpStream::connect(addr).await.unwrap();
            let session = Session::client(socket, Config::default()).await.unwrap();
            let stream = session.open().await.unwrap();
            let (mut r, mut w) = stream.split();
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                if close_early {
                    // Finish after the server's GOAWAY has arrived.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            let result = r.read_to_end(&mut back).await;
            assert!(
                result.is_ok(),
                "round {round}: {} of {} bytes back, then {result:?}",
                back.len(),
                data.len()
            );
            assert!(back == data, "round {round}: the echo differs");
            writer.await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(20), check)
            .await
            .unwrap_or_else(|_| panic!("round {round}: no end within 20 s"));
        server.join().expect("the echo side panicked");
    }
}

/// The same over QUIC, framed and native: the writing side has its own
/// runtime and endpoint, and drops both the moment `close()` returns.
#[cfg(feature = "quic")]
#[path = "../examples/support/certs.rs"]
mod certs;

#[cfg(feature = "quic")]
mod quic {
    use super::*;
    use crate::certs::Identity;
    use creditmux::quic;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// How the writing side ends its stream before `close()`.
    #[derive(Copy, Clone, Debug)]
    enum Finish {
        /// `shutdown().await`: in native mode it returns once the peer's
        /// QUIC acknowledged every byte and the FIN.
        Shutdown,
        /// `finish()` and drop at once: `close()` has to wait for the
        /// bytes instead.
        NoWait,
    }

    fn write_then_exit(
        addr: SocketAddr,
        identity: Arc<Identity>,
        mode: quic::Mode,
        data: Vec<u8>,
        finish: Finish,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = Config::default();
                let ep = quic::client_endpoint(loopback(), identity.client_config(), mode, &config)
                    .unwrap();
                let session = quic::connect(&ep, addr, "localhost", mode, config)
                    .await
                    .unwrap();
                let endpoint = ep;
                let mut stream = session.open().await.unwrap();
                for chunk in data.chunks(50_000) {
                    stream.write_all(chunk).await.unwrap();
                }
                match finish {
                    Finish::Shutdown => stream.shutdown().await.unwrap(),
                    Finish::NoWait => stream.finish().unwrap(),
                }
                drop(stream);
                let _ = session.close(ErrorCode::NO_ERROR).await;
                drop(session);
                drop(endpoint);
            });
            drop(runtime);
        })
    }

    async fn quic_loop(mode: quic::Mode, finish: Finish) {
        let _burner = Burner::start();
        let identity = Arc::new(Identity::self_signed());
        let config = Config::default();
        let server_tls = identity.server_config().unwrap();
        let endpoint = quic::server_endpoint(loopback(), server_tls, mode, &config).unwrap();
        let addr = endpoint.local_addr().unwrap();
        // QUIC handshakes cost more than TCP's: a quarter of the rounds.
        for round in 0..loops().div_ceil(4) {
            let data = pattern(round, 64 * 1024 + round * 997);
            let writer = write_then_exit(addr, identity.clone(), mode, data.clone(), finish);
            let check = async {
                let accepted = quic::accept(&endpoint, mode, config.clone()).await;
                let (session, _) = accepted.unwrap().expect("a connection");
                let mut stream = session
                    .accept()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: accept failed: {e}"))
                    .unwrap_or_else(|| panic!("round {round}: no stream"));
                let mut got = Vec::new();
                let result = stream.read_to_end(&mut got).await;
                assert!(
                    result.is_ok(),
                    "round {round}: read {} of {} bytes, then {result:?}",
                    got.len(),
                    data.len()
                );
                assert!(got == data, "round {round}: bytes differ");
            };
            tokio::time::timeout(Duration::from_secs(20), check)
                .await
                .unwrap_or_else(|_| panic!("round {round}: no end within 20 s"));
            writer.join().expect("the writing side panicked");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_framed_quic_writer_that_closes_and_exits_loses_nothing() {
        quic_loop(quic::Mode::Framed, Finish::Shutdown).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_native_quic_writer_that_closes_and_exits_loses_nothing() {
        quic_loop(quic::Mode::Native, Finish::Shutdown).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_framed_quic_writer_that_finishes_without_waiting_then_closes_and_exits_loses_nothing()
     {
        quic_loop(quic::Mode::Framed, Finish::NoWait).await;
    }

    /// SPEC §18.6: the drain holds the connection open until the peer's
    /// QUIC acknowledged what the dropped stream still had to deliver.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_native_quic_writer_that_finishes_without_waiting_then_closes_and_exits_loses_nothing()
     {
        quic_loop(quic::Mode::Native, Finish::NoWait).await;
    }
}
