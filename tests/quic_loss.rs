//! QUIC with loss, through a userspace UDP proxy: why native mode exists.
//!
//! The proxy drops a share of the large server-to-client datagrams, the
//! ones that carry stream A's bulk data; stream B exchanges small messages
//! at the same time. In native mode B is its own QUIC stream, so a lost
//! datagram of A delays only A (and B only when a B message happened to
//! share that datagram); in framed mode both ride one QUIC stream and every
//! loss holds up both. The tests assert what does not depend on timing:
//! both streams complete, byte-exact and in order, and in native mode B
//! finishes all its round trips while A is still in progress. The round
//! trip percentiles of B are printed for comparison (`--nocapture`).

#![cfg(feature = "quic")]

#[path = "../examples/support/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use certs::Identity;
use creditmux::{Config, Session, quic};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// Bulk bytes on stream A.
const BULK: usize = 16 * 1024 * 1024;
/// Round trips on stream B.
const ROUND_TRIPS: usize = 50;
/// Datagrams at least this large are A's path (full-size QUIC packets).
const LARGE: usize = 1000;
/// Share of those dropped.
const DROP_SHARE: f64 = 0.05;
const LIMIT: Duration = Duration::from_secs(120);

/// Forwards datagrams between one client and `server`, dropping a share of
/// the large server-to-client ones. Returns its address and the count of
/// dropped datagrams.
async fn lossy_proxy(server: SocketAddr, seed: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut client: Option<SocketAddr> = None;
        let mut up = vec![0u8; 65536];
        let mut down = vec![0u8; 65536];
        loop {
            tokio::select! {
                received = front.recv_from(&mut up) => {
                    let Ok((n, from)) = received else { return };
                    client = Some(from);
                    let _ = back.send(&up[..n]).await;
                }
                received = back.recv(&mut down) => {
                    let Ok(n) = received else { return };
                    if n >= LARGE && rng.random_bool(DROP_SHARE) {
                        counter.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(client) = client {
                        let _ = front.send_to(&down[..n], client).await;
                    }
                }
            }
        }
    });
    (addr, dropped)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A session pair whose server-to-client datagrams pass the lossy proxy.
/// The endpoints come back too: they must outlive the sessions.
async fn pair_through_proxy(
    native: bool,
) -> (Session, Session, Arc<AtomicU64>, [quinn::Endpoint; 2]) {
    let identity = Identity::self_signed();
    let config = Config::default();
    let server_tls = identity.server_config().unwrap();
    let server_ep = if native {
        quic::server_endpoint(loopback(), server_tls, quic::Mode::Native, &config).unwrap()
    } else {
        quic::server_endpoint(
            loopback(),
            server_tls,
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap()
    };
    let (proxy, dropped) = lossy_proxy(server_ep.local_addr().unwrap(), 7).await;
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        let accepted = if native {
            quic::accept(&server_ep, quic::Mode::Native, server_config).await
        } else {
            quic::accept(&server_ep, quic::Mode::Framed, server_config).await
        };
        let session = accepted.unwrap().expect("a connection").0;
        (session, server_ep)
    });
    let client_tls = identity.client_config();
    let client_ep = if native {
        quic::client_endpoint(loopback(), client_tls, quic::Mode::Native, &config).unwrap()
    } else {
        quic::client_endpoint(
            loopback(),
            client_tls,
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap()
    };
    let client = if native {
        quic::connect(&client_ep, proxy, "localhost", quic::Mode::Native, config).await
    } else {
        quic::connect(&client_ep, proxy, "localhost", quic::Mode::Framed, config).await
    }
    .unwrap();
    let (server, server_ep) = server.await.unwrap();
    (client, server, dropped, [client_ep, server_ep])
}

/// What one run observed.
struct Run {
    /// B's round trips that completed before A's last byte arrived.
    b_done_before_a: usize,
    b_rtts: Vec<Duration>,
    dropped: u64,
}

