//! Sessions over a fault-injecting TCP proxy on loopback
//! (`support/proxy.rs`): added delay, 1-byte and random pieces, withheld
//! WINDOW_UPDATEs, a stalled direction, a cut mid-frame. Every transfer
//! either completes byte-exact or fails with a clear error within the
//! configured timeouts: never a hang, a panic, or a reordered or corrupt
//! byte. Seeds are fixed; `FAULT_SEED` picks another.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use creditmux::{Config, ConnectionError, ErrorCode, Session};
use support::proxy::{Faults, Pieces, Plan, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed)
}

/// Small windows and short timers, so faults bite within a test's time.
fn config() -> Config {
    Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .max_frame_payload(4 * 1024)
        .probe_interval(Duration::from_millis(20))
        .probe_max(Duration::from_millis(200))
        .keepalive_interval(Some(Duration::from_millis(300)))
        .keepalive_timeout(Duration::from_millis(300))
        .write_timeout(Duration::from_secs(2))
        .drain_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn byte(stream: usize, off: usize) -> u8 {
    (off.wrapping_mul(131) ^ stream.wrapping_mul(7919) ^ (off >> 11)) as u8
}

/// Echoes every stream until the session ends.
async fn serve_echo(session: Session) {
    while let Ok(Some(stream)) = session.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        });
    }
}

/// A client session to `server` through a proxy with `plan`, the server
/// echoing; returns the client and what the proxy saw.
async fn session_through(plan: Plan) -> (Session, Proxy, Session) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        Session::server(socket, config()).await
    });
    let proxy = Proxy::start(target, plan).await;
    let socket = TcpStream::connect(proxy.addr).await.unwrap();
    let client = Session::client(socket, config()).await.expect("handshake");
    let server = server.await.unwrap().expect("server handshake");
    tokio::spawn(serve_echo(server.clone()));
    (client, proxy, server)
}

