//! Connection configuration: every knob with its unit, default and range.

use std::time::Duration;

use crate::frame::{CONNECTION_WINDOW, INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD, MAX_STREAMS};

/// Per-connection limits on peer-triggered frames, counted per one-second
/// window of the connection's clock (SPEC §16.1). A peer over any limit gets
/// GOAWAY with ENHANCE_YOUR_CALM. The defaults are also the minimums
/// ([`ConfigBuilder::build`] refuses lower values).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FloodLimits {
    /// PINGs received per second, plus PING ACKs that match no PING of
    /// this side. Default 100.
    pub pings: u32,
    /// Empty DATA frames without FIN that open nothing, per second. Default 100.
    pub empty_data: u32,
    /// WINDOW_UPDATE / MAX_STREAMS frames that raise no limit, per second,
    /// except one answer per BLOCKED this side sent. Default 1000.
    pub useless_updates: u32,
    /// BLOCKED frames received per second. Default 100.
    pub blocked: u32,
    /// RESETs received plus RESETs this side sent in reaction to a peer
    /// frame (REFUSED_STREAM, STREAM_CLOSED), per second. Default 200.
    pub resets: u32,
    /// Frames of unknown types per second. Default 100.
    pub unknown_frames: u32,
    /// Frames on closed streams, except DATA with a payload, per second.
    /// Default 1000.
    pub stray_frames: u32,
    /// PRIORITY_UPDATE frames received per second. Default 1000.
    pub priority_updates: u32,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            pings: 100,
            empty_data: 100,
            useless_updates: 1000,
            blocked: 100,
            resets: 200,
            unknown_frames: 100,
            stray_frames: 1000,
            priority_updates: 1000,
        }
    }
}

/// The stream window this side advertises by default. Larger than the
/// protocol's default (SPEC §7.1, used only when a peer leaves the setting
/// out): one stream then keeps a fast link busy while its reader's credit
/// is on the way back. Large writes wait for credit rather than being
/// copied into the send buffer, so with 256 KiB a single stream stalled on
/// every round trip of a WINDOW_UPDATE. Buffering stays bounded by the
/// connection window, which is unchanged.
const DEFAULT_STREAM_WINDOW: u32 = 1024 * 1024;
/// Receive-window tuning (SPEC §9.8.1): a stream window grows to 16 MiB
/// and the connection window to 64 MiB, the memory budget. That is three
/// times the bandwidth-delay product of 1 Gbit/s at 50 ms round trip for
/// one stream; the budget is the quarter rule of §7.3 applied to it.
const DEFAULT_MAX_STREAM_WINDOW: u32 = 16 << 20;
const DEFAULT_MAX_CONNECTION_WINDOW: u32 = 64 << 20;

/// The largest frame payload this side accepts by default, above the
/// protocol's default (SPEC §7.1): a lone bulk stream's direct writes then
/// carry 256 KiB per frame, and the receiver reads most of each payload
/// straight into the reader's buffer, without a copy. The read buffer does
/// not grow with it (a payload is handed on as it arrives), and a sender
/// with several streams queued still takes 16 KiB turns.
const DEFAULT_MAX_FRAME_PAYLOAD: u32 = 256 * 1024;

/// Connection configuration. Build one with [`Config::builder`]; every value
/// is checked by [`ConfigBuilder::build`].
///
/// Defaults, next to what the peers use: stream window 1 MiB (h2 64 KiB,
/// yamux 256 KiB, quinn 1.25 MiB), connection window 8 MiB (h2 64 KiB, yamux
/// none, quinn 12.5 MiB), both tuned on paths whose round trip is 0.5 ms or
/// more up to 16 MiB and a 64 MiB budget (yamux grows windows without a
/// budget, h2 and quinn not at all), frame payload 256 KiB (h2 16 KiB, yamux none),
/// 100 concurrent inbound streams (h2 unlimited by default in the client,
/// 100 typical; quinn 100).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) stream_window: u32,
    pub(crate) connection_window: u32,
    pub(crate) max_stream_window: u32,
    pub(crate) max_connection_window: u32,
    pub(crate) max_frame_payload: u32,
    pub(crate) max_incoming_streams: u32,
    pub(crate) accept_backlog: u32,
    pub(crate) send_buffer: u32,
    pub(crate) max_stray_control: u32,
    pub(crate) handshake_timeout: Duration,
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) probe_max: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) half_close_timeout: Option<Duration>,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) flood: FloodLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stream_window: DEFAULT_STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW.default,
            max_stream_window: DEFAULT_MAX_STREAM_WINDOW,
            max_connection_window: DEFAULT_MAX_CONNECTION_WINDOW,
            max_frame_payload: DEFAULT_MAX_FRAME_PAYLOAD,
            max_incoming_streams: MAX_STREAMS.default,
            accept_backlog: 256,
            send_buffer: 256 * 1024,
            max_stray_control: 1024,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(30),
            probe_interval: Duration::from_secs(1),
            probe_max: Duration::from_secs(16),
            drain_timeout: Duration::from_secs(5),
            half_close_timeout: Some(Duration::from_secs(60)),
            frame_timeout: Some(Duration::from_secs(30)),
            flood: FloodLimits::default(),
        }
    }
}

