//! Hostile bytes into the frame decoder.
//!
//! Input layout: `[sel_hi, sel_lo, bytes...]`. The first two bytes (a
//! big-endian u16) choose the decoder's maximum payload as
//! `1024 + sel % 64513`, i.e. 1024..=65536 (16384 is `[0x3c, 0x00]`); the
//! rest is the byte stream (fuzz/seed_corpus.sh builds seeds in this layout).
//!
//! The bytes are decoded twice:
//!
//! 1. whole: one buffer holding everything, decoded until `None` or an error;
//! 2. chunked: like a socket reader that makes the room the decoder says
//!    the frame in progress is missing (`FrameDecoder::missing`) and fills
//!    only spare capacity (as `read_buf` does), in chunks whose sizes come
//!    from the input's trailing bytes, decoding until `None` after each
//!    chunk.
//!
//! Checked:
//! - nothing panics;
//! - both runs yield the same frames, the same final error (or both end
//!   incomplete with the same number of buffered bytes): splitting the input
//!   never changes the result;
//! - in the chunked run, `decode_next` never grows the buffer (the decoder
//!   allocates nothing), and what it says is missing is at most
//!   `HEADER_LEN + max_payload`: a hostile length never makes a reader
//!   reserve more than one frame;
//! - every decoded frame re-encodes to bytes that a fresh decoder with the
//!   same maximum decodes to exactly that frame, consuming every byte;
//! - every skipped (unknown-type) header respects the maximum payload;
//! - every error maps to an error code the specification names.

#![no_main]

use bytes::BytesMut;
use creditmux::frame::{Decoded, Frame, FrameDecoder, FrameError, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// Smallest maximum payload the target uses (MAX_FRAME_PAYLOAD.min).
const MIN_MAX_PAYLOAD: u32 = 1024;
/// Number of maximum payloads reachable: 1024..=65536.
const MAX_PAYLOAD_SPAN: u32 = 65536 - MIN_MAX_PAYLOAD + 1;

fn max_payload_from(sel: u16) -> u32 {
    MIN_MAX_PAYLOAD + u32::from(sel) % MAX_PAYLOAD_SPAN
}

/// How a decoding run ended.
#[derive(Debug, PartialEq)]
enum End {
    /// `Ok(None)` after all bytes were given; this many bytes stayed buffered.
    Incomplete { buffered: usize },
    /// The decoder rejected the input.
    Error(FrameError),
}

/// Checks that hold for every single decode step, in either run.
fn check_step(result: &Result<Option<Decoded>, FrameError>, max_payload: u32) {
    match result {
        Ok(Some(Decoded::Frame(frame))) => check_reencode(frame, max_payload),
        Ok(Some(Decoded::Ignored(header))) => {
            assert!(
                header.len <= max_payload,
                "skipped a frame of {} bytes above the maximum {max_payload}",
                header.len
            );
        }
        Ok(None) => {}
        Err(e) => {
            assert!(
                e.code().name().is_some(),
                "error {e:?} maps to an unnamed code {:?}",
                e.code()
            );
            // Display and the vector name must not panic either.
            let _ = e.to_string();
            assert!(!e.kind_name().is_empty());
        }
    }
}

/// A decoded frame re-encodes to bytes that decode to the same frame.
fn check_reencode(frame: &Frame, max_payload: u32) {
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), frame.encoded_len(), "encoded_len of {frame:?}");
    let mut src = BytesMut::from(&bytes[..]);
    let again = FrameDecoder::new(max_payload).decode_next(&mut src);
    assert_eq!(
        again,
        Ok(Some(Decoded::Frame(frame.clone()))),
        "re-encoded frame does not decode to itself: {bytes:02x?}"
    );
    assert!(
        src.is_empty(),
        "re-encoded {frame:?} left {} bytes",
        src.len()
    );
}

/// Decodes `input` from a single buffer.
fn decode_whole(input: &[u8], max_payload: u32) -> (Vec<Decoded>, End) {
    let mut decoder = FrameDecoder::new(max_payload);
    let mut src = BytesMut::from(input);
    let mut items = Vec::new();
    loop {
        let result = decoder.decode_next(&mut src);
        check_step(&result, max_payload);
        match result {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {
                return (
                    items,
                    End::Incomplete {
                        buffered: src.len(),
                    },
                );
            }
            Err(e) => return (items, End::Error(e)),
        }
    }
}

/// Size of the `k`-th chunk: taken from the input's bytes read backwards,
/// so the fuzzer controls the cut points without a separate header.
/// 0xff means "everything left".
fn chunk_size(input: &[u8], k: usize) -> usize {
    if input.is_empty() {
        return 1;
    }
    match input[input.len() - 1 - k % input.len()] {
        0xff => usize::MAX,
        b => 1 + usize::from(b),
    }
}

/// Decodes `input` as a reader would deliver it, comparing each item with
/// the whole-buffer run as it appears.
fn decode_chunked(input: &[u8], max_payload: u32, expected: &[Decoded], keep_items: bool) -> End {
    let bound = HEADER_LEN + max_payload as usize;
    let mut decoder = FrameDecoder::new(max_payload);
    let mut src = BytesMut::new();
    let mut fed = 0;
    let mut chunks = 0;
    let mut seen = 0;
    // Decoded DATA payloads share the buffer's allocation while they live;
    // keeping them (or not) exercises both of BytesMut's reserve paths.
    let mut kept = Vec::new();
    loop {
        // Decode until the decoder needs more bytes.
        loop {
            let before = src.capacity();
            let result = decoder.decode_next(&mut src);
            let after = src.capacity();
            assert!(
                after <= before,
                "decode_next grew the buffer from {before} to {after} bytes \
                 ({} bytes buffered, {fed} of {} fed)",
                src.len(),
                input.len()
            );
            check_step(&result, max_payload);
            match result {
                Ok(Some(item)) => {
                    assert!(
                        seen < expected.len(),
                        "chunked run yields an extra item {item:?}"
                    );
                    assert_eq!(item, expected[seen], "item {seen} differs between runs");
                    seen += 1;
                    if keep_items {
                        kept.push(item);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(seen, expected.len(), "chunked run failed early: {e:?}");
                    return End::Error(e);
                }
            }
        }
        if fed == input.len() {
            assert_eq!(seen, expected.len(), "chunked run yields fewer items");
            return End::Incomplete {
                buffered: src.len(),
            };
        }
        // Make the room the frame is missing once the buffer is full, then
        // read into the spare capacity only, like `AsyncReadExt::read_buf`.
        let missing = decoder.missing(src.len());
        assert!(
            missing <= bound,
            "the decoder asks for {missing} bytes (max_payload {max_payload}, \
             {} bytes buffered)",
            src.len()
        );
        if src.capacity() == src.len() {
            src.reserve(missing.max(1));
        }
        let spare = src.capacity() - src.len();
        let n = chunk_size(input, chunks).min(spare).min(input.len() - fed);
        src.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        chunks += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((sel, input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_payload = max_payload_from(u16::from_be_bytes(*sel));
    let (items, end) = decode_whole(input, max_payload);
    let keep_items = input.last().is_some_and(|b| b & 0x80 != 0);
    let chunked_end = decode_chunked(input, max_payload, &items, keep_items);
    assert_eq!(chunked_end, end, "whole and chunked runs end differently");
});
