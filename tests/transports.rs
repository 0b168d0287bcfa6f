//! The transports over loopback: one echo suite, written once, run over
//! TCP, TLS and QUIC (framed and native); then the failures of TCP that
//! must be reported with a typed error (a peer that is not creditmux, a
//! closed port). TLS and QUIC failures: tls_failures.rs, quic_failures.rs;
//! native QUIC's own behaviour: quic_native.rs.

mod support;

use std::time::Duration;

use creditmux::{Config, tcp};
#[cfg(feature = "quic")]
use support::sessions::quic as quic_pairs;
#[cfg(feature = "tls")]
use support::sessions::tls;
use support::sessions::{bounded, echo_suite, tcp_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        let (client, server) = tls::pair().await;
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
