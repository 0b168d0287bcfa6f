//! PRIORITY_UPDATE (SPEC §6.10): a receiver asking the sender of a stream
//! for another priority. Sans-IO cores under virtual time (the request's
//! effect on the peer's DATA order, coalescing, waiting for the opening
//! frame, pacing, the receiver's checks) and one session over TCP.

mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use creditmux::conn::{Connection, TransmitBuf};
use creditmux::frame::{
    DIRECTIONAL_RESET, Data, Decoded, ErrorCode, Frame, FrameDecoder, PRIORITY_UPDATES,
    PriorityUpdate, Settings, SettingsValues, StreamId,
};
use creditmux::{Config, ConnectionError, Priority, PriorityRequestError};
use support::pair::Pair;
use support::raw::Raw;

/// Bytes each stream writes: four frames of the scheduler's 16 KiB turns.
const EACH: usize = 64 * 1024;

/// A connected pair whose server accepted `n` streams of the client and
/// wrote `EACH` bytes on each, not transmitted yet: the server's DATA
/// order is left to decide.
fn server_writing(n: usize) -> (Pair, Vec<StreamId>) {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.connect();
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[0]).unwrap();
        ids.push(id);
    }
    pair.drive();
    for &id in &ids {
        assert_eq!(pair.server.accept(), Some(id));
        assert_eq!(pair.server.write(pair.now, id, &[1; EACH]).unwrap(), EACH);
    }
    (pair, ids)
}

/// Every frame one transmit of `conn` writes.
fn transmit(conn: &mut Connection, now: Instant, max_bytes: usize) -> Vec<Frame> {
    let mut buf = TransmitBuf::new();
    conn.poll_transmit(now, &mut buf, max_bytes);
    let mut bytes = BytesMut::from(&buf.take_contiguous()[..]);
    let mut decoder = FrameDecoder::new(16 << 20);
    let mut frames = Vec::new();
    while let Some(decoded) = decoder.decode_next(&mut bytes).unwrap() {
        if let Decoded::Frame(frame) = decoded {
            frames.push(frame);
        }
    }
    frames
}

fn data_streams(frames: &[Frame]) -> Vec<StreamId> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(d) if !d.payload.is_empty() => Some(d.stream),
            _ => None,
        })
        .collect()
}

fn requests(frames: &[Frame]) -> Vec<PriorityUpdate> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::PriorityUpdate(p) => Some(*p),
            _ => None,
        })
        .collect()
}

/// Moves what the client wrote to the server, with nothing transmitted
/// the other way.
fn client_to_server(pair: &mut Pair) {
    let now = pair.now;
    let mut buf = TransmitBuf::new();
    pair.client.poll_transmit(now, &mut buf, usize::MAX);
    let mut bytes = BytesMut::from(&buf.take_contiguous()[..]);
    pair.server.handle_input(now, &mut bytes);
}

#[test]
fn the_peer_sends_a_stream_first_once_asked() {
    let (mut pair, ids) = server_writing(3);
    let now = pair.now;
    pair.client
        .request_priority(now, ids[2], Priority::new(0, false))
        .unwrap();
    client_to_server(&mut pair);
    assert_eq!(pair.server.priority(ids[2]), Some(Priority::new(0, false)));
    let order = data_streams(&transmit(&mut pair.server, now, usize::MAX));
    let want: Vec<StreamId> = [2, 2, 2, 2, 0, 1, 0, 1, 0, 1, 0, 1]
        .iter()
        .map(|&i| ids[i])
        .collect();
    assert_eq!(order, want);
    assert_eq!(pair.client.stats().priority_requests_sent, 1);
    assert_eq!(pair.server.stats().priority_requests_received, 1);
}

