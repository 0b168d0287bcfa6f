//! The typed message layer (`creditmux::message`): round trips, limits,
//! hostile input and back-pressure.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use creditmux::message::{
    self, MessageCodec, MessageConfig, MessageError, MessageReader, MessageWriter, PREFIX_LEN,
};
use creditmux::{Config, ErrorCode, Session};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Tuple(i16, bool),
    Named { name: String, tags: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    seq: u64,
    signed: i64,
    small: u8,
    ratio: f64,
    text: String,
    bytes: Vec<u8>,
    maybe: Option<u32>,
    kind: Kind,
    map: BTreeMap<u16, Vec<i32>>,
    pair: (char, u128),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        (any::<i16>(), any::<bool>()).prop_map(|(a, b)| Kind::Tuple(a, b)),
        (".{0,20}", prop::collection::vec(".{0,8}", 0..5))
            .prop_map(|(name, tags)| Kind::Named { name, tags }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    (
        any::<u64>(),
        any::<i64>(),
        any::<u8>(),
        any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()),
        ".{0,40}",
        prop::collection::vec(any::<u8>(), 0..300),
        any::<Option<u32>>(),
        kind(),
        prop::collection::btree_map(
            any::<u16>(),
            prop::collection::vec(any::<i32>(), 0..4),
            0..6,
        ),
        (any::<char>(), any::<u128>()),
    )
        .prop_map(
            |(seq, signed, small, ratio, text, bytes, maybe, kind, map, pair)| Value {
                seq,
                signed,
                small,
                ratio,
                text,
                bytes,
                maybe,
                kind,
                map,
                pair,
            },
        )
}

fn decode_all<T: serde::de::DeserializeOwned>(
    config: MessageConfig,
    bytes: &[u8],
) -> Vec<Result<T, MessageError>> {
    let mut codec = MessageCodec::<T>::new(config);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(v)) => out.push(Ok(v)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

proptest! {
    #[test]
    fn codec_round_trips_arbitrary_values(values in prop::collection::vec(value(), 0..8)) {
        let config = MessageConfig::default();
        let mut wire = BytesMut::new();
        for v in &values {
            wire.extend_from_slice(&message::encode(v.clone(), config).unwrap());
        }
        let decoded: Vec<Value> = decode_all(config, &wire)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(decoded, values);
    }

    #[test]
    fn byte_by_byte_delivery_decodes_the_same(v in value()) {
        let config = MessageConfig::default();
        let wire = message::encode(v.clone(), config).unwrap();
        let mut codec = MessageCodec::<Value>::new(config);
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                prop_assert!(out.is_none());
            } else {
                got = out;
            }
        }
        prop_assert_eq!(got, Some(v));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let config = MessageConfig::default().with_max_message_size(256);
        let _ = decode_all::<Value>(config, &bytes);
        let _ = decode_all::<String>(config, &bytes);
        let _ = decode_all::<Vec<Vec<u64>>>(config, &bytes);
    }
}

#[test]
fn an_oversized_prefix_is_refused_before_buffering() {
    let config = MessageConfig::default().with_max_message_size(1000);
    let mut codec = MessageCodec::<Vec<u8>>::new(config);
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    let before = buf.capacity();
    match codec.decode(&mut buf) {
        Err(e @ MessageError::TooLarge { len, max }) => {
            assert_eq!((len, max), (u32::MAX, 1000));
            assert_eq!(e.reset_code(), Some(ErrorCode::FRAME_SIZE_ERROR));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), before, "nothing reserved for the body");
    // One past the limit is refused too.
    let mut buf = BytesMut::from(&1001u32.to_be_bytes()[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(MessageError::TooLarge { len: 1001, .. })
    ));
}

