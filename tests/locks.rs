//! The driver's locks under load (the argument is on `driver/shared.rs`'s
//! `Writer`): many streams, each with its read and write halves on tasks
//! of their own, on a multi-thread runtime, writing small and large
//! pieces (queued and direct writes) and reading with small and large
//! buffers (buffered and direct reads), while the driver reads, writes
//! and runs its timers (keepalive PINGs every few milliseconds, probes),
//! with a thread burning CPU beside it. Every byte must come back, in
//! order, within the time limit: a deadlock or a lost wake-up is a hang.
//! `LOCK_ROUNDS` sets the rounds (default 6).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use creditmux::{Config, ErrorCode, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rounds() -> usize {
    std::env::var("LOCK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// Timers that fire all the time, windows small enough that writers wait
/// for credit and probes run.
fn config() -> Config {
    Config::builder()
        .stream_window(64 * 1024)
        .connection_window(1024 * 1024)
        .keepalive_interval(Some(Duration::from_millis(5)))
        .keepalive_timeout(Duration::from_secs(2))
        .probe_interval(Duration::from_millis(2))
        .probe_max(Duration::from_millis(20))
        .build()
        .unwrap()
}

struct Burner(Arc<AtomicBool>);

impl Burner {
    fn start() -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut x = 1u64;
            while !flag.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Burner(stop)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn byte(stream: u64, off: usize) -> u8 {
    (off as u64).wrapping_mul(0x9E37).wrapping_add(stream * 131) as u8
}

async fn serve_echo(session: Session) {
    while let Ok(Some(stream)) = session.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            // Odd buffer sizes: some reads go straight into the buffer.
            let mut buf = vec![0u8; 70_001];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        });
    }
}

/// 48 streams, each writing ~300 KB in pieces from 1 byte to 100 KB
/// and reading the echo with buffers from 1 byte to 80 KB, halves on
/// separate tasks.
async fn hammer(client: &Session) {
    let mut tasks = Vec::new();
    for n in 0..48u64 {
        let stream = client.open().await.unwrap();
        let (mut r, mut w) = stream.split();
        let len = 200_000 + (n as usize * 7919) % 150_000;
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..len).map(|off| byte(n, off)).collect();
            let mut off = 0;
            let mut k = n as usize;
            while off < len {
                k = k.wrapping_mul(1103515245).wrapping_add(12345);
                let piece = [1, 100, 4_000, 20_000, 100_000][k % 5].min(len - off);
                w.write_all(&data[off..off + piece]).await.unwrap();
                off += piece;
            }
            w.shutdown().await.unwrap();
        }));
        tasks.push(tokio::spawn(async move {
            let mut got = 0usize;
            let mut k = n as usize;
            let mut buf = vec![0u8; 80_000];
            loop {
                k = k.wrapping_mul(1103515245).wrapping_add(12345);
                let size = [1, 17, 4_096, 33_333, 80_000][k % 5];
                let read = r.read(&mut buf[..size]).await.unwrap();
                if read == 0 {
                    break;
                }
                for (i, b) in buf[..read].iter().enumerate() {
                    assert_eq!(*b, byte(n, got + i), "stream {n}: byte {}", got + i);
                }
                got += read;
            }
            assert_eq!(got, len, "stream {n}");
        }));
    }
    for t in tasks {
        t.await.expect("a task panicked");
    }
}

/// Both sides counted the same payload bytes each way: a direct write the
/// transport took only part of gave back exactly the rest of its
/// reservation.
fn counts_agree(client: &Session, server: &Session) {
    let (c, s) = (client.stats(), server.stats());
    assert_eq!(c.data_bytes_sent, s.data_bytes_received, "{c:?} / {s:?}");
    assert_eq!(s.data_bytes_sent, c.data_bytes_received, "{c:?} / {s:?}");
}

async fn tcp_pair() -> (Session, Session) {
    support::sessions::tcp_pair(config()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_streams_over_tcp_never_hang() {
    let _burner = Burner::start();
    for round in 0..rounds() {
        let (client, server) = tcp_pair().await;
        tokio::spawn(serve_echo(server.clone()));
        tokio::time::timeout(Duration::from_secs(60), hammer(&client))
            .await
            .unwrap_or_else(|_| panic!("round {round}: hung: {:?}", client.stats()));
        client.close(ErrorCode::NO_ERROR).await.unwrap();
        server.closed().await;
        counts_agree(&client, &server);
    }
}

/// A pipe that takes a few bytes at a time and would block every seventh
/// call: most direct writes are partial, and their reservations must be
/// given back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_streams_over_a_choppy_pipe_never_hang() {
    let _burner = Burner::start();
    for round in 0..rounds().div_ceil(2) {
        let (client, server) = support::choppy::choppy_pair(256 * 1024, config()).await;
        tokio::spawn(serve_echo(server.clone()));
        tokio::time::timeout(Duration::from_secs(120), hammer(&client))
            .await
            .unwrap_or_else(|_| panic!("round {round}: hung: {:?}", client.stats()));
        client.close(ErrorCode::NO_ERROR).await.unwrap();
        server.closed().await;
        counts_agree(&client, &server);
    }
}

/// Over TLS the writes encrypt and the reads decrypt: with the core
/// unlocked, other streams and the driver go on meanwhile.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_streams_over_tls_never_hang() {
    use creditmux::tls;
    let _burner = Burner::start();
    let identity = support::certs::Identity::self_signed();
    for round in 0..rounds().div_ceil(2) {
        let listener =
            tls::Listener::bind("127.0.0.1:0", identity.server_config().unwrap(), config())
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let client = tls::connect(addr, "localhost", identity.client_config(), config())
            .await
            .unwrap();
        let server = server.await.unwrap();
        tokio::spawn(serve_echo(server.clone()));
        tokio::time::timeout(Duration::from_secs(60), hammer(&client))
            .await
            .unwrap_or_else(|_| panic!("round {round}: hung: {:?}", client.stats()));
        client.close(ErrorCode::NO_ERROR).await.unwrap();
        server.closed().await;
        counts_agree(&client, &server);
    }
}
