//! Send priorities (the DATA scheduler, SPEC §10.2, RFC 9218's model):
//! the order in which one transmit serves streams of mixed urgencies and
//! incremental flags, and a change of priority mid-stream. Sans-IO cores
//! under virtual time: deterministic, no timing.

mod support;

use bytes::BytesMut;
use creditmux::conn::{Connection, TransmitBuf};
use creditmux::frame::{Decoded, Frame, FrameDecoder, StreamId};
use creditmux::{Config, Priority};
use support::pair::Pair;

/// Bytes each stream writes: four frames of the scheduler's 16 KiB turns.
const EACH: usize = 64 * 1024;

/// A connected pair whose client opened `n` streams, each with `EACH`
/// bytes written and announced to the peer with a first byte already
/// sent, so only DATA turns are left.
fn streams(n: usize) -> (Pair, Vec<StreamId>) {
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
        assert_eq!(pair.client.write(pair.now, id, &[1; EACH]).unwrap(), EACH);
    }
    (pair, ids)
}

/// The stream of each DATA frame one transmit of up to `max_bytes`
/// writes, in order.
fn data_order(conn: &mut Connection, now: std::time::Instant, max_bytes: usize) -> Vec<StreamId> {
    let mut buf = TransmitBuf::new();
    conn.poll_transmit(now, &mut buf, max_bytes);
    let mut bytes = BytesMut::from(&buf.take_contiguous()[..]);
    let mut decoder = FrameDecoder::new(16 << 20);
    let mut order = Vec::new();
    while let Some(decoded) = decoder.decode_next(&mut bytes).unwrap() {
        if let Decoded::Frame(Frame::Data(data)) = decoded
            && !data.payload.is_empty()
        {
            order.push(data.stream);
        }
    }
    order
}

/// `ids[i]` repeated as `pattern` says, for readable expectations.
fn expect(ids: &[StreamId], pattern: &[usize]) -> Vec<StreamId> {
    pattern.iter().map(|&i| ids[i]).collect()
}

#[test]
fn by_default_every_stream_takes_equal_turns_in_order() {
    let (mut pair, ids) = streams(3);
    let order = data_order(&mut pair.client, pair.now, usize::MAX);
    assert_eq!(order, expect(&ids, &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]));
}

#[test]
fn more_urgent_streams_go_first_and_equals_share_round_robin() {
    let (mut pair, ids) = streams(4);
    let now = pair.now;
    pair.client
        .set_priority(now, ids[0], Priority::new(5, true));
    pair.client
        .set_priority(now, ids[1], Priority::new(1, true));
    pair.client
        .set_priority(now, ids[2], Priority::new(1, true));
    pair.client
        .set_priority(now, ids[3], Priority::new(5, true));
    let order = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(
        order,
        expect(&ids, &[1, 2, 1, 2, 1, 2, 1, 2, 0, 3, 0, 3, 0, 3, 0, 3])
    );
}

#[test]
fn streams_that_are_not_incremental_go_one_at_a_time_lowest_id_first() {
    let (mut pair, ids) = streams(3);
    let now = pair.now;
    // Set in reverse: the order is by id, not by when the priority came.
    pair.client
        .set_priority(now, ids[2], Priority::new(3, true));
    pair.client
        .set_priority(now, ids[1], Priority::new(3, false));
    pair.client
        .set_priority(now, ids[0], Priority::new(3, false));
    let order = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(order, expect(&ids, &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]));
}

#[test]
fn a_less_urgent_sequential_stream_waits_for_the_more_urgent_incremental_ones() {
    let (mut pair, ids) = streams(3);
    let now = pair.now;
    pair.client
        .set_priority(now, ids[0], Priority::new(6, false));
    pair.client
        .set_priority(now, ids[1], Priority::new(2, true));
    pair.client
        .set_priority(now, ids[2], Priority::new(2, true));
    let order = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(order, expect(&ids, &[1, 2, 1, 2, 1, 2, 1, 2, 0, 0, 0, 0]));
}

