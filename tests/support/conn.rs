//! Small helpers for tests that drive sans-IO cores by hand.

#![allow(dead_code)]

use std::time::Instant;

use creditmux::conn::{Connection, ReadOutcome};
use creditmux::error::{ConnectionError, StreamError};
use creditmux::frame::{ErrorCode, StreamId};

/// Everything readable on `id` now, and whether the stream finished.
/// Panics on a stream error.
pub fn read_available(conn: &mut Connection, now: Instant, id: StreamId) -> (Vec<u8>, bool) {
    match try_read_available(conn, now, id) {
        (out, Ok(finished)) => (out, finished),
        (_, Err(e)) => panic!("read failed: {e}"),
    }
}

/// Everything readable on `id` now, then how reading ended: finished
/// (true), blocked (false), or the stream error.
pub fn try_read_available(
    conn: &mut Connection,
    now: Instant,
    id: StreamId,
) -> (Vec<u8>, Result<bool, StreamError>) {
    let mut out = Vec::new();
    loop {
        match conn.read(now, id, usize::MAX) {
            Ok(ReadOutcome::Data(b)) => out.extend_from_slice(&b),
            Ok(ReadOutcome::Finished) => return (out, Ok(true)),
            Ok(ReadOutcome::Blocked) => return (out, Ok(false)),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// `len` bytes that differ with `seed` and with the offset.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The code of the protocol violation (or invalid frame) that ended
/// `conn`; panics if it ended otherwise.
pub fn violation_code(conn: &Connection) -> Option<ErrorCode> {
    match conn.error() {
        Some(ConnectionError::ProtocolViolation { code, .. }) => Some(*code),
        Some(ConnectionError::Frame(e)) => Some(e.code()),
        other => panic!("expected a violation, got {other:?}"),
    }
}
