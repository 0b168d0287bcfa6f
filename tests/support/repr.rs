//! The textual frame representation used by proto/vectors (SPEC appendix A),
//! shared by the vector tests and the fuzz corpus tooling.

#![allow(dead_code)]

use bytes::Bytes;
use creditmux::frame::*;

pub fn hex_decode(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fields(words: &[&str]) -> std::collections::HashMap<String, String> {
    words
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("bad field {w}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn num(map: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    map.get(key)
        .unwrap_or_else(|| panic!("missing field {key}"))
        .parse()
        .unwrap_or_else(|_| panic!("field {key} is not a number"))
}

fn flag(map: &std::collections::HashMap<String, String>, key: &str) -> bool {
    num(map, key) == 1
}

fn stream(map: &std::collections::HashMap<String, String>, key: &str) -> StreamId {
    StreamId::new(num(map, key) as u32).expect("31-bit stream id")
}

/// Parses `DATA stream=1 fin=1 payload=68656c6c6f` and friends.
pub fn parse_frame(repr: &str) -> Frame {
    let words: Vec<&str> = repr.split_whitespace().collect();
    let (name, rest) = words.split_first().expect("empty frame repr");
    if *name == "SETTINGS" {
        let map = fields(rest);
        let mut values = SettingsValues::default();
        for (k, v) in &map {
            if k == "ack" {
                continue;
            }
            let v: u32 = v.parse().unwrap();
            match k.as_str() {
                "1" => values.initial_stream_window = Some(v),
                "2" => values.connection_window = Some(v),
                "3" => values.max_frame_payload = Some(v),
                "4" => values.max_streams = Some(v),
                "5" => values.extensions = Some(v),
                other => panic!("unknown setting {other} in repr"),
            }
        }
        return Frame::Settings(Settings {
            ack: flag(&map, "ack"),
            values,
        });
    }
    let map = fields(rest);
    match *name {
        "DATA" => Frame::Data(Data {
            stream: stream(&map, "stream"),
            fin: flag(&map, "fin"),
            payload: Bytes::from(hex_decode(&map["payload"])),
        }),
        "WINDOW_UPDATE" => Frame::WindowUpdate(WindowUpdate {
            stream: stream(&map, "stream"),
            limit: num(&map, "limit"),
        }),
        "MAX_STREAMS" => Frame::MaxStreams(MaxStreams {
            count: num(&map, "count"),
        }),
        "BLOCKED" => {
            let id = stream(&map, "stream");
            let on = match (id.is_connection(), flag(&map, "streams")) {
                (true, false) => BlockedOn::Connection,
                (true, true) => BlockedOn::StreamCount,
                (false, _) => BlockedOn::Stream(id),
            };
            Frame::Blocked(Blocked {
                on,
                limit: num(&map, "limit"),
            })
        }
        "RESET" => Frame::Reset(Reset {
            stream: stream(&map, "stream"),
            code: ErrorCode(num(&map, "code") as u32),
            scope: match map.get("only").map(String::as_str) {
                None => ResetScope::Both,
                Some("send") => ResetScope::Send,
                Some("receive") => ResetScope::Receive,
                Some(other) => panic!("unknown RESET scope only={other}"),
            },
        }),
        "PING" => {
            let bytes = hex_decode(&map["payload"]);
            Frame::Ping(Ping {
                ack: flag(&map, "ack"),
                payload: bytes.try_into().expect("8-byte ping payload"),
            })
        }
        "GOAWAY" => Frame::GoAway(GoAway {
            last_stream: stream(&map, "last_stream"),
            code: ErrorCode(num(&map, "code") as u32),
            debug: Bytes::from(hex_decode(&map["debug"])),
        }),
        "PRIORITY_UPDATE" => Frame::PriorityUpdate(PriorityUpdate {
            stream: stream(&map, "stream"),
            urgency: num(&map, "urgency") as u8,
            incremental: flag(&map, "incremental"),
        }),
        other => panic!("unknown frame name {other}"),
    }
}

/// One block of a vector file.
#[derive(Debug, Clone)]
pub struct Vector {
    pub file: String,
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: String,
    pub max_payload: u32,
}

pub fn load_vectors(file: &str) -> Vec<Vector> {
    let path = format!("{}/proto/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let mut name = None;
        let mut bytes = None;
        let mut expect = None;
        let mut max_payload = 16384;
        for line in lines {
            let (key, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{path}: bad line {line}"));
            let value = value.trim();
            match key {
                "name" => name = Some(value.to_string()),
                "bytes" => bytes = Some(hex_decode(value)),
                "expect" => expect = Some(value.to_string()),
                "max_payload" => max_payload = value.parse().expect("max_payload"),
                other => panic!("{path}: unknown key {other}"),
            }
        }
        out.push(Vector {
            file: file.to_string(),
            name: name.unwrap_or_else(|| panic!("{path}: block without name")),
            bytes: bytes.unwrap_or_else(|| panic!("{path}: block without bytes")),
            expect: expect.unwrap_or_else(|| panic!("{path}: block without expect")),
            max_payload,
        });
    }
    out
}
