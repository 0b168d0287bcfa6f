//! The byte-level test vectors of proto/vectors, decoded whole and split at
//! every byte boundary.

mod support;

use bytes::BytesMut;
use creditmux::frame::*;
use support::repr::{Vector, load_vectors, parse_frame};

/// Feeds `bytes` to a fresh decoder in pieces cut at `splits` and returns
/// the first outcome: a decoded item, an error, or `None` when the bytes end
/// before a whole frame.
fn decode_split(v: &Vector, splits: &[usize]) -> (Result<Option<Decoded>, FrameError>, usize) {
    let mut decoder = FrameDecoder::new(v.max_payload);
    let mut src = BytesMut::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = splits.to_vec();
    cuts.push(v.bytes.len());
    for cut in cuts {
        src.extend_from_slice(&v.bytes[start..cut]);
        start = cut;
        match decoder.decode_next(&mut src) {
            Ok(None) => continue,
            other => return (other, src.len()),
        }
    }
    (Ok(None), src.len())
}

fn check(v: &Vector, splits: &[usize]) {
    let (outcome, left) = decode_split(v, splits);
    let words: Vec<&str> = v.expect.splitn(2, ' ').collect();
    let ctx = format!("{}:{} (splits {splits:?})", v.file, v.name);
    match words[0] {
        "frame" => {
            let expected = parse_frame(words[1]);
            assert_eq!(outcome, Ok(Some(Decoded::Frame(expected.clone()))), "{ctx}");
            assert_eq!(left, 0, "{ctx}: all bytes consumed");
            // A valid frame re-encodes to a frame that decodes the same. Bytes
            // may differ where the input carried ignored flag bits or unknown
            // settings.
            let again = expected.to_bytes();
            let mut src = BytesMut::from(&again[..]);
            let decoded = FrameDecoder::new(v.max_payload).decode_next(&mut src);
            assert_eq!(
                decoded,
                Ok(Some(Decoded::Frame(expected))),
                "{ctx}: re-encoded"
            );
        }
        "ignored" => {
            let mut fields = std::collections::HashMap::new();
            for w in words[1].split_whitespace() {
                let (k, val) = w.split_once('=').unwrap();
                fields.insert(k, val.parse::<u32>().unwrap());
            }
            match outcome {
                Ok(Some(Decoded::Ignored(h))) => {
                    assert_eq!(h.kind as u32, fields["type"], "{ctx}");
                    assert_eq!(h.stream.get(), fields["stream"], "{ctx}");
                    assert_eq!(h.len, fields["len"], "{ctx}");
                }
                other => panic!("{ctx}: expected ignored, got {other:?}"),
            }
            assert_eq!(left, 0, "{ctx}: all bytes consumed");
        }
        "incomplete" => assert_eq!(outcome, Ok(None), "{ctx}"),
        "error" => {
            let mut parts = words[1].split_whitespace();
            let code = ErrorCode::from_name(parts.next().unwrap()).expect("known code name");
            let kind = parts.next().unwrap();
            match outcome {
                Err(e) => {
                    assert_eq!(e.code(), code, "{ctx}: {e}");
                    assert_eq!(e.kind_name(), kind, "{ctx}: {e}");
                }
                other => panic!("{ctx}: expected error {code:?} {kind}, got {other:?}"),
            }
        }
        other => panic!("{ctx}: unknown expectation {other}"),
    }
}

#[test]
fn frame_vectors_decode_as_specified_whole_and_at_every_split() {
    let vectors = load_vectors("frames.txt");
    assert!(vectors.len() >= 20, "the vector file looks truncated");
    for v in &vectors {
        check(v, &[]);
        for cut in 0..=v.bytes.len() {
            check(v, &[cut]);
        }
        // One byte at a time.
        let every: Vec<usize> = (1..v.bytes.len()).collect();
        check(v, &every);
    }
}

#[test]
fn frame_vectors_cover_every_frame_type_and_error_class() {
    let vectors = load_vectors("frames.txt");
    let expects: Vec<&str> = vectors.iter().map(|v| v.expect.as_str()).collect();
    for name in [
        "DATA",
        "WINDOW_UPDATE",
        "MAX_STREAMS",
        "BLOCKED",
        "RESET",
        "PING",
        "GOAWAY",
        "SETTINGS",
        "PRIORITY_UPDATE",
    ] {
        assert!(
            expects
                .iter()
                .any(|e| e.starts_with(&format!("frame {name} "))),
            "no valid vector for {name}"
        );
    }
    for kind in [
        "too_large",
        "bad_length",
        "reserved_bit",
        "stream_id_required",
        "stream_id_forbidden",
        "invalid_flags",
        "credit_overflow",
        "setting_out_of_range",
        "setting_duplicate",
        "bad_urgency",
    ] {
        assert!(
            expects
                .iter()
                .any(|e| e.starts_with("error ") && e.ends_with(kind)),
            "no invalid vector for {kind}"
        );
    }
    assert!(expects.iter().any(|e| e.starts_with("ignored ")));
    assert!(expects.contains(&"incomplete"));
}

#[test]
fn preface_vectors_decode_as_specified() {
    let vectors = load_vectors("preface.txt");
    assert!(!vectors.is_empty());
    for v in &vectors {
        let ctx = format!("preface.txt:{}", v.name);
        let outcome = decode_preface(&v.bytes);
        match v.expect.as_str() {
            "incomplete" => assert_eq!(outcome, Ok(None), "{ctx}"),
            "preface ok version=1" => assert_eq!(outcome, Ok(Some(1)), "{ctx}"),
            "preface error bad_magic" => assert_eq!(outcome, Err(PrefaceError::BadMagic), "{ctx}"),
            other => {
                let version = other
                    .strip_prefix("preface error unsupported_version version=")
                    .unwrap_or_else(|| panic!("{ctx}: unknown expectation {other}"))
                    .parse()
                    .unwrap();
                assert_eq!(
                    outcome,
                    Err(PrefaceError::UnsupportedVersion { version }),
                    "{ctx}"
                );
            }
        }
    }
}
