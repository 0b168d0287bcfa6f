//! The incremental frame decoder (SPEC §5, §6).

use bytes::{Buf, BytesMut};

use super::control::{GOAWAY_MIN_PAYLOAD_LEN, PING_PAYLOAD_LEN, RESET_PAYLOAD_LEN};
use super::credit::CREDIT_PAYLOAD_LEN;
use super::priority::PRIORITY_PAYLOAD_LEN;
use super::settings::{SETTING_LEN, SETTINGS_MAX_PAYLOAD_LEN};
use super::{
    Blocked, Data, Frame, FrameError, FrameKind, GoAway, HEADER_LEN, Header, MaxStreams, Ping,
    PriorityUpdate, Reset, Settings, StreamId, WindowUpdate,
};

/// What one decoding step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A frame of a known type.
    Frame(Frame),
    /// A frame of an unknown type, skipped whole (SPEC §15). Its payload was
    /// discarded as it arrived, never buffered.
    Ignored(Header),
}

#[derive(Copy, Clone, Debug)]
enum State {
    /// Waiting for a header.
    Header,
    /// Header of a known type checked; waiting for its payload.
    Payload(Header, FrameKind),
    /// Discarding the payload of an unknown type.
    Skip { header: Header, remaining: u32 },
}

/// Takes frames off the front of a byte buffer.
///
/// The header is checked as soon as its 9 bytes are present: the length
/// against the maximum payload, the stream id against the frame type, and
/// fixed payload sizes. Only then does the payload's length count in
/// [`missing`](FrameDecoder::missing), the room a reader makes for it, so a
/// hostile length never causes an allocation beyond `HEADER_LEN +
/// max_payload`. The decoder allocates nothing itself. Input may be split
/// at any byte boundary.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_payload: u32,
    state: State,
    /// Payload bytes of the DATA frame in progress handed out before the
    /// frame completed (parts, or bytes read around the decoder).
    data_taken: u32,
}

impl FrameDecoder {
    /// A decoder that accepts payloads up to `max_payload` bytes: this side's
    /// advertised MAX_FRAME_PAYLOAD.
    pub fn new(max_payload: u32) -> FrameDecoder {
        FrameDecoder {
            max_payload,
            state: State::Header,
            data_taken: 0,
        }
    }

