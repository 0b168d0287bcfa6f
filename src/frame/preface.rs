//! The connection preface (SPEC §3): magic bytes and protocol version, sent
//! by each side before anything else.

/// The magic bytes: "CMUX\r\n".
pub const MAGIC: [u8; 6] = *b"CMUX\r\n";
/// The protocol version this implementation speaks.
pub const VERSION: u16 = 1;
/// Length of the preface in bytes.
pub const PREFACE_LEN: usize = 8;

/// Why the peer's preface was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefaceError {
    /// The first bytes are not the creditmux magic: the peer speaks another
    /// protocol. The connection is closed without sending anything more.
    #[error("the peer does not speak creditmux (bad preface magic)")]
    BadMagic,
    /// The magic matched but the version is not one this side speaks.
    #[error(
        "the peer speaks creditmux protocol version {version}; this side speaks version {VERSION}"
    )]
    UnsupportedVersion {
        /// Version the peer announced.
        version: u16,
    },
}

/// The preface this side sends.
pub const fn encode_preface() -> [u8; PREFACE_LEN] {
    let v = VERSION.to_be_bytes();
    [
        MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], MAGIC[4], MAGIC[5], v[0], v[1],
    ]
}

/// Checks the peer's preface at the start of `bytes`.
///
/// - `Ok(Some(version))`: a complete, supported preface; the caller consumes
///   [`PREFACE_LEN`] bytes.
/// - `Ok(None)`: the bytes so far are a valid prefix; more are needed.
/// - `Err(_)`: not a preface this side accepts. A wrong magic byte is
///   reported as soon as it arrives, without waiting for the rest.
pub fn decode_preface(bytes: &[u8]) -> Result<Option<u16>, PrefaceError> {
    let seen = bytes.len().min(MAGIC.len());
    if bytes[..seen] != MAGIC[..seen] {
        return Err(PrefaceError::BadMagic);
    }
    if bytes.len() < PREFACE_LEN {
        return Ok(None);
    }
    let version = u16::from_be_bytes([bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(PrefaceError::UnsupportedVersion { version });
    }
    Ok(Some(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_round_trips() {
        let preface = encode_preface();
        assert_eq!(preface, [0x43, 0x4d, 0x55, 0x58, 0x0d, 0x0a, 0x00, 0x01]);
        assert_eq!(decode_preface(&preface), Ok(Some(1)));
        for split in 0..PREFACE_LEN {
            assert_eq!(decode_preface(&preface[..split]), Ok(None));
        }
    }

    #[test]
    fn wrong_magic_fails_on_the_first_bad_byte() {
        assert_eq!(decode_preface(b"G"), Err(PrefaceError::BadMagic));
        assert_eq!(decode_preface(b"CMUX\r\r"), Err(PrefaceError::BadMagic));
    }

    #[test]
    fn other_versions_are_refused() {
        let mut preface = encode_preface();
        preface[7] = 2;
        assert_eq!(
            decode_preface(&preface),
            Err(PrefaceError::UnsupportedVersion { version: 2 })
        );
    }
}
