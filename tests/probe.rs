//! SPEC §11, the zero-window probe, end to end through the tokio driver:
//! whatever path leaves data waiting on zero credit, BLOCKED goes out one
//! probe interval later, and the answer heals the stall. A hand-made peer
//! withholds every WINDOW_UPDATE; tokio's clock is paused.

mod support;

use std::time::Duration;

use creditmux::Config;
use creditmux::frame::{BlockedOn, Frame, SettingsValues, StreamId, WindowUpdate};
use support::frames::data;
use support::wire_peer::WirePeer;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const PROBE: Duration = Duration::from_secs(1);

fn grants(stream: u32, connection: u32, streams: u32) -> SettingsValues {
    SettingsValues {
        initial_stream_window: Some(stream),
        connection_window: Some(connection),
        max_frame_payload: Some(64 * 1024),
        max_streams: Some(streams),
        extensions: None,
    }
}

fn is_blocked(frame: &Frame, on: BlockedOn) -> bool {
    matches!(frame, Frame::Blocked(b) if b.on == on)
}

/// The peer opens stream 1; the server's application accepts it and
/// writes `len` bytes in one call. The first frames use up the credit;
/// BLOCKED for `on` must follow within one probe interval, and its answer
/// (a higher limit) must let the rest out.
async fn one_write_stalls_then_probes(values: SettingsValues, len: usize, on: BlockedOn) {
    let (mut peer, server) = WirePeer::with_server(Config::default(), values).await;
    peer.send(&[data(1, b"hi", false)]).await;
    let mut stream = server.accept().await.unwrap().unwrap();
    // One write; no flush, which would wake the driver on its own.
    let writer = tokio::spawn(async move {
        stream.write_all(&vec![9u8; len]).await.unwrap();
        stream
    });
    let (first, _) = peer.until(|f| matches!(f, Frame::Data(_))).await;
    let stalled_at = Instant::now();
    let (blocked, between) = peer.until(|f| matches!(f, Frame::Blocked(_))).await;
    let waited = stalled_at.elapsed();
    assert!(is_blocked(&blocked, on), "{blocked:?}");
    assert!(
        waited <= PROBE + Duration::from_millis(50),
        "BLOCKED came {waited:?} after the stall (first DATA {first:?}, then {between:?})"
    );
    // The answer heals it: more credit, and the rest goes out.
    let answer = match on {
        BlockedOn::Stream(id) => WindowUpdate {
            stream: id,
            limit: 1 << 30,
        },
        _ => WindowUpdate {
            stream: StreamId::CONNECTION,
            limit: 1 << 30,
        },
    };
    peer.send(&[Frame::WindowUpdate(answer)]).await;
    let mut got = match first {
        Frame::Data(d) => d.payload.len(),
        _ => unreachable!(),
    };
    while got < len {
        match peer.next_frame().await.expect("more data") {
            Frame::Data(d) => got += d.payload.len(),
            Frame::Blocked(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut stream = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the write returned once its bytes were taken")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), stream.flush())
        .await
        .expect("the flush returned once the bytes were out")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_small_write_beyond_the_stream_credit_is_probed() {
    let stream = StreamId::new(1).unwrap();
    one_write_stalls_then_probes(
        grants(1024, 1 << 30, 100),
        8 * 1024,
        BlockedOn::Stream(stream),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn one_large_write_beyond_the_stream_credit_is_probed() {
    let stream = StreamId::new(1).unwrap();
    one_write_stalls_then_probes(
        grants(1024, 1 << 30, 100),
        256 * 1024,
        BlockedOn::Stream(stream),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn one_write_beyond_the_connection_credit_is_probed() {
    one_write_stalls_then_probes(grants(1 << 20, 1024, 100), 8 * 1024, BlockedOn::Connection).await;
}

#[tokio::test(start_paused = true)]
async fn one_large_write_beyond_the_connection_credit_is_probed() {
    one_write_stalls_then_probes(
        grants(1 << 20, 1024, 100),
        256 * 1024,
        BlockedOn::Connection,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_open_at_the_stream_limit_is_probed() {
    let (mut peer, server) =
        WirePeer::with_server(Config::default(), grants(1 << 20, 1 << 30, 0)).await;
    let opener = tokio::spawn(async move {
        let stream = server.open().await.unwrap();
        (server, stream)
    });
    let asked_at = Instant::now();
    let (blocked, _) = peer.until(|f| matches!(f, Frame::Blocked(_))).await;
    assert!(is_blocked(&blocked, BlockedOn::StreamCount), "{blocked:?}");
    assert!(asked_at.elapsed() <= PROBE + Duration::from_millis(50));
    peer.send(&[Frame::MaxStreams(creditmux::frame::MaxStreams { count: 1 })])
        .await;
    let (_server, stream) = tokio::time::timeout(Duration::from_secs(5), opener)
        .await
        .expect("the answer lets open() proceed")
        .unwrap();
    assert_eq!(stream.id().get(), 2);
}

/// The probe keeps going with backoff (1, 2, 4, ... s) while nothing
/// answers, and stops with the FIN (SPEC §11.2).
#[tokio::test(start_paused = true)]
async fn probes_back_off_while_unanswered() {
    let (mut peer, server) =
        WirePeer::with_server(Config::default(), grants(1024, 1 << 30, 100)).await;
    peer.send(&[data(1, b"hi", false)]).await;
    let mut stream = server.accept().await.unwrap().unwrap();
    tokio::spawn(async move {
        let _ = stream.write_all(&[1u8; 4096]).await;
        std::future::pending::<()>().await;
        drop(stream);
    });
    peer.until(|f| matches!(f, Frame::Data(_))).await;
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..4 {
        peer.until(|f| matches!(f, Frame::Blocked(_))).await;
        at.push(start.elapsed().as_secs_f64().round() as u64);
    }
    assert_eq!(at, vec![1, 3, 7, 15], "probe times in seconds");
    drop(server);
}
