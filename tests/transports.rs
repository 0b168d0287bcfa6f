//! The transports over loopback: one echo suite, written once, run over
//! TCP, TLS and QUIC (framed); then the failures a transport must report
//! with a typed error (untrusted certificate, wrong ALPN, a peer that is
//! not creditmux, a closed port).

#[cfg(feature = "tls")]
#[path = "../examples/support/certs.rs"]
mod certs;

#[cfg(feature = "tls")]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use certs::Identity;
use creditmux::{Config, ErrorCode, Session, tcp};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test here is bounded; a hang fails instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(20);

const MAX_STREAM_BYTES: usize = 256 * 1024;

// ----- the shared echo suite ----------------------------------------------

/// Echoes every stream the peer opens, with the stream's halves on separate
/// tasks, until the session ends.
async fn serve_echo(session: Session) {
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
async fn echo_streams(session: &Session, streams: usize, seed: u64) {
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
async fn echo_suite(client: Session, server: Session) {
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

async fn bounded<F: std::future::Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test exceeded its time limit")
}

// ----- pairs over each transport -------------------------------------------

async fn tcp_pair(config: Config) -> (Session, Session) {
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
mod tls_pairs {
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
mod quic_pairs {
    use super::*;
    use creditmux::quic;

    pub fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A framed session pair plus both endpoints (kept to wait for idle).
    pub async fn pair() -> (Session, Session, quinn::Endpoint, quinn::Endpoint) {
        let identity = Identity::self_signed();
        let server_ep =
            quic::server_endpoint(loopback(), identity.server_config().unwrap()).unwrap();
        let addr = server_ep.local_addr().unwrap();
        let accepting = server_ep.clone();
        let server = tokio::spawn(async move {
            quic::accept_framed(&accepting, Config::default())
                .await
                .unwrap()
                .expect("a connection")
        });
        let client_ep = quic::client_endpoint(loopback(), identity.client_config()).unwrap();
        let client = quic::connect_framed(&client_ep, addr, "localhost", Config::default())
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
        let server_ep =
            quic::native_server_endpoint(loopback(), identity.server_config().unwrap(), &config)
                .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let accepting = server_ep.clone();
        let server_config = config.clone();
        let server = tokio::spawn(async move {
            quic::accept_native(&accepting, server_config)
                .await
                .unwrap()
                .expect("a connection")
        });
        let client_ep =
            quic::native_client_endpoint(loopback(), identity.client_config(), &config).unwrap();
        let client = quic::connect_native(&client_ep, addr, "localhost", config)
            .await
            .unwrap();
        let (server, peer) = server.await.unwrap();
        assert!(peer.ip().is_loopback());
        (client, server, client_ep, server_ep)
    }
}

// ----- the suite over each transport ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echoes_1_10_100_streams_both_ways_byte_exact() {
    bounded(async {
        let (client, server) = tcp_pair(Config::default()).await;
        echo_suite(client, server).await;
    })
    .await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_echoes_1_10_100_streams_both_ways_byte_exact() {
    bounded(async {
        let (client, server) = tls_pairs::pair().await;
        echo_suite(client, server).await;
    })
    .await;
}

#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_framed_echoes_1_10_100_streams_both_ways_byte_exact() {
    bounded(async {
        let (client, server, client_ep, server_ep) = quic_pairs::pair().await;
        echo_suite(client, server).await;
        // The sessions closed their QUIC connection; both endpoints go
        // idle once the close has been exchanged.
        for endpoint in [client_ep, server_ep] {
            tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle())
                .await
                .expect("endpoint idle");
        }
    })
    .await;
}

#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_native_echoes_1_10_100_streams_both_ways_byte_exact() {
    bounded(async {
        let (client, server, client_ep, server_ep) =
            quic_pairs::native_pair(Config::default()).await;
        echo_suite(client, server).await;
        for endpoint in [client_ep, server_ep] {
            tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle())
                .await
                .expect("endpoint idle");
        }
    })
    .await;
}

// ----- TCP failures ----------------------------------------------------------