/// A value [`ConfigBuilder::build`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is outside its allowed range.
    #[error("{name} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The knob.
        name: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The stream window is more than a quarter of the connection window,
    /// so a few stuck streams could hold all connection credit.
    #[error("stream window {stream} is more than a quarter of the connection window {connection}")]
    StreamWindowTooLarge {
        /// Stream window.
        stream: u32,
        /// Connection window.
        connection: u32,
    },
    /// A duration that must be positive is zero, or the probe cap is below
    /// the first interval.
    #[error("invalid duration for {name}")]
    InvalidDuration {
        /// The knob.
        name: &'static str,
    },
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Per-stream receive window in bytes (INITIAL_STREAM_WINDOW).
    pub fn stream_window(&self) -> u32 {
        self.stream_window
    }
    /// Connection receive window in bytes (CONNECTION_WINDOW).
    pub fn connection_window(&self) -> u32 {
        self.connection_window
    }

    /// The most a stream's receive window grows to (SPEC §9.8); no less
    /// than [`Config::stream_window`].
    pub fn max_stream_window(&self) -> u32 {
        self.max_stream_window.max(self.stream_window)
    }

    /// The most the connection's receive window grows to: the budget of
    /// bytes the peer may make this side buffer (SPEC §9.8); no less than
    /// [`Config::connection_window`].
    pub fn max_connection_window(&self) -> u32 {
        self.max_connection_window.max(self.connection_window)
    }

    /// Whether receive windows are tuned: a maximum above its initial
    /// window.
    pub fn tunes_windows(&self) -> bool {
        self.max_stream_window() > self.stream_window
            || self.max_connection_window() > self.connection_window
    }
    /// Largest frame payload this side accepts, in bytes.
    pub fn max_frame_payload(&self) -> u32 {
        self.max_frame_payload
    }
    /// Streams the peer may have open at once.
    pub fn max_incoming_streams(&self) -> u32 {
        self.max_incoming_streams
    }
    /// Incoming streams waiting for `accept()`.
    pub fn accept_backlog(&self) -> u32 {
        self.accept_backlog
    }
    /// Bytes a stream buffers for sending before writes wait.
    pub fn send_buffer(&self) -> u32 {
        self.send_buffer
    }
    /// Idle time after which a keepalive PING is sent; `None` when
    /// keepalive (and the idle timeout) is off.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive_interval
    }
    /// Time after a keepalive PING within which something must arrive.
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_timeout
    }
    /// Time a half-closed stream may go without a frame before it is
    /// reset; `None` for no limit.
    pub fn half_close_timeout(&self) -> Option<Duration> {
        self.half_close_timeout
    }
    /// Time allowed for a write to make progress before the session ends.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }
    /// Time a frame may take to arrive once its first byte has; `None` for
    /// no limit.
    pub fn frame_timeout(&self) -> Option<Duration> {
        self.frame_timeout
    }
    /// Time a sender stays blocked on zero credit before its first BLOCKED
    /// probe.
    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }
    /// Cap of the probe backoff.
    pub fn probe_max(&self) -> Duration {
        self.probe_max
    }
    /// Control frames owed for streams no longer live (RESET
    /// REFUSED_STREAM) that may wait at once.
    pub fn max_stray_control(&self) -> u32 {
        self.max_stray_control
    }
    /// Time allowed for the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
    /// Time a graceful close waits for streams to finish.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }
    /// Flood limits.
    pub fn flood_limits(&self) -> FloodLimits {
        self.flood
    }

    /// Worst-case bytes of stream data one connection buffers: every
    /// incoming byte within the connection window, plus a full send buffer
    /// on every stream that can be open (both directions' limits). Control
    /// state, per-stream bookkeeping and transport buffers come on top.
    pub fn max_buffered_bytes(&self, outgoing_streams: u64) -> u64 {
        self.max_connection_window() as u64
            + (self.max_incoming_streams as u64 + outgoing_streams) * self.send_buffer as u64
    }
}

