//! Property tests of the sans-IO core, traffic: random operations keep
//! windows, credit and byte order intact; a sender never exceeds the
//! credit its receiver announced; everything written and finished is
//! delivered in order. The simulation is `tests/support/sim`.
//!
//! Case counts are set per property so that the file stays far below 20 s
//! in debug mode. For a deeper run set `PROPTEST_CASES`, which overrides
//! every count, e.g. `PROPTEST_CASES=3000 cargo test --release --test
//! props_traffic`.

mod support;

use creditmux::frame::StreamId;
use proptest::prelude::*;
use support::sim::*;

// ----- property 1 -----------------------------------------------------------

proptest! {
    // 256 cases of up to 121 operations, ~5.5 ms each in debug mode:
    // ~1.4 s.
    #![proptest_config(cases(256))]

    /// Random configs and operations on both sides, including resets,
    /// releases and a graceful close: after every step neither side reports
    /// a protocol error, receive buffers stay within the stream and
    /// connection windows, connection credit equals the streams' unread
    /// bytes, the peer-stream count stays within MAX_STREAMS, and every
    /// byte read is the byte written at that offset, once and in order.
    #[test]
    fn random_operations_keep_windows_credit_and_byte_order_intact(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 120),
        close in close_strategy(),
    ) {
        let ops = with_close(ops, close);
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                sim.read_all(who, id)?;
            }
        }
        sim.drive()?;
        if !sim.closed {
            // Liveness: a PING still round-trips after all of it.
            for who in [CLIENT, SERVER] {
                let done = sim.conn(who).pings_completed();
                let now = sim.pair.now;
                sim.conn(who).ping(now);
                sim.drive()?;
                prop_assert!(!sim.conn(who).ping_in_flight(), "side {} PING unanswered", who);
                prop_assert_eq!(sim.conn(who).pings_completed(), done + 1);
            }
        }
    }
}

// ----- property 2 -----------------------------------------------------------

/// Writes dominate and reads are rare, so senders keep running into both
/// limits.
const PRESSING: Weights = Weights {
    write: 24,
    read: 6,
    ..ALL_OPS
};

proptest! {
    // 192 cases, ~5 ms each in debug mode (the ledger filter decodes and
    // re-encodes every frame): ~1 s.
    #![proptest_config(cases(192))]

    /// With every frame on the wire inspected: the DATA bytes a side sends
    /// on a stream never exceed the highest stream limit the receiver put on
    /// the wire (INITIAL_STREAM_WINDOW, then WINDOW_UPDATE), the total never
    /// exceeds the connection limit (CONNECTION_WINDOW, then WINDOW_UPDATE 0),
    /// new streams stay below MAX_STREAMS and open in id order, frames stay
    /// within MAX_FRAME_PAYLOAD, and no DATA follows the sender's FIN/RESET.
    #[test]
    fn a_sender_never_exceeds_the_credit_its_receiver_announced(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(PRESSING, 80),
        close in close_strategy(),
    ) {
        let ops = with_close(ops, close);
        let opts = Opts { forbid_resets: false, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        // Then everyone reads everything, which makes every sender use all
        // the credit it gets back.
        sim.accept_all()?;
        let pending: Vec<(usize, StreamId)> = [CLIENT, SERVER]
            .into_iter()
            .flat_map(|who| sim.held(who).into_iter().map(move |id| (who, id)))
            .collect();
        for &(who, id) in &pending {
            sim.finish(who, id)?;
        }
        sim.read_until_ended(pending)?;
        let ledger = sim.ledger.clone().expect("ledger installed");
        let ledger = ledger.borrow();
        prop_assert!(ledger.violations.is_empty(), "{:?}", ledger.violations);
        prop_assert!(ledger.dirs[CLIENT].settings_seen && ledger.dirs[SERVER].settings_seen);
    }
}

// ----- property 4 -----------------------------------------------------------

/// No resets or releases during the random phase (and no close).
const NO_ABORTS: Weights = Weights {
    reset: 0,
    release: 0,
    ..ALL_OPS
};

proptest! {
    // 192 cases, ~5.5 ms each in debug mode: ~1 s.
    #![proptest_config(cases(192))]

    /// Without resets, everything written and finished is delivered: once
    /// both sides finish every stream and read until Finished, each
    /// direction of each stream delivered exactly the bytes written, in
    /// order, and no stream was reset.
    #[test]
    fn everything_written_and_finished_is_delivered_in_order(
        client in config_strategy_with(false),
        server in config_strategy_with(false),
        chunk in chunk_strategy(),
        ops in ops_strategy(NO_ABORTS, 80),
    ) {
        let opts = Opts { forbid_resets: true, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let mut pending = Vec::new();
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                sim.finish(who, id)?;
                pending.push((who, id));
            }
        }
        sim.read_until_ended(pending)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            for id in sim.opened[who].clone() {
                let sent = sim.streams[who][&id].written;
                let reader = &sim.streams[1 - who][&id];
                prop_assert!(reader.read_finished, "stream {} from side {} never finished", id, who);
                prop_assert_eq!(reader.read, sent, "stream {} from side {}", id, who);
            }
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams", who);
        }
    }
}
