//! One list of scenarios, run against both engines: the byte-stream core
//! (over TCP) and native QUIC (the control plane plus QUIC streams). Each
//! states a rule of proto/SPEC.md the way an application sees it; both
//! engines must behave the same.

#![cfg(feature = "quic")]

#[path = "../examples/support/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use certs::Identity;
use creditmux::{
    Config, ConnectionError, ErrorCode, Initiator, OpenError, Session, StreamError, quic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Copy, Clone, Debug)]
enum Engine {
    Tcp,
    NativeQuic,
}

/// Endpoints that must outlive the sessions (held, never read).
#[allow(dead_code)]
struct Keep(Option<(quinn::Endpoint, quinn::Endpoint)>);

async fn pair(engine: Engine) -> (Session, Session, Keep) {
    match engine {
        Engine::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (socket, _) = listener.accept().await.unwrap();
                Session::server(socket, Config::default()).await.unwrap()
            });
            let client =
                Session::client(TcpStream::connect(addr).await.unwrap(), Config::default())
                    .await
                    .unwrap();
            (client, server.await.unwrap(), Keep(None))
        }
        Engine::NativeQuic => {
            let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let identity = Identity::self_signed();
            let config = Config::default();
            let server_ep = quic::server_endpoint(
                loopback,
                identity.server_config().unwrap(),
                quic::Mode::Native,
                &config,
            )
            .unwrap();
            let addr = server_ep.local_addr().unwrap();
            let accepting = server_ep.clone();
            let server = tokio::spawn(async move {
                quic::accept(&accepting, quic::Mode::Native, Config::default())
                    .await
                    .unwrap()
                    .expect("a connection")
                    .0
            });
            let client_ep = quic::client_endpoint(
                loopback,
                identity.client_config(),
                quic::Mode::Native,
                &config,
            )
            .unwrap();
            let client = quic::connect(&client_ep, addr, "localhost", quic::Mode::Native, config)
                .await
                .unwrap();
            (
                client,
                server.await.unwrap(),
                Keep(Some((client_ep, server_ep))),
            )
        }
    }
}

/// Every scenario, bounded: a hang fails.
async fn each(scenario: impl AsyncFn(Session, Session)) {
    for engine in [Engine::Tcp, Engine::NativeQuic] {
        let (client, server, _keep) = pair(engine).await;
        tokio::time::timeout(Duration::from_secs(20), scenario(client, server))
            .await
            .unwrap_or_else(|_| panic!("{engine:?}: no end within 20 s"));
    }
}

/// SPEC §13.2: a graceful close is `Ok` for the side that closed and for
/// the side that closes after the peer did; each reports who ended it.
#[tokio::test]
async fn a_graceful_close_is_ok_on_both_sides_and_says_who_ended_it() {
    each(async |client: Session, server: Session| {
        let report = client.close(ErrorCode::NO_ERROR).await.expect("graceful");
        assert_eq!(
            report.cause,
            ConnectionError::LocallyClosed {
                code: ErrorCode::NO_ERROR
            }
        );
        let cause = server.closed().await;
        assert!(
            matches!(
                cause,
                ConnectionError::ClosedByPeer {
                    code: ErrorCode::NO_ERROR,
                    ..
                }
            ),
            "{cause:?}"
        );
        let report = server
            .close(ErrorCode::NO_ERROR)
            .await
            .expect("graceful by the peer");
        assert_eq!(report.cause, cause);
        assert!(matches!(
            client.open().await,
            Err(OpenError::GoingAway | OpenError::ConnectionLost(_))
        ));
    })
    .await;
}

/// SPEC §8.7: a reset carries its code to both directions of the peer.
#[tokio::test]
async fn a_reset_reaches_the_peer_with_its_code() {
    each(async |client: Session, server: Session| {
        let mut stream = client.open().await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        stream.flush().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).await.unwrap();
        stream.reset(ErrorCode(0x42));
        let expected = StreamError::Reset {
            code: ErrorCode(0x42),
            initiator: Initiator::Remote,
        };
        let mut rest = Vec::new();
        let err = peer.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(
            err.into_inner()
                .and_then(|e| e.downcast::<StreamError>().ok())
                .map(|e| *e),
            Some(expected.clone())
        );
        // The peer's writes learn it too (QUIC: from STOP_SENDING, which may
        // take a round trip).
        let mut wrote = Ok(());
        for _ in 0..100 {
            wrote = peer.send(bytes::Bytes::from_static(b"x")).await;
            if wrote.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(wrote, Err(expected));
    })
    .await;
}

/// SPEC §8.7: a RESET after the FIN keeps the finished direction: the
/// peer reads every byte and the end.
#[tokio::test]
async fn a_reset_after_finishing_keeps_what_was_finished() {
    each(async |client: Session, server: Session| {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = client.open().await.unwrap();
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        stream.reset(ErrorCode::CANCEL);
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read to the end");
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
    })
    .await;
}