#[tokio::test]
async fn tcp_connect_to_a_closed_port_is_a_connect_error() {
    // Bind then drop: the port is (almost certainly) closed now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = tcp::connect(addr, Config::default()).await.unwrap_err();
    assert!(matches!(err, tcp::ConnectError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn tcp_listener_reports_a_peer_that_is_not_creditmux_and_keeps_accepting() {
    bounded(async {
        let listener = tcp::Listener::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut junk = tokio::net::TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = listener.accept().await.unwrap_err();
        assert!(matches!(err, tcp::AcceptError::Handshake { .. }), "{err:?}");
        assert_eq!(err.peer(), Some(junk.local_addr().unwrap()));

        let client = tokio::spawn(tcp::connect(addr, Config::default()));
        let (server, _) = listener.accept().await.unwrap();
        let client = client.await.unwrap().unwrap();
        client.ping().await.unwrap();
        drop(server);
    })
    .await;
}

#[tokio::test]
async fn tcp_connect_to_a_server_that_is_not_creditmux_is_a_handshake_error() {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink).await;
        });
        let err = tcp::connect(addr, Config::default()).await.unwrap_err();
        assert!(matches!(err, tcp::ConnectError::Handshake(_)), "{err:?}");
    })
    .await;
}

// ----- TLS failures ----------------------------------------------------------

#[cfg(feature = "tls")]
mod tls_failures {
    use super::*;
    use creditmux::tls::{self, TlsError};
    use rustls::{AlertDescription, CertificateError};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    #[tokio::test]
    async fn a_client_that_trusts_another_ca_rejects_the_server_and_both_get_typed_errors() {
        bounded(async {
            let server_identity = Identity::self_signed();
            let other_ca = Identity::self_signed();
            let (listener, addr) = tls_pairs::listener(&server_identity).await;
            let server = tokio::spawn(async move { listener.accept().await });
            let err = tls::connect(
                addr,
                "localhost",
                other_ca.client_config(),
                Config::default(),
            )
            .await
            .unwrap_err();
            match &err {
                tls::ConnectError::Tls(TlsError::InvalidPeerCertificate { error, .. }) => {
                    assert_eq!(*error, Some(CertificateError::UnknownIssuer), "{err}");
                }
                other => panic!("expected an invalid certificate, got {other:?}"),
            }
            let err = server.await.unwrap().unwrap_err();
            assert_eq!(
                err.tls(),
                Some(&TlsError::CertificateRejectedByPeer {
                    alert: AlertDescription::UnknownCA
                }),
                "{err:?}"
            );
        })
        .await;
    }

