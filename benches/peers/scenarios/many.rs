//! many: concurrent streams client to server, 100 of them and 1,000 of
//! them, each written in 64 KiB and in 256 KiB writes; one table per
//! configuration.

use super::{Ctx, Metric, Scenario, Sizes, Transfer, enough_fds, metric, transfer_pair};

/// One configuration of the many scenario, with its metrics.
#[derive(Debug)]
pub struct ManyPoint {
    /// Concurrent streams (raw TCP and raw TLS: connections).
    pub streams: usize,
    /// The size of each write.
    pub write: usize,
    pub mib_per_s: Metric,
    pub cpu_ms_per_gib: Metric,
    /// The slowest stream's time ÷ the fastest's.
    pub spread: Metric,
}

impl ManyPoint {
    /// Each stream's bytes in the mode of `sizes`.
    fn bytes(&self, sizes: Sizes) -> usize {
        if self.streams >= 1000 {
            sizes.many_1000_bytes
        } else {
            sizes.many_100_bytes
        }
    }
}

/// The metric keys name the configuration, which is the same in both
/// modes (only each stream's bytes change), so that they stay stable.
const fn point(streams: usize, write: usize, keys: [&'static str; 3]) -> ManyPoint {
    ManyPoint {
        streams,
        write,
        mib_per_s: metric(keys[0], "MiB/s", true, 0).with_swing(),
        cpu_ms_per_gib: metric(keys[1], "CPU ms/GiB", false, 0),
        spread: metric(keys[2], "slowest ÷ fastest", false, 2),
    }
}

pub(super) const MANY_POINTS: [ManyPoint; 4] = [
    point(
        100,
        64 << 10,
        [
            "100_streams_64kib_writes_mib_per_s",
            "100_streams_64kib_writes_cpu_ms_per_gib",
            "100_streams_64kib_writes_spread",
        ],
    ),
    point(
        100,
        256 << 10,
        [
            "100_streams_256kib_writes_mib_per_s",
            "100_streams_256kib_writes_cpu_ms_per_gib",
            "100_streams_256kib_writes_spread",
        ],
    ),
    point(
        1000,
        64 << 10,
        [
            "1000_streams_64kib_writes_mib_per_s",
            "1000_streams_64kib_writes_cpu_ms_per_gib",
            "1000_streams_64kib_writes_spread",
        ],
    ),
    point(
        1000,
        256 << 10,
        [
            "1000_streams_256kib_writes_mib_per_s",
            "1000_streams_256kib_writes_cpu_ms_per_gib",
            "1000_streams_256kib_writes_spread",
        ],
    ),
];

/// `bytes` as "8 MiB", "256 KiB" or "512 B".
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A count with a thousands separator.
fn count(n: usize) -> String {
    if n >= 1000 {
        format!("{},{:03}", n / 1000, n % 1000)
    } else {
        n.to_string()
    }
}

pub(super) fn scenario(ctx: Ctx, sizes: Sizes) -> Scenario {
    let pairs = MANY_POINTS
        .iter()
        .map(|point| {
            let transfer = Transfer {
                streams: point.streams,
                bytes: point.bytes(sizes),
                write: point.write,
                cpu: true,
                spread: true,
            };
            let mut pair = transfer_pair(
                ctx,
                transfer,
                vec![point.mib_per_s, point.cpu_ms_per_gib, point.spread],
            );
            pair.table = Some(format!(
                "{} streams × {}, {} writes",
                count(point.streams),
                size(transfer.bytes),
                size(point.write)
            ));
            let measure = pair.run;
            pair.run = Box::new(move || {
                // Raw TCP and raw TLS: a connection, two descriptors, a stream.
                enough_fds(ctx.kind, 1, transfer.streams)?;
                measure()
            });
            pair
        })
        .collect();
    Scenario {
        title: "many: concurrent streams client to server, each stream writing its bytes in \
                writes of the size given, then waiting for the server's ack (raw TCP and raw \
                TLS: a connection per stream). MiB/s: all bytes ÷ the time to the last ack; \
                CPU: both sides' threads per GiB; slowest ÷ fastest: the slowest stream's time \
                ÷ the fastest's, each from the start of its task (its open included) to its ack"
            .to_string(),
        pairs,
        derived: None,
    }
}
