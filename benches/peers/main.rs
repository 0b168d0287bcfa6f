//! Peer comparison: creditmux against raw TCP (and, as they are added, the
//! multiplexers a user would pick instead) through the same scenarios, in
//! one process and one run. Each side runs on its own thread with a
//! current-thread tokio runtime.
//!
//! `cargo bench --bench peers` for the full run, `-- --quick` for a smoke.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use creditmux::{Config, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxFut<T> = Pin<Box<dyn Future<Output = T>>>;

/// Runs `server` and `client` on two threads, each with its own
/// current-thread runtime; returns the client's result or "timeout".
fn run_pair<S, C>(timeout: Duration, server: S, client: C) -> Option<f64>
where
    S: FnOnce(TcpListener) -> BoxFut<()> + Send + 'static,
    C: FnOnce(SocketAddr) -> BoxFut<f64> + Send + 'static,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel(1);
    let server_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = tokio::time::timeout(timeout, server(listener)).await;
        });
    });
    let addr = addr_rx.recv().unwrap();
    let client_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { tokio::time::timeout(timeout, client(addr)).await.ok() })
    });
    let result = client_thread.join().unwrap();
    server_thread.join().unwrap();
    result
}

const CHUNK: usize = 256 * 1024;

async fn write_bytes<W: AsyncWriteExt + Unpin>(w: &mut W, total: usize) {
    let chunk = vec![0xabu8; CHUNK];
    let mut sent = 0;
    while sent < total {
        let n = CHUNK.min(total - sent);
        w.write_all(&chunk[..n]).await.unwrap();
        sent += n;
    }
}

async fn drain<R: AsyncReadExt + Unpin>(r: &mut R) -> usize {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

// ----- raw TCP ---------------------------------------------------------

fn tcp_bulk(streams: usize, per_stream: usize, timeout: Duration) -> Option<f64> {
    run_pair(
        timeout,
        move |listener| {
            Box::pin(async move {
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    let (mut socket, _) = listener.accept().await.unwrap();
                    tasks.push(tokio::spawn(async move {
                        drain(&mut socket).await;
                        socket.write_all(b"k").await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        },
        move |addr| {
            Box::pin(async move {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    tasks.push(tokio::spawn(async move {
                        let mut socket = TcpStream::connect(addr).await.unwrap();
                        socket.set_nodelay(true).unwrap();
                        write_bytes(&mut socket, per_stream).await;
                        socket.shutdown().await.unwrap();
                        let mut ack = [0u8; 1];
                        socket.read_exact(&mut ack).await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                mib_per_s(streams * per_stream, start.elapsed())
            })
        },
    )
}

// ----- creditmux -------------------------------------------------------

fn bench_config(streams: usize) -> Config {
    Config::builder()
        .max_incoming_streams(streams.max(100) as u32)
        .build()
        .unwrap()
}

fn creditmux_bulk(streams: usize, per_stream: usize, timeout: Duration) -> Option<f64> {
    run_pair(
        timeout,
        move |listener| {
            Box::pin(async move {
                let (socket, _) = listener.accept().await.unwrap();
                socket.set_nodelay(true).unwrap();
                let session = Session::server(socket, bench_config(streams))
                    .await
                    .unwrap();
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    let mut stream = session.accept().await.unwrap().unwrap();
                    tasks.push(tokio::spawn(async move {
                        drain(&mut stream).await;
                        stream.write_all(b"k").await.unwrap();
                        stream.shutdown().await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                session.closed().await;
            })
        },
        move |addr| {
            Box::pin(async move {
                let socket = TcpStream::connect(addr).await.unwrap();
                socket.set_nodelay(true).unwrap();
                let session = Session::client(socket, bench_config(streams))
                    .await
                    .unwrap();
                let start = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    let session = session.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut stream = session.open().await.unwrap();
                        write_bytes(&mut stream, per_stream).await;
                        stream.shutdown().await.unwrap();
                        let mut ack = Vec::new();
                        stream.read_to_end(&mut ack).await.unwrap();
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let result = mib_per_s(streams * per_stream, start.elapsed());
                session.close(creditmux::ErrorCode::NO_ERROR).await.ok();
                result
            })
        },
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };
    let (bulk_bytes, many_bytes) = if quick {
        (64 << 20, 1 << 20)
    } else {
        (512 << 20, 8 << 20)
    };
    let timeout = Duration::from_secs(if quick { 20 } else { 120 });

    let mut rows: Vec<(String, String, Option<f64>)> = Vec::new();
    type Runner = fn(usize, usize, Duration) -> Option<f64>;
    let scenarios: [(&str, usize, usize); 2] = [("bulk", 1, bulk_bytes), ("many", 100, many_bytes)];
    let impls: [(&str, Runner); 2] = [("raw TCP", tcp_bulk), ("creditmux", creditmux_bulk)];
    for (scenario, streams, bytes) in scenarios {
        for (name, runner) in impls {
            let results: Vec<f64> = (0..runs)
                .filter_map(|_| runner(streams, bytes, timeout))
                .collect();
            let value = (results.len() == runs).then(|| median(results));
            println!(
                "{{\"scenario\":\"{scenario}\",\"impl\":\"{name}\",\"mib_per_s\":{}}}",
                value.map_or("null".to_string(), |v| format!("{v:.1}"))
            );
            rows.push((scenario.to_string(), name.to_string(), value));
        }
    }
    println!();
    println!("| scenario | impl | MiB/s | vs raw TCP |");
    println!("|---|---|---|---|");
    for (scenario, name, value) in &rows {
        let base = rows
            .iter()
            .find(|(s, n, _)| s == scenario && n == "raw TCP")
            .and_then(|r| r.2);
        let shown = value.map_or("timeout".to_string(), |v| format!("{v:.0}"));
        let ratio = match (value, base) {
            (Some(v), Some(b)) => format!("{:.2}x", v / b),
            _ => "-".to_string(),
        };
        println!("| {scenario} | {name} | {shown} | {ratio} |");
    }
}
