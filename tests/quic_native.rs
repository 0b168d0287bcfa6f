//! Native QUIC mode over loopback: every creditmux stream a QUIC stream,
//! the control plane on its own stream. ALPN separation from the framed
//! mode, resets, GOAWAY and close as the SPEC (§18) defines them.

#![cfg(feature = "quic")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use creditmux::{Config, ErrorCode};
use support::sessions::quic::{long_drain, loopback, native_pair};
use support::sessions::{Identity, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use creditmux::tls::TlsError;
use creditmux::{Initiator, OpenError, StreamError, quic};

#[tokio::test]
async fn a_native_client_and_a_framed_server_fail_with_typed_alpn_errors() {
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
        let client_ep = quic::client_endpoint(
            loopback(),
            identity.client_config(),
            quic::Mode::Native,
            &Config::default(),
        )
        .unwrap();
        let err = quic::connect(
            &client_ep,
            addr,
            "localhost",
            quic::Mode::Native,
            Config::default(),
        )
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
    assert!(quic::client_config(identity.client_config(), quic::Mode::Native, &config).is_ok());
    assert!(
        quic::server_config(
            identity.server_config().unwrap(),
            quic::Mode::Native,
            &config
        )
        .is_ok()
    );
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

/// A reset made through the write half on one task aborts only the
/// writing (SPEC §8.7.1): a read half waiting on another task keeps
/// waiting and gets the peer's next bytes, and the peer's reads fail with
/// the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_through_the_write_half_leaves_a_waiting_read_half_reading() {
    bounded(async {
        let (client, server, _c, _s) = native_pair(Config::default()).await;
        let stream = client.open().await.unwrap();
        let (mut r, mut w) = stream.split();
        w.send(bytes::Bytes::from_static(b"x")).await.unwrap();
        let mut peer = server.accept().await.unwrap().expect("a stream");
        assert_eq!(peer.recv().await.unwrap().as_deref(), Some(&b"x"[..]));
        let reader = tokio::spawn(async move { r.recv().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.reset(ErrorCode(0x33));
        assert_eq!(
            peer.recv().await.unwrap_err(),
            StreamError::Reset {
                code: ErrorCode(0x33),
                initiator: Initiator::Remote,
            }
        );
        peer.send(bytes::Bytes::from_static(b"y")).await.unwrap();
        let result = reader.await.unwrap();
        assert_eq!(result.unwrap().as_deref(), Some(&b"y"[..]));
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

/// Done means delivered (SPEC §18.4, §18.6): a stream whose writer's
/// `shutdown()` returned (the peer's QUIC acknowledged every byte and the
/// FIN) and who then closed gracefully is still handed to the peer's
/// application, whole, after the connection has ended, as the backlog of
/// a byte-stream session is after its transport closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivered_before_a_graceful_close_is_accepted_and_read_after_the_end() {
    bounded(async {
        let (client, server, _c, _s) = native_pair(Config::default()).await;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = client.open().await.unwrap();
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        client.close(ErrorCode::NO_ERROR).await.expect("graceful");
        drop(client);
        // The server's application looks only once its side has ended.
        let end = server.closed().await;
        assert!(end.is_graceful(), "{end:?}");
        let mut peer = server
            .accept()
            .await
            .expect("a graceful end")
            .expect("the stream delivered before the close");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert!(
            got == data,
            "{} of {} bytes, or other bytes",
            got.len(),
            data.len()
        );
        assert!(server.accept().await.unwrap().is_none());
    })
    .await;
}

/// The native handshake completed (the peer's preface and SETTINGS were
/// read) before the peer wrote a stream, saw it delivered and closed
/// gracefully, all while the accepting application had not yet looked:
/// the server still gets its session, already ended, and the stream on
/// it. One runtime thread: the yields let the control task see the end
/// before the accepting future looks again.
#[tokio::test]
async fn a_handshake_that_completed_before_the_peer_closed_still_yields_the_session() {
    bounded(async {
        let config = Config::default();
        let identity = Identity::self_signed();
        let server_ep = quic::server_endpoint(
            loopback(),
            identity.server_config().unwrap(),
            quic::Mode::Native,
            &config,
        )
        .unwrap();
        let addr = server_ep.local_addr().unwrap();
        let client_ep = quic::client_endpoint(
            loopback(),
            identity.client_config(),
            quic::Mode::Native,
            &config,
        )
        .unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let client_config = config.clone();
        let writer = tokio::spawn(async move {
            let client = quic::connect(
                &client_ep,
                addr,
                "localhost",
                quic::Mode::Native,
                client_config,
            )
            .await
            .unwrap();
            let mut stream = client.open().await.unwrap();
            stream.write_all(&sent).await.unwrap();
            stream.shutdown().await.unwrap();
            drop(stream);
            client.close(ErrorCode::NO_ERROR).await.expect("graceful");
        });
        let connection = server_ep.accept().await.unwrap().await.unwrap();
        let watch = connection.clone();
        let mut accepting = Box::pin(quic::server(connection, quic::Mode::Native, config));
        // The first poll starts the control task; the session is not
        // returned until the peer's preface and SETTINGS have been read.
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(accepting.as_mut().poll(cx).is_pending())
        })
        .await;
        assert!(
            first,
            "the handshake cannot be complete before the first poll"
        );
        // The peer's whole session runs meanwhile, close included, and the
        // QUIC connection ends; then the control task takes its turn.
        writer.await.unwrap();
        watch.closed().await;
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        let session = accepting.await.expect("the handshake had completed");
        let end = session
            .error()
            .expect("the session ended before it was returned");
        assert!(end.is_graceful(), "{end:?}");
        let mut stream = session
            .accept()
            .await
            .expect("a graceful end")
            .expect("the stream delivered before the close");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert!(
            got == data,
            "{} of {} bytes, or other bytes",
            got.len(),
            data.len()
        );
    })
    .await;
}