#[test]
fn the_later_of_a_request_and_a_local_priority_wins() {
    let (mut pair, ids) = server_writing(2);
    let now = pair.now;
    pair.client
        .request_priority(now, ids[1], Priority::new(1, true))
        .unwrap();
    client_to_server(&mut pair);
    assert_eq!(pair.server.priority(ids[1]), Some(Priority::new(1, true)));
    // The server's application overrides the request...
    pair.server
        .set_priority(now, ids[1], Priority::new(6, true));
    let order = data_streams(&transmit(&mut pair.server, now, 2 * 16 * 1024));
    assert_eq!(order, vec![ids[0], ids[0]]);
    // ...and a newer request overrides it, mid-stream.
    pair.client
        .request_priority(now, ids[1], Priority::new(0, true))
        .unwrap();
    client_to_server(&mut pair);
    let order = data_streams(&transmit(&mut pair.server, now, usize::MAX));
    assert_eq!(order, vec![ids[1], ids[1], ids[1], ids[1], ids[0], ids[0]]);
}

#[test]
fn requests_are_coalesced_and_wait_for_the_opening_frame() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.connect();
    let now = pair.now;
    let id = pair.client.open(now).unwrap().unwrap();
    pair.client
        .request_priority(now, id, Priority::new(5, true))
        .unwrap();
    pair.client
        .request_priority(now, id, Priority::new(2, false))
        .unwrap();
    // The opening frame goes first (control frames go before DATA, but the
    // peer must not see an idle id), then one request: the newest.
    let first = transmit(&mut pair.client, now, usize::MAX);
    assert!(
        matches!(first.as_slice(), [Frame::Data(Data { stream, .. })] if *stream == id),
        "{first:?}"
    );
    assert!(pair.client.wants_transmit(), "the request is ready");
    let second = transmit(&mut pair.client, now, usize::MAX);
    assert_eq!(
        second,
        vec![Frame::PriorityUpdate(PriorityUpdate {
            stream: id,
            urgency: 2,
            incremental: false,
        })]
    );
    assert!(!pair.client.wants_transmit());
}

/// Regression (fuzz/regressions/session/priority-request-after-early-reset-send.bin):
/// the opening frame of a stream whose sending was reset before it was
/// announced goes out by another path; the request must be ready after it.
#[test]
fn a_request_on_a_stream_reset_before_it_opened_goes_out_after_its_opening() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.connect();
    let now = pair.now;
    let id = pair.client.open(now).unwrap().unwrap();
    pair.client.reset_send(now, id, ErrorCode::CANCEL);
    pair.client
        .request_priority(now, id, Priority::new(4, false))
        .unwrap();
    let first = transmit(&mut pair.client, now, usize::MAX);
    assert!(
        matches!(first.first(), Some(Frame::Data(Data { stream, .. })) if *stream == id),
        "{first:?}"
    );
    assert!(requests(&first).is_empty(), "not before the opening frame");
    assert!(pair.client.wants_transmit(), "the request is ready");
    let second = transmit(&mut pair.client, now, usize::MAX);
    assert_eq!(requests(&second).len(), 1, "{second:?}");
}

#[test]
fn requests_are_paced_within_the_sender_budget() {
    let server = Config::builder()
        .max_incoming_streams(2000)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let mut ids = Vec::new();
    for _ in 0..1200 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[0]).unwrap();
        ids.push(id);
        // Accepted as they come: the accept backlog stays short.
        pair.drive();
        assert_eq!(pair.server.accept(), Some(id));
    }
    pair.drive();
    while pair.server.accept().is_some() {}
    let start = pair.now;
    for &id in &ids {
        pair.client
            .request_priority(start, id, Priority::new(1, true))
            .unwrap();
    }
    // Collect when each request goes out, following the pace timer.
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut now = start;
    while sent_at.len() < ids.len() {
        assert!(pair.client.wants_transmit(), "a request is ready");
        let frames = transmit(&mut pair.client, now, usize::MAX);
        sent_at.extend(requests(&frames).iter().map(|_| now));
        if sent_at.len() == ids.len() {
            break;
        }
        // Paced: the driver may sleep until the timer.
        assert!(!pair.client.wants_transmit(), "nothing to send while paced");
        let next = pair.client.poll_timeout().expect("the pace timer is armed");
        assert!(now - start < Duration::from_secs(10), "requests stalled");
        now = next.max(now);
        pair.client.handle_timeout(now);
    }
    assert_eq!(sent_at.len(), ids.len(), "each request once");
    // SPEC §6.10, §16.1: at most 500 in any 1 s.
    for (i, &at) in sent_at.iter().enumerate() {
        let in_window = sent_at[i..]
            .iter()
            .take_while(|&&t| t < at + Duration::from_secs(1))
            .count();
        assert!(in_window <= 500, "{in_window} requests within 1 s");
    }
    // And not much slower than that: 1200 requests within 4 s.
    assert!(*sent_at.last().unwrap() - start <= Duration::from_secs(4));
}