#[test]
fn a_body_exactly_at_the_limit_is_accepted_and_one_more_byte_is_not() {
    // Vec<u8> with fixed-int encoding: 8-byte length + the bytes.
    let max = 1000u32;
    let config = MessageConfig::default().with_max_message_size(max);
    let at_limit = vec![7u8; max as usize - 8];
    let wire = message::encode(at_limit.clone(), config).unwrap();
    assert_eq!(wire.len(), PREFIX_LEN + max as usize);
    assert_eq!(&wire[..4], &max.to_be_bytes());
    let decoded: Vec<Vec<u8>> = decode_all(config, &wire)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(decoded, vec![at_limit]);

    let over = vec![7u8; max as usize - 7];
    match message::encode(over, config) {
        Err(MessageError::SendTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_body_at_eof_is_an_error() {
    let config = MessageConfig::default();
    let wire = message::encode("hello".to_string(), config).unwrap();
    for cut in 1..wire.len() {
        let out = decode_all::<String>(config, &wire[..cut]);
        match out.as_slice() {
            [Err(e @ MessageError::Truncated { buffered, expected })] => {
                assert_eq!(*buffered, cut);
                assert_eq!(*expected, if cut < 4 { 4 } else { wire.len() });
                assert_eq!(e.reset_code(), Some(ErrorCode::PROTOCOL_ERROR));
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(decode_all::<String>(config, &[]).is_empty());
}

#[test]
fn a_garbage_body_is_a_typed_error() {
    let config = MessageConfig::default();
    // A string whose 8-byte length claims far more than the body holds:
    // refused by the decode limit, not allocated.
    let mut wire = 12u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
    wire.extend_from_slice(b"abcd");
    match decode_all::<String>(config, &wire).as_slice() {
        [Err(e @ MessageError::Decode(_))] => {
            assert_eq!(e.reset_code(), Some(ErrorCode::PROTOCOL_ERROR))
        }
        other => panic!("{other:?}"),
    }
    // Invalid UTF-8.
    let mut wire = 10u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&2u64.to_be_bytes());
    wire.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(
        decode_all::<String>(config, &wire).as_slice(),
        [Err(MessageError::Decode(_))]
    ));
    // An unknown enum variant.
    let mut wire = 4u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&9u32.to_be_bytes());
    assert!(matches!(
        decode_all::<Kind>(config, &wire).as_slice(),
        [Err(MessageError::Decode(_))]
    ));
    // Trailing bytes after a complete value.
    let mut wire = 6u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&[0, 0, 0, 1, 0xaa, 0xbb]);
    assert!(matches!(
        decode_all::<u32>(config, &wire).as_slice(),
        [Err(MessageError::TrailingBytes { trailing: 2 })]
    ));
}

#[test]
fn the_format_matches_the_spec_example() {
    // proto/SPEC.md, Appendix C.
    #[derive(Serialize)]
    struct Request {
        seq: u64,
        name: String,
        ok: bool,
    }
    let wire = message::encode(
        Request {
            seq: 1,
            name: "hi".into(),
            ok: true,
        },
        MessageConfig::default(),
    )
    .unwrap();
    assert_eq!(
        &wire[..],
        &[
            0x00, 0x00, 0x00, 0x13, // prefix: 19
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // seq
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, b'h', b'i', // name
            0x01, // ok
        ]
    );
}

async fn pair() -> (Session, Session) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(Session::server(b, Config::default()));
    let client = Session::client(a, Config::default()).await.unwrap();
    (client, server.await.unwrap().unwrap())
}

#[tokio::test]
async fn messages_cross_a_session_as_sink_and_stream() {
    let (client, server) = pair().await;
    let echo = tokio::spawn(async move {
        let stream = server.accept().await.unwrap().unwrap();
        let (rx, tx) = message::framed::<Kind, Kind>(stream, MessageConfig::default());
        rx.forward(tx).await.unwrap();
        server
    });
    let (rx, mut tx) =
        message::framed::<Kind, Kind>(client.open().await.unwrap(), MessageConfig::default());
    let sent: Vec<Kind> = (0..100)
        .map(|i| Kind::Named {
            name: format!("n{i}"),
            tags: vec!["x".repeat(i)],
        })
        .collect();
    for k in &sent {
        tx.feed(k.clone()).await.unwrap();
    }
    tx.close().await.unwrap();
    let got: Vec<Kind> = rx.map(|r| r.unwrap()).collect().await;
    assert_eq!(got, sent);
    let _server = echo.await.unwrap();
}

#[tokio::test]
async fn an_oversized_prefix_from_the_peer_resets_the_stream() {
    let (client, server) = pair().await;
    let mut raw = client.open().await.unwrap();
    raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    raw.flush().await.unwrap();
    let stream = server.accept().await.unwrap().unwrap();
    let (mut rx, mut tx) = message::framed::<String, String>(stream, MessageConfig::default());
    let err = rx.recv().await.unwrap().unwrap_err();
    assert!(matches!(err, MessageError::TooLarge { len: u32::MAX, .. }));
    tx.get_mut().reset(err.reset_code().unwrap());
    assert!(rx.recv().await.is_none(), "no message after an error");
    // The peer sees the reset.
    let mut buf = [0u8; 1];
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
    )
    .await
    .unwrap();
    assert!(res.is_err(), "{res:?}");
}

#[tokio::test]
async fn a_partial_message_at_eof_is_an_error_on_a_stream() {
    let (client, server) = pair().await;
    let mut raw = client.open().await.unwrap();
    let wire = message::encode("hello".to_string(), MessageConfig::default()).unwrap();
    raw.write_all(&wire[..wire.len() - 1]).await.unwrap();
    raw.shutdown().await.unwrap();
    let stream = server.accept().await.unwrap().unwrap();
    let mut rx = MessageReader::<_, String>::new(stream, MessageConfig::default());
    assert!(matches!(
        rx.recv().await,
        Some(Err(MessageError::Truncated { .. }))
    ));
}

#[tokio::test]
async fn a_slow_consumer_slows_the_sender() {
    // The receiver's stream window is Config's default; the sender must
    // stall once it is used up instead of buffering messages.
    let (client, server) = pair().await;
    let stream = client.open().await.unwrap();
    let (_rx_unused, send) = stream.split();
    let mut tx = MessageWriter::<_, Vec<u8>>::new(send, MessageConfig::default());
    let chunk = vec![1u8; 16 * 1024];
    let mut sent = 0usize;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_millis(300), tx.send(chunk.clone())).await {
            Ok(res) => {
                res.unwrap();
                sent += 1;
                assert!(sent < 10_000, "the sender never stalled");
            }
            Err(_) => break true,
        }
    };
    assert!(stalled);
    // Bounded by what credit and the stream's send buffer allow, plus the
    // one message the writer holds.
    let config = Config::default();
    let bound = (config.stream_window() + config.send_buffer()) as usize;
    let sent_bytes = sent * (chunk.len() + 12);
    assert!(
        sent_bytes <= bound + 2 * (chunk.len() + 12),
        "{sent_bytes} bytes accepted with window + send buffer {bound}"
    );
    // Now consume: the sender resumes.
    let accepted = server.accept().await.unwrap().unwrap();
    let mut rx = MessageReader::<_, Vec<u8>>::new(accepted, MessageConfig::default());
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(m) = rx.recv().await {
            assert_eq!(m.unwrap().len(), 16 * 1024);
            n += 1;
        }
        n
    });
    tokio::time::timeout(Duration::from_secs(10), tx.send(chunk.clone()))
        .await
        .unwrap()
        .unwrap();
    tx.close().await.unwrap();
    assert_eq!(reader.await.unwrap(), sent + 2);
}