    /// A server socket with tiny kernel buffers, so TLS records often
    /// cannot all be written at once: the records rustls still holds after
    /// the last write must go out without waiting for another write (the
    /// next keepalive would be 15 s away).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_delivers_every_record_through_a_congested_socket() {
        bounded(async {
            let identity = Identity::self_signed();
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_send_buffer_size(4096).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = tls::Listener::from_tcp(
                socket.listen(16).unwrap(),
                identity.server_config().unwrap(),
                Config::default(),
            );
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
            let client = tls::connect(
                addr,
                "localhost",
                identity.client_config(),
                Config::default(),
            )
            .await
            .unwrap();
            let server = server.await.unwrap();
            tokio::spawn(serve_echo(server));
            for round in 0..8 {
                let started = std::time::Instant::now();
                echo_streams(&client, 4, 1000 + round).await;
                let elapsed = started.elapsed();
                assert!(
                    elapsed < Duration::from_secs(3),
                    "round {round} took {elapsed:?}"
                );
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_rejected() {
        bounded(async {
            let identity = Identity::self_signed();
            let (listener, addr) = tls_pairs::listener(&identity).await;
            tokio::spawn(async move { listener.accept().await });
            let err = tls::connect(
                addr,
                "creditmux.example",
                identity.client_config(),
                Config::default(),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(
                    &err,
                    tls::ConnectError::Tls(TlsError::InvalidPeerCertificate {
                        error: Some(CertificateError::NotValidForNameContext { .. }),
                        ..
                    })
                ),
                "{err:?}"
            );
        })
        .await;
    }

    /// A plain rustls client offering only `h2` (not creditmux): the
    /// listener's TLS handshake fails with a typed ALPN error, and the
    /// listener keeps working.
    #[tokio::test]
    async fn the_listener_rejects_a_client_that_offers_another_alpn() {
        bounded(async {
            let identity = Identity::self_signed();
            let (listener, addr) = tls_pairs::listener(&identity).await;
            let mut config = (*identity.client_config()).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let client = tokio::spawn(async move {
                TlsConnector::from(Arc::new(config))
                    .connect("localhost".try_into().unwrap(), socket)
                    .await
            });
            let err = listener.accept().await.unwrap_err();
            assert_eq!(err.tls(), Some(&TlsError::Alpn { negotiated: None }));
            assert!(client.await.unwrap().is_err());

            // A proper client still gets through.
            let good = tokio::spawn(tls::connect(
                addr,
                "localhost",
                identity.client_config(),
                Config::default(),
            ));
            let (server, _) = listener.accept().await.unwrap();
            good.await.unwrap().unwrap().ping().await.unwrap();
            drop(server);
        })
        .await;
    }

    /// A plain rustls client offering no ALPN at all completes TLS (rustls
    /// does not require ALPN), and the listener rejects it afterwards.
    #[tokio::test]
    async fn the_listener_rejects_a_client_that_offers_no_alpn() {
        bounded(async {
            let identity = Identity::self_signed();
            let (listener, addr) = tls_pairs::listener(&identity).await;
            let mut config = (*identity.client_config()).clone();
            config.alpn_protocols.clear();
            let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _client = tokio::spawn(async move {
                TlsConnector::from(Arc::new(config))
                    .connect("localhost".try_into().unwrap(), socket)
                    .await
            });
            let err = listener.accept().await.unwrap_err();
            assert_eq!(err.tls(), Some(&TlsError::Alpn { negotiated: None }));
        })
        .await;
    }

    /// A plain rustls server that speaks `h2`: a client whose own config
    /// offers `h2` too (creditmux adds `creditmux/1`) lands on `h2` and
    /// rejects it; a server with no ALPN at all is rejected as well.
    #[tokio::test]
    async fn connect_rejects_a_server_that_negotiates_another_or_no_alpn() {
        bounded(async {
            for (server_alpn, expected) in
                [(vec![b"h2".to_vec()], Some(b"h2".to_vec())), (vec![], None)]
            {
                let identity = Identity::self_signed();
                let mut server_config = (*identity.server_config().unwrap()).clone();
                server_config.alpn_protocols = server_alpn;
                let acceptor = TlsAcceptor::from(Arc::new(server_config));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move {
                    let (socket, _) = listener.accept().await.unwrap();
                    if let Ok(mut tls) = acceptor.accept(socket).await {
                        let mut sink = Vec::new();
                        let _ = tls.read_to_end(&mut sink).await;
                    }
                });
                let mut client_config = (*identity.client_config()).clone();
                client_config.alpn_protocols = vec![b"h2".to_vec()];
                let err = tls::connect(
                    addr,
                    "localhost",
                    Arc::new(client_config),
                    Config::default(),
                )
                .await
                .unwrap_err();
                match err {
                    tls::ConnectError::Tls(TlsError::Alpn { negotiated }) => {
                        assert_eq!(negotiated, expected);
                    }
                    other => panic!("expected an ALPN error, got {other:?}"),
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn an_invalid_server_name_is_a_typed_error() {
        let identity = Identity::self_signed();
        let err = tls::connect(
            "127.0.0.1:1",
            "not a name",
            identity.client_config(),
            Config::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, tls::ConnectError::InvalidServerName(_)),
            "{err:?}"
        );
    }

    #[test]
    fn configs_built_here_offer_exactly_creditmux_alpn() {
        let identity = Identity::self_signed();
        assert_eq!(
            identity.client_config().alpn_protocols,
            vec![tls::ALPN.to_vec()]
        );
        assert_eq!(
            identity.server_config().unwrap().alpn_protocols,
            vec![tls::ALPN.to_vec()]
        );
        assert_eq!(tls::ALPN, b"creditmux/1");
    }
}

// ----- QUIC failures ---------------------------------------------------------

#[cfg(feature = "quic")]
mod quic_failures {
    use super::quic_pairs::loopback;
    use super::*;
    use creditmux::quic;
    use creditmux::tls::TlsError;
    use rustls::AlertDescription;

    #[tokio::test]
    async fn a_client_that_trusts_another_ca_rejects_the_server_and_both_get_typed_errors() {
        bounded(async {
            let server_identity = Identity::self_signed();
            let other_ca = Identity::self_signed();
            let server_ep =
                quic::server_endpoint(loopback(), server_identity.server_config().unwrap())
                    .unwrap();
            let addr = server_ep.local_addr().unwrap();
            let server =
                tokio::spawn(
                    async move { quic::accept_framed(&server_ep, Config::default()).await },
                );
            let client_ep = quic::client_endpoint(loopback(), other_ca.client_config()).unwrap();
            let err = quic::connect_framed(&client_ep, addr, "localhost", Config::default())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &err,
                    quic::ConnectError::Tls(TlsError::InvalidPeerCertificate { reason, .. })
                        if reason.contains("UnknownIssuer")
                ),
                "{err:?}"
            );
            let err = server.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    &err,
                    quic::AcceptError::Tls {
                        source: TlsError::CertificateRejectedByPeer {
                            alert: AlertDescription::UnknownCA
                        },
                        ..
                    }
                ),
                "{err:?}"
            );
        })
        .await;
    }

    /// A plain quinn client offering `h3`: the QUIC handshake fails on
    /// both sides with a typed ALPN error.
    #[tokio::test]
    async fn the_server_rejects_a_client_that_offers_another_alpn() {
        bounded(async {
            let identity = Identity::self_signed();
            let server_ep =
                quic::server_endpoint(loopback(), identity.server_config().unwrap()).unwrap();
            let addr = server_ep.local_addr().unwrap();
            let server =
                tokio::spawn(
                    async move { quic::accept_framed(&server_ep, Config::default()).await },
                );

            let mut tls = (*identity.client_config()).clone();
            tls.alpn_protocols = vec![b"h3".to_vec()];
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
            let mut client_ep = quinn::Endpoint::client(loopback()).unwrap();
            client_ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            let err = client_ep
                .connect(addr, "localhost")
                .unwrap()
                .await
                .unwrap_err();
            assert!(
                matches!(err, quinn::ConnectionError::ConnectionClosed(_)),
                "{err:?}"
            );
            let err = server.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    err,
                    quic::AcceptError::Tls {
                        source: TlsError::Alpn { negotiated: None },
                        ..
                    }
                ),
                "{err:?}"
            );
        })
        .await;
    }