#[test]
fn a_peer_that_did_not_announce_them_gets_no_requests() {
    let mut raw = Raw::established(Config::default());
    let id = StreamId::new(1).unwrap();
    raw.feed(&[Frame::Data(Data {
        stream: id,
        fin: false,
        payload: bytes::Bytes::from_static(b"x"),
    })]);
    let now = raw.now;
    assert_eq!(
        raw.conn.request_priority(now, id, Priority::new(0, true)),
        Err(PriorityRequestError::Unsupported)
    );
}

/// A server past the handshake with a client that announced the
/// extension, with client stream 1 open.
fn server_with_stream() -> Raw {
    server_with_stream_and(Config::default())
}

fn server_with_stream_and(config: Config) -> Raw {
    let settings = Settings {
        ack: false,
        values: SettingsValues {
            extensions: Some(DIRECTIONAL_RESET | PRIORITY_UPDATES),
            ..SettingsValues::default()
        },
    };
    let mut raw = Raw::server(config, &[Frame::Settings(settings)]);
    raw.sent();
    raw.feed(&[
        Frame::Settings(Settings {
            ack: true,
            values: SettingsValues::default(),
        }),
        Frame::Data(Data {
            stream: StreamId::new(1).unwrap(),
            fin: false,
            payload: bytes::Bytes::from_static(b"x"),
        }),
    ]);
    assert!(raw.conn.is_established());
    raw
}

fn update(stream: u32, urgency: u8) -> Frame {
    Frame::PriorityUpdate(PriorityUpdate {
        stream: StreamId::new(stream).unwrap(),
        urgency,
        incremental: false,
    })
}

fn code(conn: &Connection) -> Option<ErrorCode> {
    match conn.error() {
        Some(ConnectionError::ProtocolViolation { code, .. }) => Some(*code),
        Some(ConnectionError::Frame(err)) => Some(err.code()),
        other => panic!("unexpected end {other:?}"),
    }
}

#[test]
fn a_request_for_an_idle_stream_is_a_protocol_error() {
    let mut raw = server_with_stream();
    raw.feed(&[update(1, 0)]);
    assert!(raw.conn.error().is_none());
    raw.feed(&[update(3, 0)]);
    assert_eq!(code(&raw.conn), Some(ErrorCode::PROTOCOL_ERROR));
    let goaway = raw.sent().into_iter().find_map(|f| match f {
        Frame::GoAway(g) => Some(g.code),
        _ => None,
    });
    assert_eq!(goaway, Some(ErrorCode::PROTOCOL_ERROR));
}

#[test]
fn an_undefined_urgency_is_a_protocol_error() {
    let mut raw = server_with_stream();
    // Urgency 8, written by hand: the encoder takes any byte.
    raw.feed_bytes(&[0, 0, 1, 0x8, 0, 0, 0, 0, 1, 8]);
    assert_eq!(code(&raw.conn), Some(ErrorCode::PROTOCOL_ERROR));
}

#[test]
fn more_than_the_flood_limit_in_a_second_is_enhance_your_calm() {
    let mut raw = server_with_stream();
    let frames: Vec<Frame> = (0..1000).map(|i| update(1, (i % 8) as u8)).collect();
    raw.feed(&frames);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.run_for(Duration::from_secs(1));
    // A new second: another 1000 are fine, the 1001st is not.
    raw.feed(&frames);
    assert!(raw.conn.error().is_none());
    raw.feed(&[update(1, 0)]);
    assert_eq!(code(&raw.conn), Some(ErrorCode::ENHANCE_YOUR_CALM));
}

