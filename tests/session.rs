//! The async API end to end: in-memory pipes with a buffer smaller than the
//! windows, and TCP loopback.

mod support;

use std::time::Duration;

use creditmux::{Config, ConnectionError, ErrorCode, OpenError, Session, StreamError};
use rand::{Rng, SeedableRng, rngs::StdRng};
use support::choppy::choppy_pair;
use support::sessions::{serve_echo, tcp_pair};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    out
}

/// Writes `data` on a new stream while reading the echo on another task;
/// returns what came back.
async fn echo_once(session: &Session, data: Vec<u8>) -> Vec<u8> {
    let stream = session.open().await.expect("open");
    let (mut r, mut w) = stream.split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

async fn echo_many(client: Session, server: Session, streams: usize, max_size: usize) {
    let server_task = tokio::spawn(serve_echo(server));
    let mut tasks = Vec::new();
    for i in 0..streams {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let len = (i * 7919) % (max_size + 1);
            let data = payload(i as u64, len);
            let back = echo_once(&client, data.clone()).await;
            assert!(
                back == data,
                "stream {i}: {} bytes back of {}",
                back.len(),
                data.len()
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    server_task.await.unwrap();
}

fn small_windows() -> Config {
    Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .max_frame_payload(4 * 1024)
        .send_buffer(32 * 1024)
        .build()
        .unwrap()
}

async fn duplex_pair(config: Config) -> (Session, Session) {
    // 1 KiB pipe: far smaller than any window.
    let (a, b) = tokio::io::duplex(1024);
    let server = tokio::spawn(Session::server(b, config.clone()));
    let client = Session::client(a, config).await.unwrap();
    (client, server.await.unwrap().unwrap())
}

#[tokio::test]
async fn direct_writes_cut_anywhere_by_the_transport_keep_every_stream_intact() {
    let config = Config::builder()
        .stream_window(64 * 1024)
        .max_frame_payload(4 * 1024)
        .build()
        .unwrap();
    let (client, server) = choppy_pair(64 * 1024, config).await;
    let server_task = tokio::spawn(serve_echo(server.clone()));
    // One stream at a time (the direct path needs an otherwise idle
    // connection), then eight at once.
    for i in 0..8 {
        let data = payload(100 + i, 50_000 + 7919 * i as usize);
        let back = echo_once(&client, data.clone()).await;
        assert!(back == data, "stream {i}: {} bytes back", back.len());
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let data = payload(200 + i, 50_000 + 7919 * i as usize);
            let back = echo_once(&client, data.clone()).await;
            assert!(back == data, "stream {i}: {} bytes back", back.len());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    server_task.await.unwrap();
    // Every byte a side wrote, directly or through the driver, was counted
    // once, and the peer read exactly that many.
    for (from, to) in [(&client, &server), (&server, &client)] {
        let (sent, received) = (from.stats(), to.stats());
        assert_eq!(sent.data_bytes_sent, received.data_bytes_received);
        assert_eq!(sent.frames_sent, received.frames_received);
        assert_eq!(sent.transport_bytes_sent, received.transport_bytes_received);
    }
}

#[tokio::test(start_paused = true)]
async fn a_large_write_without_credit_waits_for_it_uncopied_and_probes() {
    let window = 64 * 1024;
    let config = Config::builder()
        .stream_window(window as u32)
        .max_frame_payload(4 * 1024)
        .build()
        .unwrap();
    // Choppy every seventh call only: 20 KB and more per write otherwise.
    let (client, server) = choppy_pair(1 << 20, config).await;
    let data = payload(11, 3 * window);
    let (_r, mut w) = client.open().await.unwrap().split();
    w.write_all(&data[..window]).await.unwrap();
    let mut peer = server.accept().await.unwrap().unwrap();

    // No credit left: a write of a frame or more waits, with nothing
    // copied into the send buffer, and the zero-window probe runs.
    let waited =
        tokio::time::timeout(Duration::from_secs(10), w.write(&data[window..2 * window])).await;
    assert!(waited.is_err(), "the large write returned {waited:?}");
    assert_eq!(w.stats().unwrap().send_buffered, Some(0));
    assert!(client.stats().probes_sent >= 2, "{:?}", client.stats());

    // Reading returns credit, which wakes the writer; it finishes and
    // every byte arrives in order.
    let writer = tokio::spawn(async move {
        w.write_all(&data[window..]).await.unwrap();
        w.shutdown().await.unwrap();
        data
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), peer.read_to_end(&mut got))
        .await
        .expect("the waiting writer was woken by credit")
        .unwrap();
    let data = writer.await.unwrap();
    assert!(
        got == data,
        "{} of {} bytes arrived intact",
        got.len(),
        data.len()
    );

    // A small write without credit is still buffered at once.
    let (_r, mut w) = client.open().await.unwrap().split();
    w.write_all(&data[..window]).await.unwrap();
    let _peer = server.accept().await.unwrap().unwrap();
    let small = w.write(&data[..100]).await.unwrap();
    assert_eq!(small, 100);
    assert_eq!(w.stats().unwrap().send_buffered, Some(100));
}

#[tokio::test(start_paused = true)]
async fn a_writer_that_waited_for_credit_and_finished_stops_probing() {
    let window = 64 * 1024;
    let config = Config::builder()
        .stream_window(window as u32)
        .build()
        .unwrap();
    let (client, server) = choppy_pair(1 << 20, config).await;
    let data = payload(12, 2 * window);
    let (_r, mut w) = client.open().await.unwrap().split();
    w.write_all(&data[..window]).await.unwrap();
    // Accepted once the window's worth went out (never read).
    let _peer = server.accept().await.unwrap().unwrap();
    // Gives up waiting for credit, then finishes.
    let waited = tokio::time::timeout(Duration::from_secs(3), w.write(&data[window..])).await;
    assert!(waited.is_err());
    assert!(client.stats().probes_sent >= 1);
    w.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probes = client.stats().probes_sent;
    // SPEC §8.4: no BLOCKED once finished; nothing is blocked.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(client.stats().probes_sent, probes);
    assert_eq!(w.stats().unwrap().send_buffered, Some(0));
}

/// Sends `data` on a new stream of `client` in writes of `write` bytes;
/// `server` reads it with buffers cycling through `reads`. Both sides'
/// counters must agree afterwards.
async fn one_way(client: &Session, server: &Session, data: Vec<u8>, write: usize, reads: &[usize]) {
    let mut s = client.open().await.unwrap();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(write) {
            s.write_all(chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        // Held until the peer finishes: dropped earlier, the stream would
        // be reset (the peer could still send).
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        data
    });
    let mut peer = server.accept().await.unwrap().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; *reads.iter().max().unwrap()];
    for i in 0.. {
        let n = peer.read(&mut buf[..reads[i % reads.len()]]).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    peer.shutdown().await.unwrap();
    let data = writer.await.unwrap();
    assert!(
        got == data,
        "{} of {} bytes arrived intact",
        got.len(),
        data.len()
    );
    let (sent, received) = (client.stats(), server.stats());
    assert_eq!(sent.data_bytes_sent, received.data_bytes_received);
    assert_eq!(sent.frames_sent, received.frames_received);
    assert_eq!(sent.transport_bytes_sent, received.transport_bytes_received);
}

#[tokio::test]
async fn large_frames_read_straight_into_the_reader_arrive_intact() {
    // Default frames (256 KiB) over TCP: the reader's buffer takes most of
    // each payload directly from the socket, whatever its size.
    let (client, server) = tcp_pair(Config::default()).await;
    let data = payload(21, 6 << 20);
    one_way(
        &client,
        &server,
        data,
        256 * 1024,
        &[70_000, 300_000, 16_384, 1 << 20],
    )
    .await;
    // Over a pipe that cuts every write anywhere.
    let config = Config::default();
    let (client, server) = choppy_pair(64 * 1024, config).await;
    let data = payload(22, 2 << 20);
    one_way(&client, &server, data, 300_000, &[17_000, 200_000, 5]).await;
}

#[tokio::test]
async fn one_stream_echoes_over_a_small_pipe() {
    let (c, s) = duplex_pair(small_windows()).await;
    echo_many(c, s, 1, 300_000).await;
}

#[tokio::test]
async fn ten_streams_echo_over_a_small_pipe() {
    let (c, s) = duplex_pair(small_windows()).await;
    echo_many(c, s, 10, 200_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_echo_over_a_small_pipe() {
    let config = Config::builder()
        .max_incoming_streams(1000)
        .build()
        .unwrap();
    let (c, s) = duplex_pair(config).await;
    echo_many(c, s, 1000, 4000).await;
}

#[tokio::test]
async fn one_stream_echoes_over_tcp() {
    let (c, s) = tcp_pair(Config::default()).await;
    echo_many(c, s, 1, 4 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_echo_over_tcp() {
    let config = Config::builder().max_incoming_streams(200).build().unwrap();
    let (c, s) = tcp_pair(config).await;
    echo_many(c, s, 1000, 20_000).await;
}

#[tokio::test]
async fn zero_copy_send_and_recv_carry_bytes() {
    let (client, server) = duplex_pair(Config::default()).await;
    let server_task = tokio::spawn(async move {
        let mut s = server.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = s.recv().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        s.send(bytes::Bytes::from(got)).await.unwrap();
        s.finish().unwrap();
        server.closed().await;
    });
    let mut s = client.open().await.unwrap();
    s.send(bytes::Bytes::from_static(b"zero-")).await.unwrap();
    s.send(bytes::Bytes::from(vec![b'c'; 100_000]))
        .await
        .unwrap();
    s.finish().unwrap();
    let mut back = Vec::new();
    while let Some(chunk) = s.recv().await.unwrap() {
        back.extend_from_slice(&chunk);
    }
    assert_eq!(&back[..5], b"zero-");
    assert_eq!(back.len(), 100_005);
    drop(s);
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    server_task.await.unwrap();
}

#[tokio::test]
async fn open_waits_at_the_peer_limit_and_proceeds_when_a_stream_closes() {
    let config = Config::builder().max_incoming_streams(2).build().unwrap();
    let (client, server) = duplex_pair(config).await;
    let mut a = client.open().await.unwrap();
    let _b = client.open().await.unwrap();
    let third = tokio::spawn({
        let client = client.clone();
        async move { client.open().await.map(|s| s.id()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !third.is_finished(),
        "the third open waits for stream credit"
    );
    // Finish stream a on both sides.
    a.write_all(b"x").await.unwrap();
    a.shutdown().await.unwrap();
    let mut sa = server.accept().await.unwrap().unwrap();
    let mut buf = Vec::new();
    sa.read_to_end(&mut buf).await.unwrap();
    sa.shutdown().await.unwrap();
    drop(sa);
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).await.unwrap();
    drop(a);
    let id = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("open proceeded")
        .unwrap()
        .unwrap();
    assert_eq!(id.get(), 5);
}

#[tokio::test]
async fn dropping_an_unfinished_stream_resets_it_for_the_peer() {
    let (client, server) = duplex_pair(Config::default()).await;
    let mut s = client.open().await.unwrap();
    s.write_all(b"partial").await.unwrap();
    let mut peer = server.accept().await.unwrap().unwrap();
    let mut buf = [0u8; 7];
    peer.read_exact(&mut buf).await.unwrap();
    drop(s);
    let err = peer.recv().await.unwrap_err();
    assert_eq!(
        err,
        StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: creditmux::Initiator::Remote
        }
    );
}

#[tokio::test]
async fn dropping_every_session_handle_closes_gracefully() {
    let (client, server) = duplex_pair(Config::default()).await;
    let server2 = server.clone();
    drop(client);
    // The peer sees no more streams and the session ends; no task is left.
    assert!(server.accept().await.unwrap().is_none());
    tokio::time::timeout(Duration::from_secs(10), server2.closed())
        .await
        .expect("the session ended");
    assert_eq!(server.open().await.unwrap_err(), OpenError::GoingAway);
}

#[tokio::test]
async fn ping_round_trips_and_stats_count_bytes() {
    let (client, server) = duplex_pair(Config::default()).await;
    let rtt = client.ping().await.unwrap();
    assert!(rtt < Duration::from_secs(5));
    let stats = client.stats();
    assert!(stats.rtt.is_some());
    assert!(stats.transport_bytes_sent > 0);
    let _ = server;
}

#[tokio::test]
async fn both_sides_fill_windows_and_control_still_flows() {
    let config = small_windows();
    let (client, server) = duplex_pair(config).await;
    // Each side writes far more than the peer's windows on three streams
    // and nobody reads.
    let mut writers = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let s = client.open().await.unwrap();
        let (r, mut w) = s.split();
        held.push(r);
        writers.push(tokio::spawn(async move {
            let _ = w.write_all(&vec![1u8; 1 << 20]).await;
            w
        }));
    }
    let mut server_held = Vec::new();
    for _ in 0..3 {
        let s = server.accept().await.unwrap().unwrap();
        let (r, mut w) = s.split();
        server_held.push(r);
        writers.push(tokio::spawn(async move {
            let _ = w.write_all(&vec![2u8; 1 << 20]).await;
            w
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // PING still round-trips.
    tokio::time::timeout(Duration::from_secs(5), client.ping())
        .await
        .expect("ping answered")
        .unwrap();
    // A new stream still opens and transfers.
    let echo = tokio::spawn({
        let server = server.clone();
        async move {
            let mut s = server.accept().await.unwrap().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        }
    });
    let mut fresh = client.open().await.unwrap();
    fresh.write_all(b"still alive").await.unwrap();
    fresh.shutdown().await.unwrap();
    assert_eq!(echo.await.unwrap(), b"still alive");
    // RESET still completes, and close ends everything.
    drop(held);
    client.close(ErrorCode::NO_ERROR).await.ok();
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("writer woke");
    }
}

#[tokio::test]
async fn a_slow_stream_does_not_slow_another_moving_64_mib() {
    let config = Config::default();
    let window = config.stream_window() as usize;
    let (client, server) = tcp_pair(config).await;
    let mut slow = client.open().await.unwrap();
    // Fits the peer window, so the write returns.
    slow.write_all(&vec![9u8; window - 1024]).await.unwrap();
    let slow_peer = server.accept().await.unwrap().unwrap();
    let fast = client.open().await.unwrap();
    let total = 64usize << 20;
    let writer = tokio::spawn(async move {
        let (_, mut w) = fast.split();
        let chunk = vec![3u8; 256 * 1024];
        let mut sent = 0;
        while sent < total {
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        w.shutdown().await.unwrap();
    });
    let mut fast_peer = server.accept().await.unwrap().unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = fast_peer.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
        let stuck = slow_peer.stats().unwrap().recv_buffered.unwrap();
        assert!(
            stuck <= window as u64,
            "the unread stream holds {stuck} bytes, beyond its window"
        );
    }
    writer.await.unwrap();
    assert_eq!(got, total);
    drop(slow);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_fails_the_handshake_after_the_timeout() {
    let (a, _silent) = tokio::io::duplex(64 * 1024);
    let start = tokio::time::Instant::now();
    let err = Session::client(a, Config::default()).await.unwrap_err();
    assert_eq!(err, ConnectionError::HandshakeTimeout);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_goes_silent_is_declared_dead_after_the_idle_timeout() {
    // A raw peer: does the handshake by hand, then never sends again.
    let (a, mut raw) = tokio::io::duplex(1 << 20);
    let peer = tokio::spawn(async move {
        let mut preface = [0u8; 8];
        raw.read_exact(&mut preface).await.unwrap();
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&creditmux::frame::encode_preface());
        creditmux::frame::Frame::Settings(Default::default()).encode(&mut out);
        creditmux::frame::Frame::Settings(creditmux::frame::Settings {
            ack: true,
            values: Default::default(),
        })
        .encode(&mut out);
        raw.write_all(&out).await.unwrap();
        // Keep reading (so writes do not block) but never answer.
        let mut sink = vec![0u8; 4096];
        while raw.read(&mut sink).await.unwrap_or(0) > 0 {}
    });
    let session = Session::client(a, Config::default()).await.unwrap();
    let start = tokio::time::Instant::now();
    session.closed().await;
    assert_eq!(session.error(), Some(ConnectionError::IdleTimeout));
    // Keepalive PING after 15 s of silence, dead 15 s later.
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    peer.abort();
}

mod random_configs {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Each case runs a whole session over a duplex pipe; 24 cases keep the
        // test near a second in debug builds while still crossing frame,
        // window and pipe boundaries in many combinations.
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn echo_is_byte_exact_for_random_configs_and_sizes(
            stream_window in 1024u32..=128 * 1024,
            window_factor in 4u32..16,
            max_frame in 1024u32..=32 * 1024,
            send_buffer in 1024u32..=128 * 1024,
            pipe in 64usize..8192,
            sizes in proptest::collection::vec(0usize..200_000, 1..6),
        ) {
            let config = Config::builder()
                .stream_window(stream_window)
                .connection_window(stream_window * window_factor)
                .max_frame_payload(max_frame)
                .send_buffer(send_buffer)
                .build()
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (a, b) = tokio::io::duplex(pipe);
                let server = tokio::spawn(Session::server(b, config.clone()));
                let client = Session::client(a, config).await.unwrap();
                let server = server.await.unwrap().unwrap();
                let serving = tokio::spawn(serve_echo(server));
                let mut tasks = Vec::new();
                for (i, size) in sizes.into_iter().enumerate() {
                    let client = client.clone();
                    tasks.push(tokio::spawn(async move {
                        let data = payload(i as u64 + 100, size);
                        let back = echo_once(&client, data.clone()).await;
                        assert!(back == data, "stream {i}: {} of {} bytes", back.len(), data.len());
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                client.close(ErrorCode::NO_ERROR).await.unwrap();
                serving.await.unwrap();
            });
        }
    }
}

/// A task that read the transport itself for its stream and then gave up
/// waiting (its read future dropped) must not leave input unread: the
/// driver still reads for every other stream and for the connection.
#[tokio::test]
async fn an_abandoned_direct_reader_leaves_the_connection_served() {
    // No keepalive, no half-close limit, a handshake deadline far away: no
    // timer would wake a driver that input did not wake.
    let config = Config::builder()
        .handshake_timeout(Duration::from_secs(3600))
        .keepalive_interval(None)
        .half_close_timeout(None)
        .build()
        .unwrap();
    let (client, server) = tcp_pair(config).await;
    let mut a = client.open().await.unwrap();
    a.write_all(b"a").await.unwrap();
    let mut a_server = server.accept().await.unwrap().unwrap();
    let mut one = [0u8; 1];
    a_server.read_exact(&mut one).await.unwrap();

    // The lone reader: it polls the transport itself, then is dropped.
    let mut buf = [0u8; 16];
    let waited = tokio::time::timeout(Duration::from_millis(20), a.read(&mut buf)).await;
    assert!(waited.is_err(), "nothing was sent on stream a");

    // Input for another stream and for the connection still flows (the
    // timeout only turns a hang into a failure).
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut b_server = server.open().await.unwrap();
        b_server.write_all(b"hello").await.unwrap();
        b_server.finish().unwrap();
        let mut b = client.accept().await.unwrap().unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server.ping().await.unwrap();
        client.ping().await.unwrap();

        // And stream a itself, when read again.
        a_server.write_all(b"late").await.unwrap();
        let n = a.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"late");
    })
    .await
    .expect("the connection stalled");
}

/// Split halves end their own direction when dropped alone, and the stream
/// lives on in the other; the second drop releases it.
#[tokio::test]
async fn a_half_dropped_alone_ends_only_its_direction() {
    let (client, server) = duplex_pair(small_windows()).await;

    // The read half goes first: what the peer sends is discarded, so a
    // peer writing far past the window is not stalled, and the write half
    // still works.
    let stream = client.open().await.unwrap();
    let (r, mut w) = stream.split();
    w.write_all(b"x").await.unwrap();
    let mut peer = server.accept().await.unwrap().unwrap();
    drop(r);
    peer.write_all(&payload(7, 1 << 20)).await.unwrap();
    peer.finish().unwrap();
    w.write_all(b"done").await.unwrap();
    drop(w);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"xdone");
    drop(peer);

    // The write half goes first: the peer sees the end, and the read half
    // still gets what the peer sends.
    let stream = client.open().await.unwrap();
    let (mut r, mut w) = stream.split();
    w.write_all(b"y").await.unwrap();
    drop(w);
    let mut peer = server.accept().await.unwrap().unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"y");
    let data = payload(8, 100_000);
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        peer.write_all(&data).await.unwrap();
        peer.finish().unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert!(back == expected);
    writer.await.unwrap();
    drop(r);

    // Both streams released on both sides: the close completes.
    client.close(ErrorCode::NO_ERROR).await.unwrap();
}

/// One poll of `stream`'s flush.
fn poll_flush_once(stream: &mut creditmux::Stream) -> std::task::Poll<std::io::Result<()>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(stream).poll_flush(&mut cx)
}

/// A flush (and a shutdown) writes what the core owes from the flushing
/// task itself when the transport's writer is free, as the driver task
/// would on its next turn: it completes in its first poll, without a hop
/// to the driver. On this single-threaded runtime the driver cannot run
/// between the write and the flush, so without that the flush would wait.
#[tokio::test]
async fn a_flush_writes_queued_bytes_itself_when_the_writer_is_free() {
    let (client, server) = tcp_pair(Config::default()).await;
    let echo = tokio::spawn(serve_echo(server));
    for round in 0..3u8 {
        let mut stream = client.open().await.unwrap();
        // A new stream's first bytes are queued behind its opening frame,
        // not written directly.
        stream.write_all(&[round; 100]).await.unwrap();
        assert_eq!(client.stats().data_bytes_sent, 100 * u64::from(round));
        assert!(
            poll_flush_once(&mut stream).is_ready(),
            "the flush waited for the driver"
        );
        assert_eq!(client.stats().data_bytes_sent, 100 * u64::from(round + 1));
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, vec![round; 100]);
    }
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    echo.await.unwrap();
}