    /// A plain quinn server that speaks only `h3`: connect_framed fails with
    /// a typed ALPN error.
    #[tokio::test]
    async fn connect_rejects_a_server_that_speaks_another_alpn() {
        bounded(async {
            let identity = Identity::self_signed();
            let mut tls = (*identity.server_config().unwrap()).clone();
            tls.alpn_protocols = vec![b"h3".to_vec()];
            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).unwrap();
            let server_ep = quinn::Endpoint::server(
                quinn::ServerConfig::with_crypto(Arc::new(crypto)),
                loopback(),
            )
            .unwrap();
            let addr = server_ep.local_addr().unwrap();
            tokio::spawn(async move {
                if let Some(incoming) = server_ep.accept().await {
                    let _ = incoming.await;
                }
            });
            let client_ep = quic::client_endpoint(loopback(), identity.client_config()).unwrap();
            let err = quic::connect_framed(&client_ep, addr, "localhost", Config::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, quic::ConnectError::Tls(TlsError::Alpn { .. })),
                "{err:?}"
            );
        })
        .await;
    }

    #[test]
    fn a_tls_config_that_quic_cannot_use_is_a_config_error_not_a_panic() {
        let identity = Identity::self_signed();
        let mut tls = (*identity.server_config().unwrap()).clone();
        tls.max_early_data_size = 1024;
        let err = quic::server_config(Arc::new(tls)).unwrap_err();
        assert!(matches!(err, quic::ConfigError::Tls(_)), "{err:?}");
    }
}

// ----- QUIC native mode --------------------------------------------------------

#[cfg(feature = "quic")]
mod quic_native {
    use super::quic_pairs::{long_drain, loopback, native_pair};
    use super::*;
    use creditmux::tls::TlsError;
    use creditmux::{Initiator, OpenError, StreamError, quic};

