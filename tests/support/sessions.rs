//! Sessions over the real transports for the tests: an echo server and
//! the echo suite every transport runs, a time limit for async tests, and
//! connected pairs over TCP, TLS and QUIC (framed and native) on loopback.

#![allow(dead_code)]

#[cfg(feature = "tls")]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
pub use super::certs::Identity;
use creditmux::{Config, ErrorCode, Session, tcp};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test bounded with [`bounded`] fails instead of stalling the run.
pub const LIMIT: Duration = Duration::from_secs(20);

const MAX_STREAM_BYTES: usize = 256 * 1024;

// ----- the shared echo suite ----------------------------------------------

/// Echoes every stream the peer opens, with the stream's halves on separate
/// tasks, until the session ends.
pub async fn serve_echo(session: Session) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Ok(Some(stream)) = session.accept().await {
        let (mut r, mut w) = stream.split();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        tasks.spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if tx.send(buf[..n].to_vec()).await.is_err() {
                    return Ok(());
                }
            }
        });
        tasks.spawn(async move {
            while let Some(chunk) = rx.recv().await {
                w.write_all(&chunk).await?;
            }
            w.shutdown().await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
}

/// Opens `streams` streams on `session`, each sending a random payload of
/// up to 256 KiB from one task while another reads the echo, and checks
/// every byte.
pub async fn echo_streams(session: &Session, streams: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        // Edge sizes first, then random ones spread evenly over the
        // orders of magnitude (log-uniform), so small and large streams
        // both get exercised and 100 streams stay quick in debug builds.
        let len = match i {
            0 => MAX_STREAM_BYTES,
            1 => 0,
            _ => {
                let exp: f64 = rng.random_range(0.0..=MAX_STREAM_BYTES.ilog2() as f64);
                (2f64.powf(exp) as usize).min(MAX_STREAM_BYTES)
            }
        };
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        let session = session.clone();
        tasks.spawn(async move {
            let (mut r, mut w) = session.open().await.expect("open").split();
            let data = Arc::new(data);
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.expect("write");
                w.shutdown().await.expect("shutdown");
            });
            let mut back = Vec::with_capacity(data.len());
            r.read_to_end(&mut back).await.expect("read echo");
            writer.await.unwrap();
            if let Some(at) = back.iter().zip(data.iter()).position(|(a, b)| a != b) {
                panic!("stream {i}: echo differs at byte {at}");
            }
            assert_eq!(back.len(), data.len(), "stream {i}: echo length");
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

/// The suite every transport runs: 1, 10 and 100 concurrent streams opened
/// by the client and echoed by the server, then the same opened by the
/// server and echoed by the client; then a graceful close that both sides
/// see as graceful.
pub async fn echo_suite(client: Session, server: Session) {
    let client_echo = tokio::spawn(serve_echo(client.clone()));
    let server_echo = tokio::spawn(serve_echo(server.clone()));
    for (round, streams) in [1usize, 10, 100].into_iter().enumerate() {
        echo_streams(&client, streams, round as u64).await;
        echo_streams(&server, streams, 100 + round as u64).await;
    }
    client
        .close(ErrorCode::NO_ERROR)
        .await
        .expect("graceful close");
    server.closed().await;
    let server_end = server.error().expect("ended");
    assert!(server_end.is_graceful(), "server saw {server_end:?}");
    client_echo.await.unwrap();
    server_echo.await.unwrap();
}

pub async fn bounded<F: std::future::Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test exceeded its time limit")
}

// ----- pairs over each transport -------------------------------------------

pub async fn tcp_pair(config: Config) -> (Session, Session) {
    let listener = tcp::Listener::bind("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { listener.accept().await.unwrap() });
    let client = tcp::connect(addr, config).await.unwrap();
    let (server, peer) = server.await.unwrap();
    assert!(peer.ip().is_loopback());
    (client, server)
}

#[cfg(feature = "tls")]
pub mod tls {
    use super::*;
    use creditmux::tls;

    pub async fn listener(identity: &Identity) -> (tls::Listener, SocketAddr) {
        let listener = tls::Listener::bind(
            "127.0.0.1:0",
            identity.server_config().unwrap(),
            Config::default(),
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    pub async fn pair() -> (Session, Session) {
        let identity = Identity::self_signed();
        let (listener, addr) = listener(&identity).await;
        let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let client = tls::connect(
            addr,
            "localhost",
            identity.client_config(),
            Config::default(),
        )
        .await
        .unwrap();
        (client, server.await.unwrap())
    }
}

#[cfg(feature = "quic")]
pub mod quic {
    use super::*;
    use creditmux::quic;

    pub fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A framed session pair plus both endpoints (kept to wait for idle).
    pub async fn pair() -> (Session, Session, quinn::Endpoint, quinn::Endpoint) {
        let identity = Identity::self_signed();
        let server_ep = quic::server_endpoint(
            loopback(),
            identity.server_config().unwrap(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let accepting = server_ep.clone();
        let server = tokio::spawn(async move {
            quic::accept(&accepting, quic::Mode::Framed, Config::default())
                .await
                .unwrap()
                .expect("a connection")
        });
        let client_ep = quic::client_endpoint(
            loopback(),
            identity.client_config(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let client = quic::connect(
            &client_ep,
            addr,
            "localhost",
            quic::Mode::Framed,
            Config::default(),
        )
        .await
        .unwrap();
        let (server, peer) = server.await.unwrap();
        assert!(peer.ip().is_loopback());
        (client, server, client_ep, server_ep)
    }

    /// A drain timeout far longer than any test: a close that waits for
    /// it shows as a timeout of the test, not as a late success.
    pub fn long_drain() -> Config {
        Config::builder()
            .drain_timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// A native session pair with `config` on both sides, plus both
    /// endpoints.
    pub async fn native_pair(
        config: Config,
    ) -> (Session, Session, quinn::Endpoint, quinn::Endpoint) {
        let identity = Identity::self_signed();
        let server_ep = quic::server_endpoint(
            loopback(),
            identity.server_config().unwrap(),
            quic::Mode::Native,
            &config,
        )
        .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let accepting = server_ep.clone();
        let server_config = config.clone();
        let server = tokio::spawn(async move {
            quic::accept(&accepting, quic::Mode::Native, server_config)
                .await
                .unwrap()
                .expect("a connection")
        });
        let client_ep = quic::client_endpoint(
            loopback(),
            identity.client_config(),
            quic::Mode::Native,
            &config,
        )
        .unwrap();
        let client = quic::connect(&client_ep, addr, "localhost", quic::Mode::Native, config)
            .await
            .unwrap();
        let (server, peer) = server.await.unwrap();
        assert!(peer.ip().is_loopback());
        (client, server, client_ep, server_ep)
    }
}
