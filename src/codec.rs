//! A `tokio_util::codec` adapter over the frame decoder, for users who want
//! creditmux frames on a `Framed` transport without the session engine.

use bytes::BytesMut;

use crate::frame::{Decoded, Frame, FrameDecoder, FrameError};

/// Error type of [`FrameCodec`]: a frame error, or an I/O error of the
/// underlying transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// [`FrameDecoder`] as a `tokio_util::codec::Decoder` and `Encoder`.
///
/// Decoding checks each header against the maximum payload before it
/// reserves room for the payload, and skips frames of unknown types
/// (SPEC §5.4) without buffering them.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec that accepts payloads up to `max_payload` bytes.
    pub fn new(max_payload: u32) -> FrameCodec {
        FrameCodec {
            decoder: FrameDecoder::new(max_payload),
        }
    }
}

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    /// `Ok(Some(frame))`: a frame was taken off `src`. `Ok(None)`: more
    /// bytes are needed (room for the rest of the current frame, at most
    /// header plus maximum payload, is reserved). `Err`: the input is
    /// invalid; the connection must be closed with `FrameError::code`.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            match self.decoder.decode_next(src)? {
                Some(Decoded::Frame(frame)) => return Ok(Some(frame)),
                Some(Decoded::Ignored(_)) => continue,
                None => {
                    src.reserve(self.decoder.missing(src.len()));
                    return Ok(None);
                }
            }
        }
    }
}

impl tokio_util::codec::Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Ping, StreamId, WindowUpdate};
    use tokio_util::codec::{Decoder, Encoder};

    #[test]
    fn frames_pass_through_the_codec_and_unknown_types_are_skipped() {
        let mut codec = FrameCodec::new(16384);
        let mut buf = BytesMut::new();
        codec
            .encode(
                Frame::Ping(Ping {
                    ack: false,
                    payload: [1; 8],
                }),
                &mut buf,
            )
            .unwrap();
        // An unknown frame type with a 3-byte payload.
        buf.extend_from_slice(&[0, 0, 3, 0x42, 0, 0, 0, 0, 0, 1, 2, 3]);
        let update = Frame::WindowUpdate(WindowUpdate {
            stream: StreamId::CONNECTION,
            limit: 99,
        });
        codec.encode(update.clone(), &mut buf).unwrap();
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Frame::Ping(_)))));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(update));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
}