/// SPEC §13.1/§13.2: after a GOAWAY neither side opens streams; the one
/// that received it fails its open at once.
#[tokio::test]
async fn no_stream_opens_after_a_goaway() {
    each(async |client: Session, server: Session| {
        let _held = client.open().await.unwrap();
        let closing = tokio::spawn({
            let server = server.clone();
            async move { server.close(ErrorCode::NO_ERROR).await }
        });
        // The GOAWAY arrives while the client holds a stream.
        let mut refused = false;
        for _ in 0..200 {
            match client.open().await {
                Err(OpenError::GoingAway) => {
                    refused = true;
                    break;
                }
                Ok(s) => drop(s),
                Err(e) => panic!("{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused, "open() never saw the GOAWAY");
        assert_eq!(server.open().await.err(), Some(OpenError::GoingAway));
        drop(_held);
        let report = closing.await.unwrap();
        assert!(report.is_ok(), "{report:?}");
    })
    .await;
}

/// Stats mean the same: payload bytes each way, and PING's round trip.
#[tokio::test]
async fn stats_count_payload_bytes_and_the_round_trip() {
    each(async |client: Session, server: Session| {
        let mut stream = client.open().await.unwrap();
        stream.write_all(&[7u8; 30_000]).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        peer.write_all(&[1u8; 1234]).await.unwrap();
        peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!((got.len(), back.len()), (30_000, 1234));
        let (c, s) = (client.stats(), server.stats());
        assert_eq!((c.data_bytes_sent, c.data_bytes_received), (30_000, 1234));
        assert_eq!((s.data_bytes_sent, s.data_bytes_received), (1234, 30_000));
        let rtt = client.ping().await.unwrap();
        assert_eq!(client.stats().rtt, Some(rtt));
    })
    .await;
}

/// A writer learns of the peer's reset without writing (`stopped`), and
/// that its own finished writing is delivered (`None`).
#[tokio::test]
async fn stopped_reports_the_peers_reset_and_a_delivered_finish() {
    each(async |client: Session, server: Session| {
        let mut stream = client.open().await.unwrap();
        stream.write_all(b"x").await.unwrap();
        stream.flush().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        peer.reset(ErrorCode(0x17));
        assert_eq!(stream.stopped().await, Ok(Some(ErrorCode(0x17))));

        let mut stream = client.open().await.unwrap();
        stream.write_all(b"y").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(stream.stopped().await, Ok(None));
    })
    .await;
}

/// The error a stream operation ended with, out of an `io::Error`.
fn stream_error(err: std::io::Error) -> Option<StreamError> {
    err.into_inner()
        .and_then(|e| e.downcast::<StreamError>().ok())
        .map(|e| *e)
}

/// SPEC §8.7.1: stopping reading ends the peer's writing with the code
/// (its `stopped` says so, its writes fail), while this side's writing
/// goes on and is read to the end.
#[tokio::test]
async fn stop_ends_the_peers_writing_and_keeps_ours() {
    each(async |client: Session, server: Session| {
        let mut stream = client.open().await.unwrap();
        stream.write_all(b"request").await.unwrap();
        stream.flush().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut buf = [0u8; 7];
        peer.read_exact(&mut buf).await.unwrap();
        peer.stop(ErrorCode(0x51));
        assert_eq!(stream.stopped().await, Ok(Some(ErrorCode(0x51))));
        let refused = stream.send(bytes::Bytes::from_static(b"more")).await;
        assert_eq!(
            refused,
            Err(StreamError::Reset {
                code: ErrorCode(0x51),
                initiator: Initiator::Remote,
            })
        );
        // The stopping side's own reads fail with its code.
        let mut rest = Vec::new();
        let err = peer.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(
            stream_error(err),
            Some(StreamError::Reset {
                code: ErrorCode(0x51),
                initiator: Initiator::Local,
            })
        );
        // The other direction is untouched.
        let reply: Vec<u8> = (0..50_000u32).map(|i| (i * 13) as u8).collect();
        peer.write_all(&reply).await.unwrap();
        peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .await
            .expect("the reply, to its end");
        assert!(got == reply, "{} of {} bytes", got.len(), reply.len());
    })
    .await;
}

/// SPEC §8.7.1: a write half's reset aborts only the writing: the peer's
/// reads fail with the code, and its writing goes on and is read to the
/// end.
#[tokio::test]
async fn a_write_halfs_reset_keeps_the_peers_direction() {
    each(async |client: Session, server: Session| {
        let stream = client.open().await.unwrap();
        let (mut reader, mut writer) = stream.split();
        writer.write_all(b"part").await.unwrap();
        writer.flush().await.unwrap();
        let mut peer = server.accept().await.unwrap().unwrap();
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).await.unwrap();
        writer.reset(ErrorCode(0x52));
        let mut rest = Vec::new();
        let err = peer.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(
            stream_error(err),
            Some(StreamError::Reset {
                code: ErrorCode(0x52),
                initiator: Initiator::Remote,
            })
        );
        let reply: Vec<u8> = (0..50_000u32).map(|i| (i * 11) as u8).collect();
        peer.write_all(&reply).await.unwrap();
        peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        reader
            .read_to_end(&mut got)
            .await
            .expect("the reply, to its end");
        assert!(got == reply, "{} of {} bytes", got.len(), reply.len());
        drop(writer);
    })
    .await;
}
