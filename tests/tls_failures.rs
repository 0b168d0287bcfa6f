//! TLS failures over loopback, each reported with a typed error on both
//! sides: certificates nobody trusts, the wrong ALPN, a peer that speaks
//! TLS but not creditmux, and sessions that survive many rounds.

#![cfg(feature = "tls")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use creditmux::Config;
use support::sessions::{self, Identity, bounded, echo_streams, serve_echo};
use tokio::io::AsyncReadExt;

use creditmux::tls::{self, TlsError};
use rustls::{AlertDescription, CertificateError};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[tokio::test]
async fn a_client_that_trusts_another_ca_rejects_the_server_and_both_get_typed_errors() {
    bounded(async {
        let server_identity = Identity::self_signed();
        let other_ca = Identity::self_signed();
        let (listener, addr) = sessions::tls::listener(&server_identity).await;
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
        let (listener, addr) = sessions::tls::listener(&identity).await;
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
        let (listener, addr) = sessions::tls::listener(&identity).await;
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
        let (listener, addr) = sessions::tls::listener(&identity).await;
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
