//! The delay path of tests/support/delay.rs: its pacing arithmetic, the
//! proxy alone over raw TCP (bytes exact and in order, the end of stream
//! forwarded, the delay a lower bound, a refused target ending the
//! connection), and a creditmux session through it.
//!
//! No test asserts an upper bound on time: only lower bounds that follow
//! from the proxy's own sleeps, which a slow machine cannot break.

mod support;

use std::time::Duration;

use creditmux::{Config, Session, tcp};
use rand::{Rng, SeedableRng, rngs::StdRng};
use support::delay::{DelayProxy, Link, Pacer};
use support::sessions::{bounded, echo_suite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const DELAY: Duration = Duration::from_millis(5);
const RATE: u64 = 200_000_000;

fn link() -> Link {
    Link::new(DELAY, RATE)
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    out
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn pacer_sends_chunks_one_after_another_and_adds_the_delay_after_each_leaves() {
    // 1 MB/s: 1000 bytes take 1 ms to leave.
    let link = Link {
        delay: ms(10),
        bits_per_second: 8_000_000,
        queue: 1 << 20,
    };
    let mut pacer = Pacer::new(link);
    let t0 = Instant::now();
    assert_eq!(pacer.delivery(t0, 1000), t0 + ms(1) + ms(10));
    // Queued behind the first: it waits for the first to leave, not to
    // arrive, so the delay is not added twice.
    assert_eq!(pacer.delivery(t0, 1000), t0 + ms(2) + ms(10));
    assert_eq!(pacer.delivery(t0 + ms(1), 2000), t0 + ms(4) + ms(10));
    // The end of the stream takes no time to leave, but travels behind
    // the bytes before it.
    assert_eq!(pacer.delivery(t0, 0), t0 + ms(4) + ms(10));
    // An idle link starts at once.
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        pacer.delivery(later, 500),
        later + Duration::from_micros(500) + ms(10)
    );
}

#[test]
fn link_queue_is_one_bandwidth_delay_product_with_a_floor() {
    let link = Link::new(ms(25), 1_000_000_000);
    assert_eq!(link.bdp(), 3_125_000);
    assert_eq!(link.queue, link.bdp());
    assert_eq!(link.room(), 2 * link.bdp());
    // 1 ms at 1 Mbit/s is 125 bytes: the queue still holds a whole read.
    let slow = Link::new(ms(1), 1_000_000);
    assert_eq!(slow.bdp(), 125);
    assert_eq!(slow.queue, 64 * 1024);
    assert_eq!(link.send_time(125_000_000), Duration::from_secs(1));
}

/// Sends `up` through the proxy and expects `down` back, on one
/// connection, each direction ended by its sender.
async fn exchange(proxy: std::net::SocketAddr, up: Vec<u8>, down: Vec<u8>) {
    let mut socket = TcpStream::connect(proxy).await.unwrap();
    let (mut r, mut w) = socket.split();
    let send = async {
        w.write_all(&up).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let receive = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(send, receive);
    assert_eq!(got.len(), down.len(), "bytes back");
    assert!(got == down, "bytes back differ");
}

#[tokio::test]
async fn proxy_carries_raw_tcp_bytes_exactly_in_order_and_forwards_each_end() {
    bounded(async {
        const CONNECTIONS: u64 = 4;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = DelayProxy::start(listener.local_addr().unwrap(), link())
            .await
            .unwrap();
        // The server side reads each connection to its end (which only
        // the forwarded end of stream gives), checks it, then answers
        // and ends its own direction. The first 8 bytes say which
        // connection it is.
        let server = tokio::spawn(async move {
            let mut handlers = tokio::task::JoinSet::new();
            for _ in 0..CONNECTIONS {
                let (mut socket, _) = listener.accept().await.unwrap();
                handlers.spawn(async move {
                    let mut got = Vec::new();
                    socket.read_to_end(&mut got).await.unwrap();
                    let id = u64::from_be_bytes(got[..8].try_into().unwrap());
                    let expected = payload(id, 1 << 20);
                    assert_eq!(got.len(), 8 + expected.len(), "connection {id}: bytes in");
                    assert!(got[8..] == expected[..], "connection {id}: bytes in differ");
                    socket
                        .write_all(&payload(100 + id, 256 << 10))
                        .await
                        .unwrap();
                    socket.shutdown().await.unwrap();
                });
            }
            while let Some(handled) = handlers.join_next().await {
                handled.unwrap();
            }
        });
        let mut clients = tokio::task::JoinSet::new();
        for id in 0..CONNECTIONS {
            let addr = proxy.addr();
            clients.spawn(async move {
                let mut up = id.to_be_bytes().to_vec();
                up.extend(payload(id, 1 << 20));
                exchange(addr, up, payload(100 + id, 256 << 10)).await;
            });
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn proxy_delays_each_direction_by_at_least_the_one_way_delay() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = DelayProxy::start(listener.local_addr().unwrap(), link())
            .await
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut byte = [0u8; 1];
            for _ in 0..3 {
                socket.read_exact(&mut byte).await.unwrap();
                socket.write_all(&byte).await.unwrap();
            }
        });
        let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
        socket.set_nodelay(true).unwrap();
        for round in 0..3u8 {
            let sent = std::time::Instant::now();
            socket.write_all(&[round]).await.unwrap();
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.unwrap();
            let rtt = sent.elapsed();
            assert_eq!(byte, [round]);
            assert!(rtt >= 2 * DELAY, "round trip {rtt:?} under two delays");
        }
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn proxy_ends_the_connection_when_the_target_refuses() {
    bounded(async {
        // A port that was just free: nothing listens there.
        let target = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = DelayProxy::start(target, link()).await.unwrap();
        let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 16];
        // Reset (an error) or at worst an end; never a hang or bytes.
        match socket.read(&mut buf).await {
            Ok(n) => assert_eq!(n, 0, "bytes from nowhere"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    })
    .await;
}

#[tokio::test]
async fn creditmux_session_through_the_delay_path_echoes_every_stream_exactly() {
    bounded(async {
        let listener = tcp::Listener::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let proxy = DelayProxy::start(listener.local_addr().unwrap(), link())
            .await
            .unwrap();
        let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let client = tcp::connect(proxy.addr(), Config::default()).await.unwrap();
        let server = server.await.unwrap();
        // The proxy's sleeps alone make a round trip at least two one-way
        // delays long: proof that the session went through the path.
        let rtt = client.ping().await.unwrap();
        assert!(rtt >= 2 * DELAY, "PING round trip {rtt:?} under two delays");
        // 1, 10 and 100 concurrent streams each way, every byte checked,
        // then a graceful close.
        echo_suite(client, server).await;
    })
    .await;
}

/// A session through a 10 ms path, the server with `server_config`, the
/// client with the defaults; the proxy is kept alive by the caller.
async fn through_10ms_path(server_config: Config) -> (Session, Session, DelayProxy) {
    let listener = tcp::Listener::bind("127.0.0.1:0", server_config)
        .await
        .unwrap();
    let proxy = DelayProxy::start(listener.local_addr().unwrap(), Link::new(ms(10), RATE))
        .await
        .unwrap();
    let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let client = tcp::connect(proxy.addr(), Config::default()).await.unwrap();
    (client, server.await.unwrap(), proxy)
}

/// Receive-window tuning (SPEC §9.8.1) through a 10 ms path: while the
/// reader keeps up, the receiver's windows grow from small initial ones;
/// while it reads slowly they shrink back; every byte arrives in order, and
/// the receiver never buffers more than its budget
/// (`max_connection_window`) nor a stream more than its maximum window.
#[tokio::test]
async fn tuned_windows_grow_and_shrink_within_the_budget() {
    const BUDGET: u32 = 16 << 20;
    const MAX_STREAM: u32 = 4 << 20;
    bounded(async {
        let tuned = Config::builder()
            .stream_window(64 * 1024)
            .connection_window(256 * 1024)
            .max_stream_window(MAX_STREAM)
            .max_connection_window(BUDGET)
            .build()
            .unwrap();
        let (client, server, _proxy) = through_10ms_path(tuned).await;
        let data = payload(7, 12 << 20);
        let sent = data.clone();
        let mut stream = client.open().await.unwrap();
        let writer = tokio::spawn(async move {
            stream.write_all(&sent).await.unwrap();
            stream.shutdown().await.unwrap();
            stream
        });
        let mut incoming = server.accept().await.unwrap().unwrap();
        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 64 * 1024];
        let mut grown_fast = 0;
        loop {
            // Fast for 8 MiB, then 1 MiB at 64 KiB per 100 ms, then fast.
            let slow = (8 << 20..9 << 20).contains(&got.len());
            if slow {
                tokio::time::sleep(ms(100)).await;
            }
            let n = incoming.read(&mut buf[..]).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let stats = server.stats();
            let buffered = stats.recv_buffered.unwrap();
            assert!(
                buffered <= u64::from(BUDGET),
                "buffered {buffered} above the budget",
            );
            let stream = incoming.stats().unwrap();
            assert!(stream.recv_buffered.unwrap() <= u64::from(MAX_STREAM));
            if got.len() < 8 << 20 {
                grown_fast = stats.windows_grown.unwrap();
            }
        }
        assert!(got == data, "the bytes differ");
        let stats = server.stats();
        assert!(grown_fast > 0, "no window grew while the reader kept up");
        assert!(
            stats.windows_shrunk.unwrap() > 0,
            "no window shrank while the reader was slow"
        );
        drop(writer.await.unwrap());
        client.close(creditmux::ErrorCode::NO_ERROR).await.unwrap();
    })
    .await;
}

/// Fair shares under one budget (SPEC §9.8.1): 16 streams, each writing
/// 1 MiB through a 10 ms path to a receiver whose connection window (its
/// memory budget, 512 KiB) is smaller than their stream windows together,
/// so they compete for it. Halfway through, every stream has been read
/// within 20% of every other.
#[tokio::test]
async fn sixteen_streams_under_one_budget_get_shares_within_20_percent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const STREAMS: usize = 16;
    const EACH: usize = 1 << 20;
    const BUDGET: u32 = 512 * 1024;
    bounded(async {
        let tuned = Config::builder()
            .stream_window(32 * 1024)
            .connection_window(128 * 1024)
            .max_stream_window(BUDGET / 4)
            .max_connection_window(BUDGET)
            .build()
            .unwrap();
        let (client, server, _proxy) = through_10ms_path(tuned).await;
        let read: Arc<Vec<AtomicU64>> = Arc::new((0..STREAMS).map(|_| AtomicU64::new(0)).collect());
        let snapshot = Arc::new(std::sync::Mutex::new(None::<Vec<u64>>));
        let mut writers = Vec::new();
        for i in 0..STREAMS {
            let mut stream = client.open().await.unwrap();
            let data = payload(i as u64, EACH);
            writers.push(tokio::spawn(async move {
                stream.write_all(&data).await.unwrap();
                stream.shutdown().await.unwrap();
                stream
            }));
        }
        let mut readers = Vec::new();
        for _ in 0..STREAMS {
            let mut incoming = server.accept().await.unwrap().unwrap();
            let (read, snapshot, server) = (read.clone(), snapshot.clone(), server.clone());
            readers.push(tokio::spawn(async move {
                // The client's streams are 1, 3, 5, ...
                let index = incoming.id().get() as usize / 2;
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::with_capacity(EACH);
                loop {
                    let n = incoming.read(&mut buf[..]).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    read[index].fetch_add(n as u64, Ordering::Relaxed);
                    let buffered = server.stats().recv_buffered.unwrap();
                    assert!(buffered <= u64::from(BUDGET), "{buffered} above the budget");
                    let total: u64 = read.iter().map(|r| r.load(Ordering::Relaxed)).sum();
                    let mut snapshot = snapshot.lock().unwrap();
                    if snapshot.is_none() && total >= (STREAMS * EACH / 2) as u64 {
                        *snapshot = Some(read.iter().map(|r| r.load(Ordering::Relaxed)).collect());
                    }
                }
                (index, got)
            }));
        }
        for reader in readers {
            let (index, got) = reader.await.unwrap();
            assert!(got == payload(index as u64, EACH), "stream {index} differs");
        }
        let shares = snapshot
            .lock()
            .unwrap()
            .clone()
            .expect("halfway was reached");
        let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
        assert!(
            *min as f64 >= 0.8 * *max as f64,
            "shares halfway: {shares:?}"
        );
        for writer in writers {
            drop(writer.await.unwrap());
        }
        client.close(creditmux::ErrorCode::NO_ERROR).await.unwrap();
    })
    .await;
}