    /// The largest payload accepted.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Decodes the next frame from the front of `src`.
    ///
    /// - `Ok(Some(decoded))`: one frame was taken off `src`.
    /// - `Ok(None)`: `src` holds no complete frame yet; the decoder has kept
    ///   its progress (and consumed any skipped bytes). Call again with more
    ///   bytes ([`missing`](Self::missing) says how many the frame needs).
    /// - `Err(e)`: the input is not valid; `e.code()` is the connection error
    ///   to send. The decoder must not be used afterwards.
    pub fn decode_next(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        loop {
            match self.state {
                State::Header => {
                    let Some(bytes) = src.get(..HEADER_LEN) else {
                        return Ok(None);
                    };
                    let mut raw = [0u8; HEADER_LEN];
                    raw.copy_from_slice(bytes);
                    // SPEC §5.3 step 2 comes before step 3 (the reserved bit).
                    let len = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]);
                    if len > self.max_payload {
                        return Err(FrameError::TooLarge {
                            len,
                            max: self.max_payload,
                        });
                    }
                    let header = Header::decode(&raw)?;
                    let kind = self.check_header(&header)?;
                    src.advance(HEADER_LEN);
                    self.data_taken = 0;
                    self.state = match kind {
                        Some(kind) => State::Payload(header, kind),
                        None => State::Skip {
                            header,
                            remaining: header.len,
                        },
                    };
                }
                State::Payload(header, kind) => {
                    let len = header.len as usize;
                    if src.len() < len {
                        return Ok(None);
                    }
                    let payload = src.split_to(len).freeze();
                    self.state = State::Header;
                    return decode_payload(&header, kind, payload).map(|f| Some(Decoded::Frame(f)));
                }
                State::Skip { header, remaining } => {
                    let n = (remaining as usize).min(src.len());
                    src.advance(n);
                    let remaining = remaining - n as u32;
                    if remaining > 0 {
                        self.state = State::Skip { header, remaining };
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(Decoded::Ignored(header)));
                }
            }
        }
    }

    /// The bytes the frame in progress still needs beyond the `buffered`
    /// ones the caller holds, before [`decode_next`](Self::decode_next) can
    /// return it: at most `HEADER_LEN + max_payload`, a payload's length
    /// counting only once its header was checked. 0 while a payload is
    /// being skipped (any bytes make progress).
    pub fn missing(&self, buffered: usize) -> usize {
        match self.state {
            State::Header => HEADER_LEN.saturating_sub(buffered),
            State::Payload(header, _) => (header.len as usize).saturating_sub(buffered),
            State::Skip { .. } => 0,
        }
    }

    /// The DATA frame whose payload is being received: its stream and the
    /// payload bytes still to come, including any already in the buffer
    /// passed to [`decode_next`](Self::decode_next). `None` between frames
    /// and for other frame types.
    pub fn data_in_progress(&self) -> Option<(StreamId, usize)> {
        match self.state {
            State::Payload(header, FrameKind::Data) => Some((header.stream, header.len as usize)),
            _ => None,
        }
    }

    /// True once part of the DATA payload in progress was handed out
    /// ([`take_data_part`](Self::take_data_part),
    /// [`consume_data_payload`](Self::consume_data_payload)). Before that,
    /// [`data_in_progress`](Self::data_in_progress) gives the frame's whole
    /// length, which flow control checks at once (SPEC §9.3).
    pub fn data_part_taken(&self) -> bool {
        self.data_taken > 0
    }

    /// Takes the part of a DATA payload that `src` holds, if the frame is
    /// still incomplete: returned as a DATA frame without FIN, while the
    /// decoder waits for the rest (which then carries the frame's FIN).
    /// `None` if no DATA payload is in progress, `src` is empty, or `src`
    /// holds the whole rest (then [`decode_next`](Self::decode_next)
    /// returns it).
    pub fn take_data_part(&mut self, src: &mut BytesMut) -> Option<Data> {
        let State::Payload(mut header, FrameKind::Data) = self.state else {
            return None;
        };
        let n = src.len();
        if n == 0 || n >= header.len as usize {
            return None;
        }
        header.len -= n as u32;
        self.data_taken += n as u32;
        self.state = State::Payload(header, FrameKind::Data);
        Some(Data {
            stream: header.stream,
            fin: false,
            payload: src.split().freeze(),
        })
    }

    /// Accounts for `n` bytes of the DATA payload in progress that the
    /// caller read from the transport itself, straight to where they were
    /// wanted, with no bytes of the frame in the decoder's buffer. Returns
    /// `Some(fin)` if they completed the frame (`fin`: the frame's flag),
    /// `None` if more of it is to come.
    ///
    /// # Panics
    /// If no DATA payload is in progress or `n` exceeds its rest: the
    /// caller asks [`data_in_progress`](Self::data_in_progress) first.
    pub fn consume_data_payload(&mut self, n: usize) -> Option<bool> {
        let State::Payload(mut header, FrameKind::Data) = self.state else {
            panic!("no DATA payload in progress");
        };
        assert!(n <= header.len as usize, "more than the payload's rest");
        header.len -= n as u32;
        self.data_taken += n as u32;
        if header.len == 0 {
            self.state = State::Header;
            Some(header.flags & Data::FLAG_FIN != 0)
        } else {
            self.state = State::Payload(header, FrameKind::Data);
            None
        }
    }

    /// Checks steps 4 to 7 of SPEC §5.3: what the header of a known type
    /// alone can tell.
    /// Returns `None` for unknown types.
    fn check_header(&self, header: &Header) -> Result<Option<FrameKind>, FrameError> {
        let Some(kind) = FrameKind::from_u8(header.kind) else {
            return Ok(None);
        };
        let on_connection = header.stream.is_connection();
        let stream_ok = match kind {
            FrameKind::Data | FrameKind::Reset | FrameKind::PriorityUpdate => !on_connection,
            FrameKind::WindowUpdate | FrameKind::Blocked => true,
            FrameKind::MaxStreams | FrameKind::Ping | FrameKind::GoAway | FrameKind::Settings => {
                on_connection
            }
        };
        if !stream_ok {
            return Err(if on_connection {
                FrameError::StreamIdRequired { kind }
            } else {
                FrameError::StreamIdForbidden {
                    kind,
                    stream: header.stream,
                }
            });
        }
        if kind == FrameKind::Blocked && !on_connection && header.flags & Blocked::FLAG_STREAMS != 0
        {
            return Err(FrameError::InvalidFlags {
                kind,
                flags: header.flags,
                stream: header.stream,
            });
        }
        let len = header.len;
        let len_ok = match kind {
            FrameKind::Data => true,
            FrameKind::WindowUpdate | FrameKind::MaxStreams | FrameKind::Blocked => {
                len == CREDIT_PAYLOAD_LEN
            }
            FrameKind::Reset => len == RESET_PAYLOAD_LEN,
            FrameKind::Ping => len == PING_PAYLOAD_LEN,
            FrameKind::PriorityUpdate => len == PRIORITY_PAYLOAD_LEN,
            FrameKind::GoAway => len >= GOAWAY_MIN_PAYLOAD_LEN,
            FrameKind::Settings if header.flags & Settings::FLAG_ACK != 0 => len == 0,
            FrameKind::Settings => {
                len.is_multiple_of(SETTING_LEN) && len <= SETTINGS_MAX_PAYLOAD_LEN
            }
        };
        if !len_ok {
            return Err(FrameError::BadLength { kind, len });
        }
        Ok(Some(kind))
    }
}

