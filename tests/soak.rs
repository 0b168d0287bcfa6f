//! A soak: for a bounded time, many tasks on both sides of a TCP session
//! open streams and write, echo, finish, reset, drop halfway and read
//! partly, at random. Afterwards both sides hold no stream and no
//! received byte (SPEC §8.8, §9.7), every stream that was read to its end
//! carried exactly the bytes written, and the session still closes
//! gracefully. `SOAK_SECS` sets the time (default 3 s in CI; minutes for a
//! real soak), `SOAK_SEED` the seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use creditmux::{Config, ErrorCode, Session};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> Config {
    Config::builder()
        .stream_window(32 * 1024)
        .connection_window(256 * 1024)
        .max_frame_payload(8 * 1024)
        .send_buffer(64 * 1024)
        .max_incoming_streams(64)
        .accept_backlog(64)
        .build()
        .unwrap()
}

fn byte(seed: u64, off: u64) -> u8 {
    ((off.wrapping_mul(2654435761) ^ seed.wrapping_mul(0x9E37_79B9)) >> 7) as u8
}

#[derive(Default)]
struct Tally {
    verified: AtomicU64,
    reset_or_dropped: AtomicU64,
    errors: AtomicU64,
}

/// What the server does with a stream, by its id.
async fn serve(session: Session, tally: Arc<Tally>) {
    while let Ok(Some(stream)) = session.accept().await {
        let tally = tally.clone();
        tokio::spawn(async move {
            let id = u64::from(stream.id().get());
            let (mut r, mut w) = stream.split();
            match id % 7 {
                // Reads a little, then resets.
                0 => {
                    let mut buf = [0u8; 1000];
                    let _ = r.read(&mut buf).await;
                    w.reset(ErrorCode::CANCEL);
                    tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
                }
                // Drops both halves at once, unread.
                1 => {
                    drop((r, w));
                    tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
                }
                // Echoes.
                _ => {
                    let result = match tokio::io::copy(&mut r, &mut w).await {
                        Ok(_) => w.shutdown().await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {}
                        // The client reset or dropped it.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    }
}

/// One client task: streams until `until`, each doing something random.
async fn client_worker(
    session: Session,
    seed: u64,
    until: tokio::time::Instant,
    tally: Arc<Tally>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while tokio::time::Instant::now() < until {
        let Ok(stream) = session.open().await else {
            return;
        };
        let sid = u64::from(stream.id().get());
        let len: u64 = rng.random_range(0..150_000);
        let action: u8 = rng.random_range(0..10);
        let (mut r, mut w) = stream.split();
        let data: Vec<u8> = (0..len).map(|off| byte(sid, off)).collect();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(20_000) {
                w.write_all(chunk).await?;
            }
            w.shutdown().await?;
            Ok::<_, std::io::Error>(w)
        });
        match action {
            // Drop the whole stream early (CANCEL) after a read.
            0 => {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(5), r.read(&mut buf)).await;
                writer.abort();
                drop(r);
                tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Reset after a little.
            1 => {
                tokio::time::sleep(Duration::from_micros(rng.random_range(0..2000))).await;
                writer.abort();
                let _ = writer.await;
                drop(r);
                tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Read it all back and check it.
            _ => {
                let mut back = Vec::new();
                let read = r.read_to_end(&mut back).await;
                let wrote = writer.await.expect("writer task");
                let echoing = sid % 7 >= 2;
                match (read, wrote) {
                    (Ok(_), Ok(_)) if echoing => {
                        assert_eq!(back.len() as u64, len, "stream {sid}: bytes back");
                        for (off, b) in back.iter().enumerate() {
                            assert_eq!(*b, byte(sid, off as u64), "stream {sid}: byte {off}");
                        }
                        tally.verified.fetch_add(1, Ordering::Relaxed);
                    }
                    // The server reset or dropped it: an error, never
                    // wrong bytes.
                    _ if !echoing => {
                        tally.reset_or_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    (read, wrote) => {
                        panic!(
                            "stream {sid}: the echo failed: read {read:?}, write {:?}",
                            wrote.err()
                        )
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_random_streams_leaves_nothing_behind() {
    let secs = env("SOAK_SECS", 3);
    let seed = env("SOAK_SEED", 7);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        Session::server(socket, config()).await.unwrap()
    });
    let client = Session::client(TcpStream::connect(addr).await.unwrap(), config())
        .await
        .unwrap();
    let server = accepting.await.unwrap();
    let tally = Arc::new(Tally::default());
    let serving = tokio::spawn(serve(server.clone(), tally.clone()));
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..16)
        .map(|k| {
            tokio::spawn(client_worker(
                client.clone(),
                seed * 1000 + k,
                until,
                tally.clone(),
            ))
        })
        .collect();
    for w in workers {
        w.await.expect("a client worker panicked");
    }
    // Everything settles: no stream, no received byte held, on either side.
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (c, s) = (client.stats(), server.stats());
            if c.open_streams == 0
                && s.open_streams == 0
                && c.recv_buffered == Some(0)
                && s.recv_buffered == Some(0)
            {
                return (c, s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (c, s) = settled.unwrap_or_else(|_| {
        panic!(
            "streams or bytes left behind: client {:?}, server {:?}",
            client.stats(),
            server.stats()
        )
    });
    assert!(
        tally.verified.load(Ordering::Relaxed) > 0,
        "nothing was echoed"
    );
    assert_eq!(
        tally.errors.load(Ordering::Relaxed),
        0,
        "echo errors on the server"
    );
    // Every verified stream ended with both FINs; every stream ended
    // somehow, and both sides counted each once. (How may differ: a
    // stream one side resets after its FIN crossed the other's may have
    // completed for the other side.)
    let verified = tally.verified.load(Ordering::Relaxed);
    assert!(
        c.streams_completed.unwrap() >= verified,
        "{c:?} / {verified} verified"
    );
    let ended = |x: &creditmux::SessionStats| {
        x.streams_completed.unwrap()
            + x.streams_reset_local.unwrap()
            + x.streams_reset_remote.unwrap()
    };
    assert_eq!(ended(&c), ended(&s), "{c:?} / {s:?}");
    let report = client
        .close(ErrorCode::NO_ERROR)
        .await
        .expect("a graceful close");
    assert_eq!(report.streams_cancelled_at_drain, Some(0));
    serving.await.unwrap();
}
