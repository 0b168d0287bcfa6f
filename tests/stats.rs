//! `Session::stats` and `Stream::stats` against what the test did, on
//! every transport: TCP, TLS, framed QUIC (the creditmux engine, which
//! knows every field) and native QUIC (which leaves flow control, queues
//! and stream ends to quinn: those fields must say `None`, never 0).

mod support;

use std::time::Duration;

use creditmux::{Config, ErrorCode, Initiator, Session, SessionStats, StreamError, StreamStats};
#[cfg(feature = "quic")]
use support::sessions::quic as quic_pairs;
#[cfg(feature = "tls")]
use support::sessions::tls;
use support::sessions::{bounded, tcp_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: usize = 100_000;

/// Does the session's engine know flow control, queues and stream ends?
#[derive(Copy, Clone, Debug, PartialEq)]
enum Engine {
    Creditmux,
    NativeQuic,
}

/// One stream of `N` bytes echoed back, then one stream with 1 byte that
/// the client resets with CANCEL, a PING each way, and a graceful close;
/// the counters must match.
async fn scenario(client: Session, server: Session, engine: Engine) {
    let data: Vec<u8> = (0..N as u32).map(|i| (i * 13) as u8).collect();
    let peer = server.clone();
    let echo = tokio::spawn(async move {
        let mut stream = peer.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        stream.write_all(&got).await.unwrap();
        stream.shutdown().await.unwrap();
        let echoed = stream.stats().expect("an open stream has stats");
        let mut second = peer.accept().await.unwrap().unwrap();
        let mut buf = [0u8; 16];
        let err = loop {
            match second.read(&mut buf).await {
                Ok(0) => panic!("the end of the stream instead of its reset"),
                Ok(_) => {}
                Err(err) => break err,
            }
        };
        (echoed, err)
    });

    let mut stream = client.open().await.unwrap();
    stream.write_all(&data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "{} of {N} bytes echoed", back.len());
    let sent = stream.stats().expect("an open stream has stats");
    check_stream(&sent, engine);

    let mut second = client.open().await.unwrap();
    second.write_all(&[7]).await.unwrap();
    second.flush().await.unwrap();
    second.reset(ErrorCode::CANCEL);
    let (echoed, err) = echo.await.unwrap();
    check_stream(&echoed, engine);
    let err = err
        .into_inner()
        .and_then(|e| e.downcast::<StreamError>().ok())
        .map(|e| *e);
    assert_eq!(
        err,
        Some(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    client.ping().await.unwrap();
    server.ping().await.unwrap();

    let (c, s) = (client.stats(), server.stats());
    // Payload: N and the reset stream's byte out, N back.
    assert_eq!(c.data_bytes_sent, N as u64 + 1, "{c:?}");
    assert_eq!(c.data_bytes_received, N as u64, "{c:?}");
    assert_eq!(s.data_bytes_sent, N as u64, "{s:?}");
    assert!(
        s.data_bytes_received == N as u64 || s.data_bytes_received == N as u64 + 1,
        "{s:?}"
    );
    for x in [&c, &s] {
        // Headers, preface or QUIC packets on top of the payload.
        assert!(x.transport_bytes_sent > x.data_bytes_sent, "{x:?}");
        assert!(x.transport_bytes_received > x.data_bytes_received, "{x:?}");
        assert!(x.frames_sent > 2 && x.frames_received > 2, "{x:?}");
        assert!(x.rtt.is_some() && x.smoothed_rtt.is_some(), "{x:?}");
    }
    match engine {
        Engine::Creditmux => {
            check_known(&c);
            check_known(&s);
            // One RESET with CANCEL went out and came in; the first stream
            // needed no reset.
            assert_eq!(c.resets_sent.as_ref().unwrap().get(ErrorCode::CANCEL), 1);
            assert_eq!(
                s.resets_received.as_ref().unwrap().get(ErrorCode::CANCEL),
                1
            );
            assert_eq!(c.streams_reset_local, Some(1));
            assert_eq!(s.streams_reset_remote, Some(1));
            // No window ran dry: N is far below the default windows.
            assert_eq!(c.zero_window_events, Some(0));
            assert_eq!(c.probes_sent, 0);
            assert_eq!(c.blocked_on_connection, Some(Duration::ZERO));
        }
        Engine::NativeQuic => {
            check_unknown(&c);
            check_unknown(&s);
        }
    }
    drop((stream, second));

    client
        .close(ErrorCode::NO_ERROR)
        .await
        .expect("a graceful close");
    server.closed().await;
    let (c, s) = (client.stats(), server.stats());
    assert!(c.goaways_sent.get(ErrorCode::NO_ERROR) >= 1, "{c:?}");
    assert!(s.goaways_received.get(ErrorCode::NO_ERROR) >= 1, "{s:?}");
    assert_eq!(
        c.goaways_sent.total(),
        c.goaways_sent.get(ErrorCode::NO_ERROR)
    );
    if engine == Engine::Creditmux {
        // Both FINs of the echoed stream went each way.
        assert!(c.streams_completed.unwrap() >= 1, "{c:?}");
    }
}

/// A stream that moved `N` bytes each way and has nothing left.
fn check_stream(stats: &StreamStats, engine: Engine) {
    assert_eq!(stats.bytes_sent, N as u64, "{stats:?}");
    assert_eq!(stats.bytes_received, N as u64, "{stats:?}");
    match engine {
        Engine::Creditmux => {
            assert_eq!(stats.send_buffered, Some(0));
            assert_eq!(stats.recv_buffered, Some(0));
            assert!(stats.send_window.unwrap() > 0, "{stats:?}");
            assert!(stats.recv_window.unwrap() > 0, "{stats:?}");
            assert_eq!(stats.blocked_on_stream, Some(Duration::ZERO));
            assert_eq!(stats.zero_window_events, Some(0));
            assert_eq!(stats.probes_sent, Some(0));
        }
        Engine::NativeQuic => {
            assert_eq!(stats.send_buffered, None);
            assert_eq!(stats.recv_buffered, None);
            assert_eq!(stats.send_window, None);
            assert_eq!(stats.recv_window, None);
            assert_eq!(stats.blocked_on_stream, None);
            assert_eq!(stats.zero_window_events, None);
            assert_eq!(stats.probes_sent, None);
        }
    }
}

/// The creditmux engine knows every field, and nothing is left queued.
fn check_known(x: &SessionStats) {
    assert!(x.send_window.unwrap() > 0, "{x:?}");
    assert!(x.recv_window.unwrap() > 0, "{x:?}");
    assert_eq!(x.recv_buffered, Some(0), "{x:?}");
    assert_eq!(x.queued_data_bytes, Some(0), "{x:?}");
    assert_eq!(x.accept_backlog, Some(0), "{x:?}");
    assert_eq!(x.data_queue_depth, Some(0), "{x:?}");
    assert!(x.control_queue_depth.is_some(), "{x:?}");
    assert!(x.blocked_on_streams.is_some(), "{x:?}");
    assert!(x.probes_answered.is_some(), "{x:?}");
    assert!(
        x.windows_grown.is_some() && x.windows_shrunk.is_some(),
        "{x:?}"
    );
    assert!(x.streams_cancelled_at_drain.is_some(), "{x:?}");
}

/// Native QUIC says what it does not know.
fn check_unknown(x: &SessionStats) {
    assert_eq!(x.send_window, None);
    assert_eq!(x.recv_window, None);
    assert_eq!(x.recv_buffered, None);
    assert_eq!(x.queued_data_bytes, None);
    assert_eq!(x.accept_backlog, None);
    assert_eq!(x.data_queue_depth, None);
    assert_eq!(x.control_queue_depth, None);
    assert_eq!(x.blocked_on_connection, None);
    assert_eq!(x.blocked_on_streams, None);
    assert_eq!(x.zero_window_events, None);
    assert_eq!(x.probes_answered, None);
    assert_eq!(x.windows_grown, None);
    assert_eq!(x.windows_shrunk, None);
    assert_eq!(x.streams_completed, None);
    assert_eq!(x.streams_reset_local, None);
    assert_eq!(x.streams_reset_remote, None);
    assert_eq!(x.streams_cancelled_at_drain, None);
    assert_eq!(x.resets_sent, None);
    assert_eq!(x.resets_received, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_stats_count_what_the_streams_did() {
    bounded(async {
        let (client, server) = tcp_pair(Config::default()).await;
        scenario(client, server, Engine::Creditmux).await;
    })
    .await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_stats_count_what_the_streams_did() {
    bounded(async {
        let (client, server) = tls::pair().await;
        scenario(client, server, Engine::Creditmux).await;
    })
    .await;
}

#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_framed_stats_count_what_the_streams_did() {
    bounded(async {
        let (client, server, _client_ep, _server_ep) = quic_pairs::pair().await;
        scenario(client, server, Engine::Creditmux).await;
    })
    .await;
}

#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_native_stats_count_what_the_streams_did_and_say_what_they_cannot_know() {
    bounded(async {
        let (client, server, _client_ep, _server_ep) =
            quic_pairs::native_pair(Config::default()).await;
        scenario(client, server, Engine::NativeQuic).await;
    })
    .await;
}
