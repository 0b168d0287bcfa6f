//! SETTINGS (SPEC §6.9, §7): the connection parameters each side announces
//! once, right after its preface.

use bytes::BufMut;

use super::{FrameError, FrameKind, Header, StreamId};

/// Bytes per parameter on the wire: u16 id, u32 value.
pub(super) const SETTING_LEN: u32 = 6;
/// Largest SETTINGS payload; it fits the smallest allowed frame maximum.
pub(super) const SETTINGS_MAX_PAYLOAD_LEN: u32 = 1024;

/// One parameter's id, default and allowed range (SPEC §7).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SettingSpec {
    /// Wire id.
    pub id: u16,
    /// Name in the specification.
    pub name: &'static str,
    /// Value assumed when the parameter is absent.
    pub default: u32,
    /// Smallest allowed value.
    pub min: u32,
    /// Largest allowed value.
    pub max: u32,
}

/// Per-stream credit the announcing side grants for each new stream.
pub const INITIAL_STREAM_WINDOW: SettingSpec = SettingSpec {
    id: 0x1,
    name: "INITIAL_STREAM_WINDOW",
    default: 256 * 1024,
    min: 1024,
    max: 1 << 30,
};
/// Connection-level credit the announcing side grants initially.
pub const CONNECTION_WINDOW: SettingSpec = SettingSpec {
    id: 0x2,
    name: "CONNECTION_WINDOW",
    default: 8 * 1024 * 1024,
    min: 1024,
    max: 1 << 31,
};
/// Largest frame payload the announcing side accepts.
pub const MAX_FRAME_PAYLOAD: SettingSpec = SettingSpec {
    id: 0x3,
    name: "MAX_FRAME_PAYLOAD",
    default: 16 * 1024,
    min: 1024,
    max: (1 << 24) - 1,
};
/// Streams the peer may have open at once (initial stream-count credit).
pub const MAX_STREAMS: SettingSpec = SettingSpec {
    id: 0x4,
    name: "MAX_STREAMS",
    default: 100,
    min: 0,
    max: 1 << 30,
};

/// Optional behaviour the announcing side handles, one bit each (SPEC
/// §7.1); bits not defined are ignored.
pub const EXTENSIONS: SettingSpec = SettingSpec {
    id: 0x5,
    name: "EXTENSIONS",
    default: 0,
    min: 0,
    max: u32::MAX,
};

/// EXTENSIONS bit: RESET's SEND and RECEIVE flags (SPEC §6.6, §8.7.1).
pub const DIRECTIONAL_RESET: u32 = 0x1;
/// EXTENSIONS bit: PRIORITY_UPDATE frames (SPEC §6.10).
pub const PRIORITY_UPDATES: u32 = 0x2;

/// Every parameter version 1 knows, in id order.
pub const KNOWN_SETTINGS: [SettingSpec; 5] = [
    INITIAL_STREAM_WINDOW,
    CONNECTION_WINDOW,
    MAX_FRAME_PAYLOAD,
    MAX_STREAMS,
    EXTENSIONS,
];

// The largest SETTINGS frame fits the smallest frame maximum, so it can be
// decoded before the peer's limits are known (SPEC §4.2).
const _: () = assert!(KNOWN_SETTINGS.len() as u32 * SETTING_LEN <= SETTINGS_MAX_PAYLOAD_LEN);
const _: () = assert!(SETTINGS_MAX_PAYLOAD_LEN <= MAX_FRAME_PAYLOAD.min);

/// The known parameters of one SETTINGS frame; `None` means absent (the
/// default applies). Unknown ids are skipped on decode.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsValues {
    /// INITIAL_STREAM_WINDOW.
    pub initial_stream_window: Option<u32>,
    /// CONNECTION_WINDOW.
    pub connection_window: Option<u32>,
    /// MAX_FRAME_PAYLOAD.
    pub max_frame_payload: Option<u32>,
    /// MAX_STREAMS.
    pub max_streams: Option<u32>,
    /// EXTENSIONS.
    pub extensions: Option<u32>,
}

impl SettingsValues {
    fn slot(&mut self, id: u16) -> Option<&mut Option<u32>> {
        match id {
            0x1 => Some(&mut self.initial_stream_window),
            0x2 => Some(&mut self.connection_window),
            0x3 => Some(&mut self.max_frame_payload),
            0x4 => Some(&mut self.max_streams),
            0x5 => Some(&mut self.extensions),
            _ => None,
        }
    }

    /// The present parameters as (spec, value) pairs, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (SettingSpec, u32)> + '_ {
        let values = [
            self.initial_stream_window,
            self.connection_window,
            self.max_frame_payload,
            self.max_streams,
            self.extensions,
        ];
        KNOWN_SETTINGS
            .into_iter()
            .zip(values)
            .filter_map(|(spec, value)| value.map(|v| (spec, v)))
    }

    /// Effective value of a parameter: the one present, or its default.
    pub fn get(&self, spec: SettingSpec) -> u32 {
        let value = match spec.id {
            0x1 => self.initial_stream_window,
            0x2 => self.connection_window,
            0x3 => self.max_frame_payload,
            0x4 => self.max_streams,
            0x5 => self.extensions,
            _ => None,
        };
        value.unwrap_or(spec.default)
    }
}

/// Connection parameters, or the acknowledgement of the peer's.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// True on the acknowledgement, which has no payload.
    pub ack: bool,
    /// The parameters (always empty on an acknowledgement).
    pub values: SettingsValues,
}

impl Settings {
    /// Flag bit: acknowledgement of the peer's SETTINGS.
    pub const FLAG_ACK: u8 = 0x1;

    /// The frame's header.
    pub fn header(&self) -> Header {
        Header {
            len: self.values.iter().count() as u32 * SETTING_LEN,
            kind: FrameKind::Settings as u8,
            flags: if self.ack { Self::FLAG_ACK } else { 0 },
            stream: StreamId::CONNECTION,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        for (spec, value) in self.values.iter() {
            dst.put_u16(spec.id);
            dst.put_u32(value);
        }
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Result<Settings, FrameError> {
        let mut values = SettingsValues::default();
        for entry in payload.chunks_exact(SETTING_LEN as usize) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            // SPEC §7: unknown ids are ignored.
            let Some(spec) = KNOWN_SETTINGS.iter().find(|s| s.id == id) else {
                continue;
            };
            // SPEC §5.3 step 9: a repeated id is reported before its range.
            let slot = values
                .slot(id)
                .ok_or(FrameError::SettingOutOfRange { id, value })?;
            if slot.replace(value).is_some() {
                return Err(FrameError::SettingDuplicate { id });
            }
            if !(spec.min..=spec.max).contains(&value) {
                return Err(FrameError::SettingOutOfRange { id, value });
            }
        }
        Ok(Settings {
            ack: header.flags & Self::FLAG_ACK != 0,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_lies_within_its_range() {
        for spec in KNOWN_SETTINGS {
            assert!(
                (spec.min..=spec.max).contains(&spec.default),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn absent_values_read_as_defaults() {
        let values = SettingsValues {
            max_streams: Some(7),
            ..Default::default()
        };
        assert_eq!(values.get(MAX_STREAMS), 7);
        assert_eq!(values.get(CONNECTION_WINDOW), CONNECTION_WINDOW.default);
    }
}