/// The server sends BULK bytes on A and answers ROUND_TRIPS requests on B;
/// the client checks every byte and the order of B's replies.
async fn run(native: bool) -> Run {
    let (client, server, dropped, _endpoints) = pair_through_proxy(native).await;

    let server_task = tokio::spawn(async move {
        let mut a = server.accept().await.unwrap().expect("stream A");
        let mut b = server.accept().await.unwrap().expect("stream B");
        let bulk = tokio::spawn(async move {
            let mut hello = [0u8; 1];
            a.read_exact(&mut hello).await.unwrap();
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            while sent < BULK {
                let n = chunk.len().min(BULK - sent);
                a.write_all(&chunk[..n]).await.unwrap();
                sent += n;
            }
            a.shutdown().await.unwrap();
            let mut rest = Vec::new();
            a.read_to_end(&mut rest).await.unwrap();
        });
        let mut hello = [0u8; 1];
        b.read_exact(&mut hello).await.unwrap();
        let mut request = [0u8; 8];
        for _ in 0..ROUND_TRIPS {
            b.read_exact(&mut request).await.unwrap();
            b.write_all(&request).await.unwrap();
        }
        b.shutdown().await.unwrap();
        // Held until the client finishes too: dropped while the client may
        // still send, B would be reset (CANCEL), taking along replies not
        // yet delivered.
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the last request");
        bulk.await.unwrap();
        server
    });

    // QUIC streams reach the peer with their first byte, so each stream
    // starts with one.
    let mut a = client.open().await.unwrap();
    a.write_all(b"A").await.unwrap();
    let mut b = client.open().await.unwrap();
    b.write_all(b"B").await.unwrap();

    let a_finished = Arc::new(AtomicBool::new(false));
    let a_flag = a_finished.clone();
    let bulk = tokio::spawn(async move {
        let mut received = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = a.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            for (i, byte) in buf[..n].iter().enumerate() {
                let at = received + i;
                assert_eq!(*byte, ((at % (64 * 1024)) % 251) as u8, "A byte {at}");
            }
            received += n;
        }
        a_flag.store(true, Ordering::SeqCst);
        a.shutdown().await.unwrap();
        assert_eq!(received, BULK, "A length");
    });

    let mut b_done_before_a = 0;
    let mut b_rtts = Vec::with_capacity(ROUND_TRIPS);
    for seq in 0..ROUND_TRIPS as u64 {
        let start = Instant::now();
        b.write_all(&seq.to_be_bytes()).await.unwrap();
        let mut reply = [0u8; 8];
        b.read_exact(&mut reply).await.unwrap();
        assert_eq!(u64::from_be_bytes(reply), seq, "B replies in order");
        b_rtts.push(start.elapsed());
        if !a_finished.load(Ordering::SeqCst) {
            b_done_before_a += 1;
        }
    }
    b.shutdown().await.unwrap();
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the last reply");

    bulk.await.unwrap();
    let server = server_task.await.unwrap();
    client.close(creditmux::ErrorCode::NO_ERROR).await.unwrap();
    server.closed().await;
    b_rtts.sort();
    Run {
        b_done_before_a,
        b_rtts,
        dropped: dropped.load(Ordering::Relaxed),
    }
}

fn report(mode: &str, run: &Run) {
    let pct = |p: f64| run.b_rtts[((run.b_rtts.len() - 1) as f64 * p) as usize];
    println!(
        "{mode}: dropped {} datagrams; B round trips p50 {:?} p90 {:?} max {:?}; {} of {ROUND_TRIPS} done before A finished",
        run.dropped,
        pct(0.5),
        pct(0.9),
        pct(1.0),
        run.b_done_before_a,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_mode_keeps_the_unaffected_stream_moving_under_loss() {
    let run = tokio::time::timeout(LIMIT, run(true))
        .await
        .expect("within the limit");
    report("native", &run);
    assert!(run.dropped > 0, "the proxy dropped some of A's datagrams");
    assert_eq!(
        run.b_done_before_a, ROUND_TRIPS,
        "every B round trip completes while A is still in progress"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_mode_delivers_both_streams_in_order_under_loss() {
    let run = tokio::time::timeout(LIMIT, run(false))
        .await
        .expect("within the limit");
    report("framed", &run);
    assert!(run.dropped > 0, "the proxy dropped some of A's datagrams");
}