/// Builds a validated [`Config`].
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl ConfigBuilder {
    setter!(
        /// Per-stream receive window in bytes: 1 KiB ..= 1 GiB, at most a
        /// quarter of the connection window. Default 1 MiB.
        stream_window: u32
    );
    setter!(
        /// Connection receive window in bytes: 1 KiB ..= 2 GiB. Default 8 MiB.
        connection_window: u32
    );
    setter!(
        /// Receive-window tuning (SPEC §9.8): the most a stream's window
        /// may grow to while it is what limits the stream's rate, in bytes:
        /// at most a quarter of `max_connection_window`. Default 16 MiB;
        /// 0 (or anything at or below `stream_window`) keeps stream
        /// windows fixed.
        max_stream_window: u32
    );
    setter!(
        /// Receive-window tuning (SPEC §9.8): the most the connection's
        /// window may grow to, in bytes, up to 2 GiB. Everything the peer
        /// may make this side buffer stays within it: the connection's
        /// memory budget. Default 64 MiB; a server holding many
        /// connections may want less. 0 (or anything at or below
        /// `connection_window`) keeps the connection window fixed.
        max_connection_window: u32
    );
    setter!(
        /// Largest frame payload accepted, in bytes: 1 KiB ..= 16 MiB - 1.
        /// Default 256 KiB.
        max_frame_payload: u32
    );
    setter!(
        /// Streams the peer may have open at once: 0 ..= 2^30. Default 100.
        max_incoming_streams: u32
    );
    setter!(
        /// Accepted streams waiting for `accept()`: 1 ..= 2^20. Streams beyond
        /// it are refused with REFUSED_STREAM. Default 256.
        accept_backlog: u32
    );
    setter!(
        /// Bytes a stream buffers for sending before writes wait: 1 KiB ..= 1 GiB.
        /// Default 256 KiB. Over a transport that takes vectored writes
        /// (TCP, TLS), a write of 16 KiB or more (or of the peer's largest
        /// frame payload, if that is smaller) to a
        /// stream with nothing buffered and no credit waits for credit
        /// instead, then goes out straight from the caller's buffer: a
        /// bulk writer then costs no copy, and runs ahead of its reader by
        /// the peer's stream window rather than window plus send buffer.
        send_buffer: u32
    );
    setter!(
        /// Control frames about already-forgotten streams that may wait for
        /// the socket at once: 16 ..= 2^20. Default 1024.
        max_stray_control: u32
    );
    setter!(
        /// Time allowed for the handshake. Default 10 s.
        handshake_timeout: Duration
    );
    setter!(
        /// Idle time after which a PING is sent; `None` disables keepalive
        /// and the idle timeout. Default 15 s.
        keepalive_interval: Option<Duration>
    );
    setter!(
        /// Time after a keepalive PING within which something must arrive,
        /// or the peer is declared dead. Default 15 s.
        keepalive_timeout: Duration
    );
    setter!(
        /// Time a write may make no progress before the session ends. Default 30 s.
        write_timeout: Duration
    );
    setter!(
        /// First zero-window probe delay. Default 1 s.
        probe_interval: Duration
    );
    setter!(
        /// Cap of the probe backoff. Default 16 s.
        probe_max: Duration
    );
    setter!(
        /// Time a graceful close waits for open streams. Default 5 s.
        drain_timeout: Duration
    );
    setter!(
        /// Time a stream may stay half-closed (our FIN sent) before it is
        /// reset with STREAM_TIMEOUT; `None` disables. Default 60 s.
        half_close_timeout: Option<Duration>
    );
    setter!(
        /// Time a frame may take to arrive completely once its first byte
        /// has (SPEC §12.2): a peer that trickles a frame slower than that
        /// is ended with IDLE_TIMEOUT, though every byte counts as liveness.
        /// `None` disables. Default 30 s (a 256 KiB frame at 70 kbit/s).
        frame_timeout: Option<Duration>
    );
    setter!(
        /// Flood limits.
        flood: FloodLimits
    );

    /// Checks every value and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        let range = |name, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    name,
                    value,
                    min,
                    max,
                })
            }
        };
        range(
            "stream_window",
            c.stream_window as u64,
            INITIAL_STREAM_WINDOW.min as u64,
            INITIAL_STREAM_WINDOW.max as u64,
        )?;
        range(
            "connection_window",
            c.connection_window as u64,
            CONNECTION_WINDOW.min as u64,
            CONNECTION_WINDOW.max as u64,
        )?;
        range(
            "max_stream_window",
            c.max_stream_window() as u64,
            INITIAL_STREAM_WINDOW.min as u64,
            INITIAL_STREAM_WINDOW.max as u64,
        )?;
        range(
            "max_connection_window",
            c.max_connection_window() as u64,
            CONNECTION_WINDOW.min as u64,
            CONNECTION_WINDOW.max as u64,
        )?;
        range(
            "max_frame_payload",
            c.max_frame_payload as u64,
            MAX_FRAME_PAYLOAD.min as u64,
            MAX_FRAME_PAYLOAD.max as u64,
        )?;
        range(
            "max_incoming_streams",
            c.max_incoming_streams as u64,
            MAX_STREAMS.min as u64,
            MAX_STREAMS.max as u64,
        )?;
        range("accept_backlog", c.accept_backlog as u64, 1, 1 << 20)?;
        range("send_buffer", c.send_buffer as u64, 1024, 1 << 30)?;
        range("max_stray_control", c.max_stray_control as u64, 16, 1 << 20)?;
        // SPEC §16.1: a receiver MAY raise a flood limit and MUST NOT
        // enforce a lower one: conformant peers are only promised these.
        let min = FloodLimits::default();
        for (name, value, min) in [
            ("flood.pings", c.flood.pings, min.pings),
            ("flood.empty_data", c.flood.empty_data, min.empty_data),
            (
                "flood.useless_updates",
                c.flood.useless_updates,
                min.useless_updates,
            ),
            ("flood.blocked", c.flood.blocked, min.blocked),
            ("flood.resets", c.flood.resets, min.resets),
            (
                "flood.unknown_frames",
                c.flood.unknown_frames,
                min.unknown_frames,
            ),
            ("flood.stray_frames", c.flood.stray_frames, min.stray_frames),
            (
                "flood.priority_updates",
                c.flood.priority_updates,
                min.priority_updates,
            ),
        ] {
            range(name, value as u64, min as u64, u32::MAX as u64)?;
        }
        if c.stream_window as u64 * 4 > c.connection_window as u64 {
            return Err(ConfigError::StreamWindowTooLarge {
                stream: c.stream_window,
                connection: c.connection_window,
            });
        }
        if c.max_stream_window() as u64 * 4 > c.max_connection_window() as u64 {
            return Err(ConfigError::StreamWindowTooLarge {
                stream: c.max_stream_window(),
                connection: c.max_connection_window(),
            });
        }
        for (name, d) in [
            ("handshake_timeout", c.handshake_timeout),
            ("keepalive_timeout", c.keepalive_timeout),
            ("write_timeout", c.write_timeout),
            ("probe_interval", c.probe_interval),
            ("drain_timeout", c.drain_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::InvalidDuration { name });
            }
        }
        if c.probe_max < c.probe_interval {
            return Err(ConfigError::InvalidDuration { name: "probe_max" });
        }
        if c.keepalive_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::InvalidDuration {
                name: "keepalive_interval",
            });
        }
        if c.half_close_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::InvalidDuration {
                name: "half_close_timeout",
            });
        }
        if c.frame_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::InvalidDuration {
                name: "frame_timeout",
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::builder().build(), Ok(Config::default()));
    }

    #[test]
    fn windows_are_tuned_only_when_a_maximum_is_above_its_initial_window() {
        assert!(Config::default().tunes_windows());
        let fixed = Config::builder()
            .max_stream_window(0)
            .max_connection_window(0)
            .build()
            .unwrap();
        assert!(!fixed.tunes_windows(), "0 keeps the initial windows");
        assert_eq!(fixed.max_stream_window(), 1 << 20);
        assert_eq!(fixed.max_buffered_bytes(0), (8 << 20) + 100 * 256 * 1024);
        let tuned = Config::builder()
            .max_stream_window(16 << 20)
            .max_connection_window(64 << 20)
            .build()
            .unwrap();
        assert!(tuned.tunes_windows());
        assert_eq!(tuned.max_buffered_bytes(0), (64 << 20) + 100 * 256 * 1024);
        let err = Config::builder()
            .max_stream_window(16 << 20)
            .max_connection_window(32 << 20)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::StreamWindowTooLarge { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_stream_window_above_a_quarter_of_the_connection_window_is_refused() {
        let err = Config::builder()
            .stream_window(1 << 20)
            .connection_window(3 << 20)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::StreamWindowTooLarge { .. }));
    }

    #[test]
    fn out_of_range_values_name_the_knob() {
        let err = Config::builder()
            .max_frame_payload(100)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::OutOfRange {
                name: "max_frame_payload",
                ..
            }
        ));
        let err = Config::builder()
            .probe_max(Duration::from_millis(10))
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::InvalidDuration { name: "probe_max" });
    }
}