/// `streams` streams each send `size` bytes and read the echo, checking
/// every byte as it comes. `Ok` when all came back whole; otherwise the
/// first error, after checking that what did come back was right.
async fn echo(client: &Session, streams: usize, size: usize) -> Result<(), String> {
    let mut tasks = Vec::new();
    for n in 0..streams {
        let stream = client.open().await.map_err(|e| format!("open: {e}"))?;
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            let writer = tokio::spawn(async move {
                let data: Vec<u8> = (0..size).map(|off| byte(n, off)).collect();
                for chunk in data.chunks(7_000) {
                    w.write_all(chunk).await?;
                }
                w.shutdown().await
            });
            let mut got = 0usize;
            let mut buf = vec![0u8; 10_000];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(k) => {
                        for (i, b) in buf[..k].iter().enumerate() {
                            assert_eq!(
                                *b,
                                byte(n, got + i),
                                "stream {n}: byte {} corrupt",
                                got + i
                            );
                        }
                        got += k;
                    }
                    Err(e) => return Err(format!("stream {n}: read after {got} bytes: {e}")),
                }
            }
            match writer.await.unwrap() {
                Ok(()) if got == size => Ok(()),
                Ok(()) => Err(format!(
                    "stream {n}: {got} of {size} bytes came back, then FIN"
                )),
                Err(e) => Err(format!("stream {n}: write: {e}")),
            }
        }));
    }
    let mut first = Ok(());
    for t in tasks {
        let r = t.await.expect("a stream task panicked");
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// Runs `echo` through `plan` and expects every byte back within `limit`.
async fn completes(plan: Plan, streams: usize, size: usize, limit: Duration) -> (Session, Proxy) {
    let (client, proxy, _server) = session_through(plan.clone()).await;
    let result = tokio::time::timeout(limit, echo(&client, streams, size))
        .await
        .unwrap_or_else(|_| panic!("no end within {limit:?} under {plan:?}"));
    assert_eq!(result, Ok(()), "under {plan:?}");
    let report = tokio::time::timeout(limit, client.close(ErrorCode::NO_ERROR))
        .await
        .expect("close ends");
    assert!(report.is_ok(), "{report:?}");
    (client, proxy)
}

#[tokio::test]
async fn a_delay_each_way_keeps_every_byte() {
    let delayed = Faults {
        delay: Duration::from_millis(15),
        ..Faults::default()
    };
    let plan = Plan {
        seed: seed(),
        to_server: delayed.clone(),
        to_client: delayed,
    };
    completes(plan, 4, 200_000, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn one_byte_pieces_keep_every_byte() {
    let bytes = Faults {
        pieces: Pieces::Bytes,
        ..Faults::default()
    };
    let plan = Plan {
        seed: seed(),
        to_server: bytes.clone(),
        to_client: bytes,
    };
    completes(plan, 2, 12_000, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn random_pieces_keep_every_byte() {
    for k in 0..3 {
        let random = Faults {
            pieces: Pieces::Random(5_000),
            ..Faults::default()
        };
        let plan = Plan {
            seed: seed() + k,
            to_server: random.clone(),
            to_client: random,
        };
        completes(plan, 4, 150_000, Duration::from_secs(30)).await;
    }
}

/// SPEC §11.4: with every WINDOW_UPDATE withheld but the answers to
/// BLOCKED, the probe alone moves the credit, both ways.
#[tokio::test]
async fn withheld_window_updates_are_healed_by_the_probe() {
    let withheld = Faults {
        withhold_updates: true,
        ..Faults::default()
    };
    let plan = Plan {
        seed: seed(),
        to_server: withheld.clone(),
        to_client: withheld,
    };
    let (client, proxy) = completes(plan, 3, 100_000, Duration::from_secs(60)).await;
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.updates_dropped > 0, "{seen:?}");
    assert!(seen.blocked > 0 && seen.updates_passed > 0, "{seen:?}");
    assert!(client.stats().probes_sent > 0);
}

/// A direction that stalls for less than the idle timeout only slows the
/// transfer.
#[tokio::test]
async fn a_short_stall_only_slows_the_transfer() {
    let plan = Plan {
        seed: seed(),
        to_server: Faults::default(),
        to_client: Faults {
            stall: Some((100_000, Duration::from_millis(250))),
            ..Faults::default()
        },
    };
    completes(plan, 4, 100_000, Duration::from_secs(30)).await;
}

/// A direction that stalls beyond the keepalive interval and timeout: the
/// client ends the session for IDLE_TIMEOUT, and every stream fails with
/// that cause, within the configured time.
#[tokio::test]
async fn a_long_stall_fails_every_stream_with_the_idle_timeout() {
    let plan = Plan {
        seed: seed(),
        to_server: Faults::default(),
        to_client: Faults {
            stall: Some((50_000, Duration::from_secs(30))),
            ..Faults::default()
        },
    };
    let (client, _proxy, _server) = session_through(plan).await;
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), echo(&client, 4, 200_000))
        .await
        .expect("no hang");
    let err = result.expect_err("a stalled link cannot carry it all");
    assert!(
        err.contains("unresponsive") || err.contains("IDLE_TIMEOUT"),
        "{err}"
    );
    // keepalive interval + timeout is 600 ms; allow for scheduling.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.closed().await, ConnectionError::IdleTimeout);
}

/// The connection cut in the middle of a frame: both sides report that
/// the transport ended, no stream hangs, and the bytes that did arrive
/// were right (checked as they were read).
#[tokio::test]
async fn a_cut_mid_frame_fails_every_stream_cleanly() {
    for (k, cut) in [100_003u64, 257_777].into_iter().enumerate() {
        let plan = Plan {
            seed: seed() + k as u64,
            to_server: Faults {
                cut_after: Some(cut),
                ..Faults::default()
            },
            to_client: Faults::default(),
        };
        let (client, _proxy, server) = session_through(plan).await;
        let result = tokio::time::timeout(Duration::from_secs(10), echo(&client, 4, 200_000))
            .await
            .expect("no hang");
        let err = result.expect_err("a cut connection cannot carry it all");
        assert!(err.contains("connection lost"), "{err}");
        let cause = tokio::time::timeout(Duration::from_secs(10), client.closed())
            .await
            .expect("the client ends");
        assert!(!cause.is_graceful(), "{cause:?}");
        let cause = tokio::time::timeout(Duration::from_secs(10), server.closed())
            .await
            .expect("the server ends");
        assert!(!cause.is_graceful(), "{cause:?}");
    }
}
