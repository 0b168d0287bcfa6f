//! QUIC failures over loopback, each reported with a typed error: trust,
//! ALPN, and configurations quinn would refuse.

#![cfg(feature = "quic")]

mod support;

use std::sync::Arc;

use creditmux::Config;
use support::sessions::quic::loopback;
use support::sessions::{Identity, bounded};

use creditmux::quic;
use creditmux::tls::TlsError;
use rustls::AlertDescription;

#[tokio::test]
async fn a_client_that_trusts_another_ca_rejects_the_server_and_both_get_typed_errors() {
    bounded(async {
        let server_identity = Identity::self_signed();
        let other_ca = Identity::self_signed();
        let server_ep = quic::server_endpoint(
            loopback(),
            server_identity.server_config().unwrap(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let server = tokio::spawn(async move {
            quic::accept(&server_ep, quic::Mode::Framed, Config::default()).await
        });
        let client_ep = quic::client_endpoint(
            loopback(),
            other_ca.client_config(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let err = quic::connect(
            &client_ep,
            addr,
            "localhost",
            quic::Mode::Framed,
            Config::default(),
        )
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
        let server_ep = quic::server_endpoint(
            loopback(),
            identity.server_config().unwrap(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let server = tokio::spawn(async move {
            quic::accept(&server_ep, quic::Mode::Framed, Config::default()).await
        });

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

/// A plain quinn server that speaks only `h3`: `quic::connect` in framed mode fails with
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
        let client_ep = quic::client_endpoint(
            loopback(),
            identity.client_config(),
            quic::Mode::Framed,
            &Config::default(),
        )
        .unwrap();
        let err = quic::connect(
            &client_ep,
            addr,
            "localhost",
            quic::Mode::Framed,
            Config::default(),
        )
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
    let err =
        quic::server_config(Arc::new(tls), quic::Mode::Framed, &Config::default()).unwrap_err();
    assert!(matches!(err, quic::ConfigError::Tls(_)), "{err:?}");
}