fn decode_payload(
    header: &Header,
    kind: FrameKind,
    payload: bytes::Bytes,
) -> Result<Frame, FrameError> {
    Ok(match kind {
        FrameKind::Data => Frame::Data(Data::decode(header, payload)),
        FrameKind::WindowUpdate => Frame::WindowUpdate(WindowUpdate::decode(header, &payload)?),
        FrameKind::MaxStreams => Frame::MaxStreams(MaxStreams::decode(&payload)?),
        FrameKind::Blocked => Frame::Blocked(Blocked::decode(header, &payload)?),
        FrameKind::Reset => Frame::Reset(Reset::decode(header, &payload)),
        FrameKind::Ping => Frame::Ping(Ping::decode(header, &payload)),
        FrameKind::GoAway => Frame::GoAway(GoAway::decode(payload)?),
        FrameKind::Settings => Frame::Settings(Settings::decode(header, &payload)?),
        FrameKind::PriorityUpdate => {
            Frame::PriorityUpdate(PriorityUpdate::decode(header, &payload)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ErrorCode, StreamId};
    use bytes::Bytes;

    fn decode_all(bytes: &[u8], max: u32) -> Result<Vec<Decoded>, FrameError> {
        let mut decoder = FrameDecoder::new(max);
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(d) = decoder.decode_next(&mut src)? {
            out.push(d);
        }
        Ok(out)
    }

    #[test]
    fn oversize_length_fails_before_any_payload_arrives() {
        let header = Header {
            len: 1025,
            kind: 0,
            flags: 0,
            stream: StreamId::new(1).unwrap(),
        };
        let mut src = BytesMut::from(&header.encode()[..]);
        let err = FrameDecoder::new(1024).decode_next(&mut src).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 1025,
                max: 1024
            }
        );
        assert_eq!(err.code(), ErrorCode::FRAME_SIZE_ERROR);
        assert!(
            src.capacity() < 1024,
            "no room reserved for a refused payload"
        );
    }

    #[test]
    fn missing_counts_the_rest_of_the_frame_in_progress() {
        let header = Header {
            len: 1000,
            kind: 0,
            flags: 0,
            stream: StreamId::new(1).unwrap(),
        };
        let encoded = header.encode();
        let mut decoder = FrameDecoder::new(1024);
        let mut src = BytesMut::from(&encoded[..4]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        assert_eq!(decoder.missing(src.len()), HEADER_LEN - 4);
        assert_eq!(src.capacity(), 4, "the decoder allocates nothing");
        src.extend_from_slice(&encoded[4..]);
        src.extend_from_slice(&[0; 300]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        assert_eq!(decoder.missing(src.len()), 700, "the payload's rest");
        src.extend_from_slice(&[0; 700]);
        assert!(matches!(decoder.decode_next(&mut src), Ok(Some(_))));
        assert_eq!(decoder.missing(src.len()), HEADER_LEN);
    }

    #[test]
    fn unknown_types_are_skipped_without_buffering() {
        let header = Header {
            len: 1000,
            kind: 0x42,
            flags: 0xff,
            stream: StreamId::new(9).unwrap(),
        };
        let mut decoder = FrameDecoder::new(1024);
        let mut src = BytesMut::from(&header.encode()[..]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        for _ in 0..999 {
            src.extend_from_slice(&[7]);
            assert_eq!(decoder.decode_next(&mut src), Ok(None));
            assert!(src.is_empty(), "skipped bytes are consumed as they arrive");
        }
        src.extend_from_slice(&[7]);
        assert_eq!(
            decoder.decode_next(&mut src),
            Ok(Some(Decoded::Ignored(header)))
        );
    }

    #[test]
    fn data_payload_is_split_off_not_copied() {
        let frame = Frame::Data(Data {
            stream: StreamId::new(3).unwrap(),
            fin: true,
            payload: Bytes::from_static(b"hello"),
        });
        let decoded = decode_all(&frame.to_bytes(), 16384).unwrap();
        assert_eq!(decoded, vec![Decoded::Frame(frame)]);
    }

    #[test]
    fn a_data_payload_can_be_taken_in_parts_and_read_around_the_decoder() {
        let id = StreamId::new(5).unwrap();
        let payload: Vec<u8> = (0..100u8).collect();
        let frame = Frame::Data(Data {
            stream: id,
            fin: true,
            payload: Bytes::from(payload.clone()),
        });
        let wire = frame.to_bytes();
        let mut decoder = FrameDecoder::new(1024);
        assert_eq!(decoder.data_in_progress(), None);

        // Header and 30 payload bytes: the 30 come out as a part, no FIN.
        let mut src = BytesMut::from(&wire[..HEADER_LEN + 30]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        assert_eq!(decoder.data_in_progress(), Some((id, 100)));
        let part = decoder.take_data_part(&mut src).unwrap();
        assert_eq!((part.stream, part.fin), (id, false));
        assert_eq!(&part.payload[..], &payload[..30]);
        assert!(src.is_empty());
        assert_eq!(decoder.data_in_progress(), Some((id, 70)));
        assert_eq!(decoder.take_data_part(&mut src), None, "nothing to take");

        // 50 bytes read elsewhere, then the last 20 through the buffer.
        assert_eq!(decoder.consume_data_payload(50), None);
        assert_eq!(decoder.data_in_progress(), Some((id, 20)));
        let mut src = BytesMut::from(&wire[HEADER_LEN + 80..]);
        assert_eq!(
            decoder.take_data_part(&mut src),
            None,
            "the whole rest is a frame"
        );
        let rest = decoder.decode_next(&mut src).unwrap().unwrap();
        let Decoded::Frame(Frame::Data(rest)) = rest else {
            panic!("expected DATA, got {rest:?}");
        };
        assert!(rest.fin, "the frame's FIN comes with its last bytes");
        assert_eq!(&rest.payload[..], &payload[80..]);
        assert_eq!(decoder.data_in_progress(), None);

        // Completed around the buffer, the frame's FIN is reported.
        let mut src = BytesMut::from(&wire[..HEADER_LEN]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        assert_eq!(decoder.consume_data_payload(99), None);
        assert_eq!(decoder.consume_data_payload(1), Some(true));
        assert_eq!(decoder.data_in_progress(), None);
    }

    #[test]
    fn only_data_payloads_are_taken_in_parts() {
        let ping = Frame::Ping(crate::frame::Ping {
            ack: false,
            payload: [1; 8],
        });
        let wire = ping.to_bytes();
        let mut decoder = FrameDecoder::new(1024);
        let mut src = BytesMut::from(&wire[..HEADER_LEN + 3]);
        assert_eq!(decoder.decode_next(&mut src), Ok(None));
        assert_eq!(decoder.data_in_progress(), None);
        assert_eq!(decoder.take_data_part(&mut src), None);
        assert_eq!(src.len(), 3);
    }

    #[test]
    fn settings_ack_with_payload_is_a_frame_size_error() {
        let header = Header {
            len: 6,
            kind: FrameKind::Settings as u8,
            flags: Settings::FLAG_ACK,
            stream: StreamId::CONNECTION,
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&[0, 1, 0, 0, 4, 0]);
        let err = decode_all(&bytes, 16384).unwrap_err();
        assert!(matches!(
            err,
            FrameError::BadLength {
                kind: FrameKind::Settings,
                len: 6
            }
        ));
    }
}
