//! The credit ledger: every frame on the pipe checked against the
//! credit its receiver had put on the wire (SPEC §9.2).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use creditmux::frame::{
    BlockedOn, CONNECTION_WINDOW, Frame, INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD, MAX_STREAMS,
    ResetScope,
};

use super::strategies::*;

// ----- the credit ledger ----------------------------------------------------

/// What one direction's receiver granted (as it put it on the wire) and
/// what its sender used. A sender can only know limits the receiver emitted
/// earlier, so checking DATA against emitted limits is sound.
#[derive(Default)]
pub struct Direction {
    pub settings_seen: bool,
    pub initial_stream_window: u64,
    pub max_frame_payload: u64,
    pub conn_limit: u64,
    pub stream_limits: HashMap<u32, u64>,
    pub streams_limit: u64,
    pub conn_sent: u64,
    pub stream_sent: HashMap<u32, u64>,
    /// Streams on which the sender sent FIN or RESET.
    pub sender_done: HashSet<u32>,
    /// Index one past the highest stream the sender opened.
    pub opened: u64,
}

/// Both directions; index = the sending side.
#[derive(Default)]
pub struct Ledger {
    pub dirs: [Direction; 2],
    pub violations: Vec<String>,
}

impl Ledger {
    /// A frame `from` put on the wire.
    pub fn on_frame(&mut self, from: usize, frame: &Frame) {
        let to = 1 - from;
        match frame {
            Frame::Settings(s) if !s.ack => {
                // Limits for the opposite direction: `from` receives it.
                let d = &mut self.dirs[to];
                d.settings_seen = true;
                d.initial_stream_window = u64::from(s.values.get(INITIAL_STREAM_WINDOW));
                d.conn_limit = u64::from(s.values.get(CONNECTION_WINDOW));
                d.streams_limit = u64::from(s.values.get(MAX_STREAMS));
                d.max_frame_payload = u64::from(s.values.get(MAX_FRAME_PAYLOAD));
            }
            Frame::WindowUpdate(u) => {
                let d = &mut self.dirs[to];
                if u.stream.is_connection() {
                    d.conn_limit = d.conn_limit.max(u.limit);
                } else {
                    let l = d.stream_limits.entry(u.stream.get()).or_insert(0);
                    *l = (*l).max(u.limit);
                }
            }
            Frame::MaxStreams(m) => {
                let d = &mut self.dirs[to];
                d.streams_limit = d.streams_limit.max(m.count);
            }
            // A RESET for both directions, or SEND, ends the DATA of its
            // sender; RECEIVE only asks the receiver to stop, and its DATA
            // may already be on the way (SPEC §8.7.1).
            Frame::Reset(r) if r.scope != ResetScope::Receive => {
                self.dirs[from].sender_done.insert(r.stream.get());
            }
            Frame::Reset(_) => {}
            Frame::Blocked(b) => {
                // SPEC §11.1: a probe carries the limit the sender is stuck
                // at, which the receiver must have announced.
                let d = &self.dirs[from];
                let known = match b.on {
                    BlockedOn::Connection => d.conn_limit,
                    BlockedOn::StreamCount => d.streams_limit,
                    BlockedOn::Stream(id) => d
                        .stream_limits
                        .get(&id.get())
                        .copied()
                        .unwrap_or(d.initial_stream_window),
                };
                if b.limit > known {
                    self.violations.push(format!(
                        "side {from} sent BLOCKED {:?} at {} above the announced limit {known}",
                        b.on, b.limit
                    ));
                }
            }
            Frame::Data(data) => {
                let n = data.payload.len() as u64;
                let id = data.stream;
                let d = &mut self.dirs[from];
                let mut bad = Vec::new();
                if !d.settings_seen {
                    bad.push("DATA before the receiver's SETTINGS".to_string());
                }
                if n > d.max_frame_payload {
                    bad.push(format!(
                        "payload {n} above MAX_FRAME_PAYLOAD {}",
                        d.max_frame_payload
                    ));
                }
                if d.sender_done.contains(&id.get()) {
                    bad.push("DATA after the sender's FIN or RESET".to_string());
                }
                let own = id.is_client_initiated() == (from == CLIENT);
                if own && !d.stream_sent.contains_key(&id.get()) {
                    // First frame of a stream `from` opens (SPEC §8.2, §9.6).
                    if id.index() >= d.streams_limit {
                        bad.push(format!(
                            "opened index {} beyond MAX_STREAMS {}",
                            id.index(),
                            d.streams_limit
                        ));
                    }
                    if id.index() < d.opened {
                        bad.push(format!(
                            "opened out of order: index {} after {}",
                            id.index(),
                            d.opened
                        ));
                    }
                    d.opened = d.opened.max(id.index() + 1);
                }
                let sent = d.stream_sent.entry(id.get()).or_insert(0);
                *sent += n;
                let stream_limit = d
                    .stream_limits
                    .get(&id.get())
                    .copied()
                    .unwrap_or(d.initial_stream_window);
                if *sent > stream_limit {
                    bad.push(format!(
                        "stream offset {} beyond the stream limit {stream_limit}",
                        *sent
                    ));
                }
                d.conn_sent += n;
                if d.conn_sent > d.conn_limit {
                    bad.push(format!(
                        "connection offset {} beyond the connection limit {}",
                        d.conn_sent, d.conn_limit
                    ));
                }
                if data.fin {
                    d.sender_done.insert(id.get());
                }
                for b in bad {
                    self.violations
                        .push(format!("side {from}, stream {id}, {n} bytes: {b}"));
                }
            }
            _ => {}
        }
    }
}
