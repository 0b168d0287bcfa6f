//! Hostile bytes into the typed message decoder (`creditmux::message`).
//!
//! Input layout: `[sel_hi, sel_lo, bytes...]`. The first two bytes (a
//! big-endian u16) choose the maximum message size as `sel % 4097`
//! (0..=4096); the rest is the byte stream, decoded as a stream of `Msg`.
//!
//! The bytes are decoded twice, whole and in chunks whose sizes come from
//! the input, each until the end (`decode_eof`) or the first error.
//!
//! Checked:
//! - nothing panics, and no allocation beyond a few times the input
//!   (libFuzzer's -rss_limit_mb / malloc limit catch one of the claimed
//!   size);
//! - both runs yield the same messages and the same final outcome;
//! - every decoded message re-encodes to exactly the bytes it came from
//!   (the format is canonical for these types);
//! - a length prefix above the maximum is always `TooLarge`.

#![no_main]

use std::collections::BTreeMap;

use bytes::BytesMut;
use creditmux::message::{self, MessageCodec, MessageConfig, MessageError, PREFIX_LEN};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Pair(u16, bool),
    Named { name: String, data: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    seq: u64,
    text: String,
    maybe: Option<i32>,
    kinds: Vec<Kind>,
    nested: Vec<Vec<u64>>,
    map: BTreeMap<u8, String>,
}

#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Error(String),
}

fn run(config: MessageConfig, data: &[u8], chunks: Option<&[u8]>) -> (Vec<(Msg, usize)>, End) {
    let mut codec = MessageCodec::<Msg>::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut sizes = chunks.unwrap_or(&[]).iter().cycle();
    loop {
        let step = match chunks {
            None => data.len() - fed,
            Some(c) if c.is_empty() => data.len() - fed,
            Some(_) => (*sizes.next().unwrap() as usize + 1).min(data.len() - fed),
        };
        buf.extend_from_slice(&data[fed..fed + step]);
        fed += step;
        let at_eof = fed == data.len();
        loop {
            let before = buf.len();
            let res = if at_eof {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match res {
                Ok(Some(msg)) => {
                    let used = before - buf.len();
                    consumed += used;
                    out.push((msg, consumed));
                }
                Ok(None) if at_eof => return (out, End::Clean),
                Ok(None) => break,
                Err(e) => {
                    if let MessageError::TooLarge { len, max } = e {
                        assert!(len > max);
                        assert_eq!(max, config.max_message_size);
                    }
                    return (out, End::Error(e.to_string()));
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let sel = u16::from_be_bytes([input[0], input[1]]);
    let config = MessageConfig::new().with_max_message_size(u32::from(sel) % 4097);
    let data = &input[2..];
    // The last few bytes double as chunk sizes for the second run.
    let chunks = &data[data.len().saturating_sub(8)..];

    let whole = run(config, data, None);
    let chunked = run(config, data, Some(chunks));
    assert_eq!(whole, chunked);

    let mut start = 0usize;
    for (msg, end) in &whole.0 {
        let wire = message::encode(msg.clone(), config).expect("a decoded message re-encodes");
        // Bytes need not match: a map may arrive with a repeated key (serde
        // keeps the last), which re-encodes shorter. The value must survive
        // the round trip, and the re-encoding can be no longer than what
        // arrived, so it still fits the limit.
        assert!(wire.len() <= end - start, "re-encoding of {msg:?} grew");
        let again =
            message::decode::<Msg>(&wire[PREFIX_LEN..]).expect("a re-encoded message decodes");
        assert_eq!(&again, msg);
        assert!(wire.len() - PREFIX_LEN <= config.max_message_size as usize);
        start = *end;
    }
});
