//! Property tests of the sans-IO core, credit: it is conserved once every
//! stream is closed and released, and when a peer breaks it; every stall
//! on zero credit is probed (SPEC §9.7, §11.1). The simulation is
//! `tests/support/sim`; `PROPTEST_CASES` overrides every count.

mod support;

use creditmux::frame::ErrorCode;
use proptest::prelude::*;
use proptest::sample::Index;
use support::sim::*;

proptest! {
    // 96 cases, ~18 ms each in debug mode (each ends with two transfers of
    // twice a connection window, up to 4 MiB each way): ~1.7 s.
    #![proptest_config(cases(96))]

    /// After random transfers, resets and releases, and a drain where every
    /// stream is finished or reset and released on both sides: no stream is
    /// left, no received byte is held, the sender's view of the connection
    /// credit equals the receiver's and is at least half a window, and
    /// twice the connection window then moves in each direction.
    #[test]
    fn credit_is_conserved_once_every_stream_is_closed_and_released(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 60),
        drain in drain_strategy(),
    ) {
        let opts = Opts { forbid_resets: false, ledger: true };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let mut pending = Vec::new();
        let mut n = 0;
        for who in [CLIENT, SERVER] {
            for id in sim.held(who) {
                match drain[n % drain.len()] {
                    Drain::ReadToEnd => {
                        sim.finish(who, id)?;
                        pending.push((who, id));
                    }
                    Drain::Release => sim.release(who, id),
                    Drain::Reset => {
                        let now = sim.pair.now;
                        sim.conn(who).reset(now, id, ErrorCode::CANCEL);
                        sim.model(who, id).reset_codes.push(ErrorCode::CANCEL.0);
                        sim.release(who, id);
                    }
                }
                n += 1;
            }
        }
        sim.check()?;
        sim.read_until_ended(pending)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams: {:?}", who, stats);
            prop_assert_eq!(stats.recv_buffered, 0, "side {} holds bytes: {:?}", who, stats);
            let peer = sim.conn(1 - who).stats();
            prop_assert_eq!(
                stats.send_window, peer.recv_window,
                "side {}: its send window and the peer's receive window disagree", who
            );
            let window = u64::from(sim.configs[1 - who].connection_window());
            prop_assert!(
                stats.send_window >= window / 2,
                "side {} may send {} of the peer's {} connection window",
                who, stats.send_window, window
            );
        }
        sim.transfer_twice_the_window(CLIENT)?;
        sim.transfer_twice_the_window(SERVER)?;
        sim.drive()?;
        for who in [CLIENT, SERVER] {
            let stats = sim.conn(who).stats();
            prop_assert_eq!(stats.open_streams, 0, "side {} keeps streams", who);
            prop_assert_eq!(stats.recv_buffered, 0, "side {} holds bytes", who);
        }
    }
}

proptest! {
    // 128 cases, ~6 ms each in debug mode: ~0.8 s.
    #![proptest_config(cases(128))]

    /// A peer that sends beyond the credit it was granted, after random
    /// traffic, in frames of random sizes delivered in random pieces (so
    /// the frame that breaks the credit often arrives in parts, and odd
    /// reads take payloads straight off the wire): after every step the
    /// connection's unreleased bytes equal its streams' unread bytes
    /// (SPEC §9.7), the bytes read are the bytes sent within credit, the
    /// server ends with FLOW_CONTROL_ERROR whenever the connection credit
    /// was broken, and once everything readable is read and every stream
    /// released, the server holds no received byte.
    #[test]
    fn a_peer_breaking_credit_leaves_every_received_byte_accounted_for(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        ops in ops_strategy(ALL_OPS, 60),
        pick in any::<Index>(),
        overshoot in prop_oneof![1u64..16, 16u64..70_000],
        sizes in proptest::collection::vec(1u32..70_000, 1..6),
    ) {
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        sim.run(&ops)?;
        sim.accept_all()?;
        let conn_left = sim.pair.server.stats().recv_window;
        sim.inject_credit_violation(&pick, overshoot, &sizes)?;
        let broke_connection_credit = sim.violated
            && sim.pair.server.stream_stats(sim.opened[CLIENT][pick.index(sim.opened[CLIENT].len())])
                .is_none_or(|s| s.recv_window >= conn_left);
        // Delivered in the chunk's pieces, read as they arrive, with the
        // server transmitting nothing meanwhile: reads release credit, but
        // no new limit is announced that would cover the injected bytes.
        loop {
            sim.accept_all()?;
            for id in sim.held(SERVER) {
                sim.read_all(SERVER, id)?;
            }
            if !sim.pair.deliver_one_way(true) {
                break;
            }
            sim.check()?;
        }
        if broke_connection_credit {
            prop_assert!(
                is_flow_control_error(sim.pair.server.error()),
                "the connection credit was broken, yet the server reports {:?}",
                sim.pair.server.error()
            );
        }
        sim.accept_all()?;
        for id in sim.held(SERVER) {
            sim.read_all(SERVER, id)?;
            sim.release(SERVER, id);
        }
        sim.drive()?;
        if sim.pair.server.is_finished() {
            let stats = sim.pair.server.stats();
            prop_assert_eq!(stats.recv_buffered, 0, "the server holds bytes: {:?}", stats);
        }
    }
}

// ----- property 6 -----------------------------------------------------------

proptest! {
    // 64 cases, ~10 ms each in debug mode.
    #![proptest_config(cases(64))]

    /// SPEC §11.1: data that waits on zero stream or connection credit for
    /// a probe interval has had a BLOCKED scheduled for that credit (the
    /// check after every step). Both sides open streams and keep writing;
    /// nobody reads, so every stream and then the connection run out of
    /// credit while time passes in random steps. The connection stays up
    /// (§10.4: only the streams stall).
    #[test]
    fn every_stall_is_probed(
        client in config_strategy(),
        server in config_strategy(),
        chunk in chunk_strategy(),
        streams in 1usize..=12,
        advances in proptest::collection::vec(prop_oneof![1u16..=1500, 1500u16..=5000], 5..25),
    ) {
        let opts = Opts { forbid_resets: false, ledger: false };
        let mut sim = Sim::new(client, server, chunk, opts);
        let mut ids = Vec::new();
        for who in [CLIENT, SERVER] {
            for _ in 0..streams {
                if let Some(id) = sim.open(who)? {
                    ids.push((who, id));
                }
            }
        }
        for ms in advances {
            for &(who, id) in &ids {
                sim.write(who, id, 300_000)?;
            }
            for _ in 0..4 {
                sim.step()?;
            }
            sim.apply(&Op::Advance(ms))?;
        }
        for who in [CLIENT, SERVER] {
            prop_assert!(sim.conn(who).error().is_none(), "{:?}", sim.conn(who).error());
        }
    }
}