#[test]
fn a_request_on_a_closed_stream_is_ignored_and_counted_as_stray() {
    // PRIORITY_UPDATE's own limit out of the way: the stray count trips.
    let flood = creditmux::config::FloodLimits {
        priority_updates: 5000,
        ..Default::default()
    };
    let mut raw = server_with_stream_and(Config::builder().flood(flood).build().unwrap());
    let id = StreamId::new(1).unwrap();
    let now = raw.now;
    raw.feed(&[Frame::Data(Data {
        stream: id,
        fin: true,
        payload: bytes::Bytes::new(),
    })]);
    while let Ok(creditmux::conn::ReadOutcome::Data(_)) = raw.conn.read(now, id, 1 << 20) {}
    raw.conn.finish(now, id).unwrap();
    raw.conn.release(now, id);
    raw.sent();
    // Forgotten: 1000 frames on closed streams per second are allowed.
    raw.feed(&[update(1, 0)]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    let strays: Vec<Frame> = (0..1000).map(|_| update(1, 2)).collect();
    raw.feed(&strays);
    match raw.conn.error() {
        Some(ConnectionError::ProtocolViolation { code, reason }) => {
            assert_eq!(*code, ErrorCode::ENHANCE_YOUR_CALM);
            assert!(reason.contains("closed streams"), "{reason}");
        }
        other => panic!("unexpected end {other:?}"),
    }
}

#[test]
fn a_request_on_a_finished_direction_is_ignored() {
    let mut raw = server_with_stream();
    let id = StreamId::new(1).unwrap();
    raw.conn.finish(raw.now, id).unwrap();
    raw.sent();
    let before = raw.conn.priority(id);
    raw.feed(&[update(1, 0)]);
    assert!(raw.conn.error().is_none());
    assert_eq!(raw.conn.priority(id), before);
    assert_eq!(raw.conn.stats().priority_requests_received, 0);
}

#[tokio::test]
async fn a_session_asks_its_peer_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = support::sessions::tcp_pair(Config::default()).await;
    let mut mine = client.open().await.unwrap();
    mine.write_all(b"hello").await.unwrap();
    mine.flush().await.unwrap();
    let mut theirs = server.accept().await.unwrap().unwrap();
    assert_eq!(theirs.priority(), Priority::default());
    mine.request_priority(Priority::new(0, false)).unwrap();
    // The request travels on its own: wait until the server applied it.
    priority_becomes(&theirs, Priority::new(0, false)).await;
    // Once the peer finished, there is nothing left to ask for.
    theirs.finish().unwrap();
    let mut rest = Vec::new();
    mine.read_to_end(&mut rest).await.unwrap();
    assert_eq!(
        mine.request_priority(Priority::new(1, true)),
        Err(PriorityRequestError::Finished)
    );
}

/// Waits (bounded) until `stream`'s priority is `want`.
async fn priority_becomes(stream: &creditmux::Stream, want: Priority) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while stream.priority() != want {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the request arrives");
}

#[cfg(feature = "quic")]
#[tokio::test]
async fn native_quic_sessions_ask_over_the_control_stream() {
    use tokio::io::AsyncWriteExt;
    let (client, server, _client_ep, _server_ep) =
        support::sessions::quic::native_pair(Config::default()).await;
    // Asked right away: the request may arrive before the stream does.
    let mut mine = client.open().await.unwrap();
    mine.write_all(b"hello").await.unwrap();
    mine.request_priority(Priority::new(1, false)).unwrap();
    let theirs = server.accept().await.unwrap().unwrap();
    priority_becomes(&theirs, Priority::new(1, false)).await;
    // And on a stream the asking side accepted.
    let mut served = server.open().await.unwrap();
    served.write_all(b"hello").await.unwrap();
    let mut asked = client.accept().await.unwrap().unwrap();
    asked.request_priority(Priority::new(6, true)).unwrap();
    priority_becomes(&served, Priority::new(6, true)).await;
    // The write half applies it from its next write.
    served.write_all(b"more").await.unwrap();
    assert_eq!(served.priority(), Priority::new(6, true));
}