#[test]
fn a_priority_changed_mid_stream_applies_from_the_next_turn() {
    let (mut pair, ids) = streams(3);
    let now = pair.now;
    // Two turns of 16 KiB go out, then stream 2 becomes the most urgent.
    let first = data_order(&mut pair.client, now, 2 * 16 * 1024);
    assert_eq!(first, expect(&ids, &[0, 1]));
    pair.client
        .set_priority(now, ids[2], Priority::new(Priority::MOST_URGENT, false));
    assert_eq!(pair.client.priority(ids[2]), Some(Priority::new(0, false)));
    let rest = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(rest, expect(&ids, &[2, 2, 2, 2, 0, 1, 0, 1, 0, 1]));
    // Back to the default: it takes turns again.
    for &id in &ids {
        assert_eq!(
            pair.client.write(now, id, &[2; 32 * 1024]).unwrap(),
            32 * 1024
        );
    }
    pair.client.set_priority(now, ids[2], Priority::default());
    let again = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(again, expect(&ids, &[0, 1, 2, 0, 1, 2]));
}

#[test]
fn a_stream_waiting_for_connection_credit_goes_by_its_priority_when_credit_returns() {
    // A connection window that one stream's 64 KiB exhausts.
    let server = Config::builder()
        .stream_window(256 * 1024)
        .connection_window(1024 * 1024)
        .max_stream_window(0)
        .max_connection_window(0)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let now = pair.now;
    // Four streams nobody reads take all but 48 KiB of the connection
    // credit (a stream window is at most a quarter of it, SPEC §7.3).
    let mut hogs = Vec::new();
    for len in [
        256 * 1024,
        256 * 1024,
        256 * 1024,
        256 * 1024 - 3 * 16 * 1024,
    ] {
        let hog = pair.client.open(now).unwrap().unwrap();
        assert_eq!(pair.client.write(now, hog, &vec![0; len]).unwrap(), len);
        hogs.push(hog);
    }
    pair.drive();
    // Two streams wait, the second one urgent.
    let slow = pair.client.open(now).unwrap().unwrap();
    let urgent = pair.client.open(now).unwrap().unwrap();
    pair.client.write(now, slow, &[1; EACH]).unwrap();
    pair.client.write(now, urgent, &[2; EACH]).unwrap();
    pair.client
        .set_priority(now, urgent, Priority::new(0, true));
    let order = data_order(&mut pair.client, now, usize::MAX);
    // Each opens in id order with its first turn; the credit left after
    // that goes to the urgent one.
    assert_eq!(order, vec![slow, urgent, urgent]);
    // Both now wait for connection credit. The priorities swap while they
    // wait; the server reads the four streams, and its WINDOW_UPDATE
    // (delivered alone: the client transmits nothing meanwhile) lets them
    // go again, in the order of their new priorities.
    pair.client.set_priority(now, slow, Priority::new(0, false));
    pair.client
        .set_priority(now, urgent, Priority::new(4, true));
    for &hog in &hogs {
        while pair.server.accept().is_some() {}
        support::conn::read_available(&mut pair.server, now, hog);
    }
    let mut buf = TransmitBuf::new();
    pair.server.poll_transmit(now, &mut buf, usize::MAX);
    let mut update = BytesMut::from(&buf.take_contiguous()[..]);
    pair.client.handle_input(now, &mut update);
    let order = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(order, vec![slow, slow, slow, urgent, urgent]);
}

/// SPEC §8.1: streams open in increasing id order, whatever their
/// priorities. A stream opened later but made more urgent before its
/// first turn still opens after the ones before it; its priority applies
/// from the turn after (found by fuzz target `session`:
/// fuzz/regressions/session/priority-opens-in-id-order.bin).
#[test]
fn streams_open_in_id_order_whatever_their_priorities() {
    let mut pair = Pair::new(Config::default(), Config::default());
    pair.connect();
    let now = pair.now;
    let first = pair.client.open(now).unwrap().unwrap();
    let second = pair.client.open(now).unwrap().unwrap();
    pair.client.write(now, first, &[1; EACH]).unwrap();
    pair.client.write(now, second, &[2; EACH]).unwrap();
    pair.client.set_priority(now, first, Priority::new(7, true));
    pair.client
        .set_priority(now, second, Priority::new(0, false));
    let order = data_order(&mut pair.client, now, usize::MAX);
    assert_eq!(
        order,
        vec![first, second, second, second, second, first, first, first]
    );
}