    #[tokio::test]
    async fn a_native_client_and_a_framed_server_fail_with_typed_alpn_errors() {
        bounded(async {
            let identity = Identity::self_signed();
            let server_ep =
                quic::server_endpoint(loopback(), identity.server_config().unwrap()).unwrap();
            let addr = server_ep.local_addr().unwrap();
            let server =
                tokio::spawn(
                    async move { quic::accept_framed(&server_ep, Config::default()).await },
                );
            let client_ep = quic::native_client_endpoint(
                loopback(),
                identity.client_config(),
                &Config::default(),
            )
            .unwrap();
            let err = quic::connect_native(&client_ep, addr, "localhost", Config::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, quic::ConnectError::Tls(TlsError::Alpn { .. })),
                "{err:?}"
            );
            let err = server.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    err,
                    quic::AcceptError::Tls {
                        source: TlsError::Alpn { .. },
                        ..
                    }
                ),
                "{err:?}"
            );
        })
        .await;
    }

    #[test]
    fn native_configs_offer_exactly_the_native_alpn() {
        let identity = Identity::self_signed();
        // The helper configs offer creditmux/1; native mode replaces it.
        let config = Config::default();
        assert!(quic::native_client_config(identity.client_config(), &config).is_ok());
        assert!(quic::native_server_config(identity.server_config().unwrap(), &config).is_ok());
        assert_ne!(quic::NATIVE_ALPN, quic::ALPN);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reset_reaches_both_directions_of_the_peer_with_its_code() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            let mut stream = client.open().await.unwrap();
            stream.write_all(b"hello").await.unwrap();
            let mut peer = server.accept().await.unwrap().expect("a stream");
            let mut hello = [0u8; 5];
            peer.read_exact(&mut hello).await.unwrap();
            stream.reset(ErrorCode(0x42));
            let expected = StreamError::Reset {
                code: ErrorCode(0x42),
                initiator: Initiator::Remote,
            };
            assert_eq!(peer.recv().await.unwrap_err(), expected);
            // The peer's write direction was stopped with the same code.
            let mut write_err = None;
            for _ in 0..1000 {
                if let Err(err) = peer.send(bytes::Bytes::from_static(b"x")).await {
                    write_err = Some(err);
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(write_err, Some(expected));
            let stats = client.stats();
            assert_eq!(stats.data_bytes_sent, 5);
            assert!(server.stats().data_bytes_received >= 5);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ping_measures_a_round_trip_on_the_control_stream() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            let rtt = client.ping().await.unwrap();
            assert!(rtt > Duration::ZERO);
            server.ping().await.unwrap();
            assert_eq!(client.stats().rtt, Some(rtt));
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn goaway_stops_new_streams_and_lets_open_ones_finish() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            let mut stream = client.open().await.unwrap();
            stream.write_all(b"before").await.unwrap();
            let mut peer = server.accept().await.unwrap().expect("a stream");
            let closing = {
                let server = server.clone();
                tokio::spawn(async move { server.close(ErrorCode::NO_ERROR).await })
            };
            // The GOAWAY arrives on the control stream: open() fails.
            let mut refused = None;
            for _ in 0..1000 {
                match client.open().await {
                    Err(err) => {
                        refused = Some(err);
                        break;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            assert_eq!(refused, Some(OpenError::GoingAway));
            // The open stream still works both ways.
            stream.write_all(b" after").await.unwrap();
            stream.shutdown().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"before after");
            peer.write_all(b"reply").await.unwrap();
            peer.shutdown().await.unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"reply");
            drop((stream, peer));
            closing.await.unwrap().expect("graceful close");
            client.closed().await;
            let end = client.error().expect("ended");
            assert!(end.is_graceful(), "{end:?}");
            assert!(server.error().unwrap().is_graceful());
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_with_an_error_code_reports_it_to_the_peer() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            client.close(ErrorCode(0x77)).await.unwrap();
            server.closed().await;
            match server.error() {
                Some(creditmux::ConnectionError::ClosedByPeer { code, .. }) => {
                    assert_eq!(code, ErrorCode(0x77))
                }
                other => panic!("server saw {other:?}"),
            }
            assert!(matches!(
                server.open().await,
                Err(OpenError::ConnectionLost(_))
            ));
        })
        .await;
    }

    /// Dropping a whole stream before the peer finished resets it with
    /// CANCEL (the peer's read and write both fail), and a graceful close
    /// afterwards completes without waiting for the drain timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_a_whole_stream_resets_it_and_close_does_not_wait_for_the_drain() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(long_drain()).await;
            let mut stream = client.open().await.unwrap();
            stream.write_all(b"x").await.unwrap();
            let mut peer = server.accept().await.unwrap().expect("a stream");
            let mut x = [0u8; 1];
            peer.read_exact(&mut x).await.unwrap();
            drop(stream);
            let expected = StreamError::Reset {
                code: ErrorCode::CANCEL,
                initiator: Initiator::Remote,
            };
            assert_eq!(peer.recv().await.unwrap_err(), expected);
            drop(peer);
            client.close(ErrorCode::NO_ERROR).await.expect("graceful");
            server.closed().await;
            match server.error() {
                Some(creditmux::ConnectionError::ClosedByPeer { code, debug }) => {
                    assert_eq!(code, ErrorCode::NO_ERROR);
                    assert_ne!(debug, "drain timeout");
                }
                other => panic!("server saw {other:?}"),
            }
        })
        .await;
    }

    /// A read half waiting on one task wakes with the reset made through
    /// the write half on another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reset_through_the_write_half_wakes_a_waiting_read_half() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            let stream = client.open().await.unwrap();
            let (mut r, mut w) = stream.split();
            w.send(bytes::Bytes::from_static(b"x")).await.unwrap();
            let _peer = server.accept().await.unwrap().expect("a stream");
            let reader = tokio::spawn(async move { r.recv().await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.reset(ErrorCode(0x33));
            let result = reader.await.unwrap();
            assert_eq!(
                result.unwrap_err(),
                StreamError::Reset {
                    code: ErrorCode(0x33),
                    initiator: Initiator::Local,
                }
            );
        })
        .await;
    }

    /// `ping()` in a tight loop is paced to 50 a second and answered ACKs
    /// do not count as a flood, so neither side closes the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pinging_in_a_loop_stays_within_the_flood_limits() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(Config::default()).await;
            for _ in 0..120 {
                client.ping().await.expect("ping answered");
            }
            assert_eq!(client.error(), None);
            assert_eq!(server.error(), None);
        })
        .await;
    }

    /// SPEC §13.1: a stream this side opened that the peer's GOAWAY does
    /// not cover (it never reached the peer) fails with REFUSED_STREAM at
    /// once, both ways, and the graceful close completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_goaway_refuses_streams_above_its_last_stream_id() {
        bounded(async {
            let (client, server, _c, _s) = native_pair(long_drain()).await;
            let mut seen = client.open().await.unwrap();
            seen.write_all(b"x").await.unwrap();
            let peer = server.accept().await.unwrap().expect("a stream");
            // Opened but never written: the server has not heard of it.
            let unseen = client.open().await.unwrap();
            let (mut unseen_read, mut unseen_write) = unseen.split();
            let reader = tokio::spawn(async move { unseen_read.recv().await });
            let closing = {
                let server = server.clone();
                tokio::spawn(async move { server.close(ErrorCode::NO_ERROR).await })
            };
            let refused = StreamError::Reset {
                code: ErrorCode::REFUSED_STREAM,
                initiator: Initiator::Remote,
            };
            assert_eq!(reader.await.unwrap().unwrap_err(), refused);
            assert_eq!(
                unseen_write
                    .send(bytes::Bytes::from_static(b"late"))
                    .await
                    .unwrap_err(),
                refused
            );
            drop(unseen_write);
            // The stream the server accepted is untouched.
            seen.shutdown().await.unwrap();
            drop((seen, peer));
            closing.await.unwrap().expect("graceful close");
        })
        .await;
    }

    /// The stream window is QUIC's MAX_STREAM_DATA: a stream nobody reads
    /// takes at most that much, and another stream moves 4 MiB meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_never_read_stream_holds_only_its_window_and_does_not_stall_another() {
        bounded(async {
            let window = 64 * 1024;
            let config = Config::builder()
                .stream_window(window)
                .connection_window(1024 * 1024)
                .build()
                .unwrap();
            let (client, server, _c, _s) = native_pair(config).await;
            let mut stuck = client.open().await.unwrap();
            stuck.write_all(b"s").await.unwrap();
            let accepted = server.accept().await.unwrap().expect("stuck stream");
            let written = Arc::new(std::sync::atomic::AtomicUsize::new(1));
            let counter = written.clone();
            let writer = tokio::spawn(async move {
                let chunk = vec![7u8; 4096];
                loop {
                    let n = stuck.write(&chunk).await.unwrap();
                    counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
            });
            let mut free = client.open().await.unwrap();
            let payload = vec![9u8; 4 * 1024 * 1024];
            let sent = payload.clone();
            let sender = tokio::spawn(async move {
                free.write_all(&sent).await.unwrap();
                free.shutdown().await.unwrap();
                free
            });
            let mut other = server.accept().await.unwrap().expect("free stream");
            let mut got = Vec::new();
            other.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, payload);
            let _free = sender.await.unwrap();
            let taken = written.load(std::sync::atomic::Ordering::SeqCst);
            assert!(
                taken <= window as usize,
                "{taken} bytes accepted on a stream with a {window}-byte window"
            );
            writer.abort();
            drop(accepted);
        })
        .await;
    }
}
