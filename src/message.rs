//! Typed messages over a stream (feature `message`, on by default).
//!
//! Turns any byte stream, typically a creditmux [`Stream`] or
//! its [`RecvStream`] / [`SendStream`]
//! halves, into a `Sink` / `Stream` of serde values. This layer is optional
//! and sits above the frame protocol: the peer sees ordinary stream bytes
//! (proto/SPEC.md, Appendix C).
//!
//! # Wire format
//!
//! Every message is a 4-byte length prefix (unsigned, big-endian) followed by
//! exactly that many bytes of body. The body is the value encoded with
//! bincode 2 through serde, with this fixed configuration:
//!
//! - byte order: **big-endian** (network order, like the frame protocol);
//! - integer encoding: **fixed width** (`u32` is 4 bytes, `u64`, `usize`
//!   and all lengths are 8 bytes; enum variant indices are `u32`);
//! - size limit: bincode's allocation limit is set from the body's own
//!   length (the smallest power of four at least as large, minimum 64
//!   bytes), so a hostile body can claim at most four times its length in
//!   string and byte-buffer allocations. Decoding through serde only claims
//!   bytes that a valid body actually carries, so no valid message is
//!   refused by it.
//!
//! A body must decode completely: trailing bytes are an error.
//!
//! # Limits and hostile input
//!
//! [`MessageConfig::max_message_size`] bounds the body. The decoder reads the
//! length prefix first and refuses a prefix above the maximum with
//! [`MessageError::TooLarge`] before it reserves any room for the body, so a
//! peer cannot make it allocate the size it claims. Bodies that do not
//! decode, bodies with trailing bytes and messages cut short by the end of
//! the stream are typed errors too; nothing panics. After an error the
//! reader yields no more messages: the byte stream has lost message
//! boundaries. [`MessageError::reset_code`] gives the code to reset the
//! creditmux stream with.
//!
//! Recursive message types (a tree that contains itself) can nest as deep
//! as the body allows and bincode has no depth limit; keep them out of
//! messages read from untrusted peers, or bound the nesting yourself.
//!
//! # Back-pressure
//!
//! [`MessageWriter`] encodes one message into its buffer and writes it to
//! the underlying stream before it accepts the next one once the buffer
//! holds more than one message's worth ([`MessageConfig::max_message_size`]
//! plus the prefix): on a creditmux [`SendStream`] the
//! write waits for stream and connection credit, so a slow consumer slows
//! the sender instead of growing a buffer. The reader buffers at most one
//! message (plus the read-ahead of one read call).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use creditmux::message::{self, MessageConfig};
//! use creditmux::{Config, Session};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Ping {
//!     seq: u64,
//!     note: String,
//! }
//!
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let server = tokio::spawn(async move {
//!     let session = Session::server(b, Config::default()).await?;
//!     let stream = session.accept().await?.expect("a stream");
//!     let (mut rx, mut tx) = message::framed::<Ping, Ping>(stream, MessageConfig::default());
//!     while let Some(ping) = rx.recv().await {
//!         tx.send(ping?).await?;
//!     }
//!     tx.close().await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let session = Session::client(a, Config::default()).await?;
//! let (mut rx, mut tx) = message::framed::<Ping, Ping>(session.open().await?, MessageConfig::default());
//! tx.send(Ping { seq: 1, note: "hi".into() }).await?;
//! tx.close().await?;
//! let pong = rx.recv().await.expect("a reply")?;
//! assert_eq!(pong, Ping { seq: 1, note: "hi".into() });
//! assert!(rx.recv().await.is_none());
//! # server.await?.map_err(|e| e.to_string())?;
//! # Ok(())
//! # }
//! ```

use std::future::poll_fn;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bincode::config::{BigEndian, Configuration, Fixint, NoLimit};
use bytes::{Buf, BufMut, BytesMut};
use futures_core::Stream as FuturesStream;
use futures_sink::Sink;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

use crate::frame::ErrorCode;
use crate::{RecvStream, SendStream, Stream};

/// Bytes of the length prefix in front of every message body.
pub const PREFIX_LEN: usize = 4;

/// Default [`MessageConfig::max_message_size`]: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 1 << 20;

/// The bincode configuration of the wire format, without the decode limit.
type WireConfig = Configuration<BigEndian, Fixint, NoLimit>;

/// The bincode configuration of the wire format: big-endian, fixed-width
/// integers (the decoder adds a limit, see the [module docs](self)).
pub fn bincode_config() -> WireConfig {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
}

/// Settings of the message layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageConfig {
    /// The largest body, in bytes (the length prefix not counted), that is
    /// sent or accepted. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: u32,
}

impl Default for MessageConfig {
    fn default() -> MessageConfig {
        MessageConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl MessageConfig {
    /// The default configuration.
    pub fn new() -> MessageConfig {
        MessageConfig::default()
    }

    /// Sets [`MessageConfig::max_message_size`].
    pub fn with_max_message_size(mut self, max: u32) -> MessageConfig {
        self.max_message_size = max;
        self
    }
}

/// Errors of the message layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The underlying stream failed (for a creditmux stream, the
    /// [`StreamError`](crate::StreamError) is the `io::Error`'s inner error).
    #[error("message stream: {0}")]
    Io(#[from] io::Error),
    /// A received length prefix exceeds the maximum message size. Nothing
    /// was reserved for the body.
    #[error("incoming message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length the prefix claims.
        len: u32,
        /// [`MessageConfig::max_message_size`].
        max: u32,
    },
    /// A message to send encodes to more than the maximum message size.
    /// Nothing was written.
    #[error("outgoing message of {len} bytes exceeds the maximum of {max}")]
    SendTooLarge {
        /// The encoded body's length.
        len: usize,
        /// [`MessageConfig::max_message_size`].
        max: u32,
    },
    /// A received body is not a valid encoding of the message type.
    #[error("undecodable message body: {0}")]
    Decode(#[source] bincode::error::DecodeError),
    /// A received body decoded to a value before its end.
    #[error("message body has {trailing} trailing bytes after the value")]
    TrailingBytes {
        /// Bytes left over after the value.
        trailing: usize,
    },
    /// The stream ended inside a message (in the prefix or the body).
    #[error("stream ended inside a message: {buffered} of {expected} bytes received")]
    Truncated {
        /// Bytes of the message received (prefix included).
        buffered: usize,
        /// Bytes the message needs (prefix included); [`PREFIX_LEN`] if
        /// the prefix itself was cut.
        expected: usize,
    },
    /// The value could not be encoded (a serde error, for example a map
    /// serialized without a known length).
    #[error("message could not be encoded: {0}")]
    Encode(#[source] bincode::error::EncodeError),
}

impl MessageError {
    /// The code to reset the creditmux stream with after this error, or
    /// `None` when the stream need not (or cannot) be reset: I/O errors
    /// already end the stream and an outgoing message that fails to encode
    /// leaves the stream intact.
    ///
    /// An oversized prefix maps to `FRAME_SIZE_ERROR`; an undecodable,
    /// trailing or truncated body to `PROTOCOL_ERROR`.
    pub fn reset_code(&self) -> Option<ErrorCode> {
        match self {
            MessageError::TooLarge { .. } => Some(ErrorCode::FRAME_SIZE_ERROR),
            MessageError::Decode(_)
            | MessageError::TrailingBytes { .. }
            | MessageError::Truncated { .. } => Some(ErrorCode::PROTOCOL_ERROR),
            _ => None,
        }
    }
}

/// Decodes a body with a bincode limit derived from its length (see the
/// module docs): the smallest power of four >= `body.len()`, at least 64.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<(T, usize), MessageError> {
    macro_rules! tiers {
        ($($shift:literal)*) => {
            $(
                if body.len() <= 1usize << $shift {
                    return bincode::serde::decode_from_slice(
                        body,
                        bincode_config().with_limit::<{ 1usize << $shift }>(),
                    )
                    .map_err(MessageError::Decode);
                }
            )*
        };
    }
    tiers!(6 8 10 12 14 16 18 20 22 24 26 28 30);
    // Bodies above 1 GiB: limit 4 GiB (the prefix is a u32).
    bincode::serde::decode_from_slice(body, bincode_config().with_limit::<{ 1usize << 32 }>())
        .map_err(MessageError::Decode)
}

/// Decodes one message body (without its prefix) as the wire format does:
/// the whole of `body` must be one value.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, MessageError> {
    let (value, used) = decode_body::<T>(body)?;
    if used != body.len() {
        return Err(MessageError::TrailingBytes {
            trailing: body.len() - used,
        });
    }
    Ok(value)
}

/// A `tokio_util::codec` [`Decoder`] and [`Encoder`] of length-prefixed
/// bincode messages: decodes `T`, encodes `T`.
///
/// Usable on its own with `Framed`, `FramedRead` or `FramedWrite`;
/// [`MessageReader`] and [`MessageWriter`] wrap it.
pub struct MessageCodec<T> {
    max: u32,
    _marker: PhantomData<fn() -> T>,
}

impl<T> MessageCodec<T> {
    /// A codec with the limits of `config`.
    pub fn new(config: MessageConfig) -> MessageCodec<T> {
        MessageCodec {
            max: config.max_message_size,
            _marker: PhantomData,
        }
    }

    /// The largest accepted body.
    pub fn max_message_size(&self) -> u32 {
        self.max
    }
}

impl<T> Clone for MessageCodec<T> {
    fn clone(&self) -> Self {
        MessageCodec::new(MessageConfig::default().with_max_message_size(self.max))
    }
}

impl<T> std::fmt::Debug for MessageCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCodec")
            .field("max_message_size", &self.max)
            .finish()
    }
}

impl<T: DeserializeOwned> Decoder for MessageCodec<T> {
    type Item = T;
    type Error = MessageError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, MessageError> {
        if src.len() < PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if len > self.max {
            return Err(MessageError::TooLarge { len, max: self.max });
        }
        let total = PREFIX_LEN + len as usize;
        if src.len() < total {
            // Bounded by max_message_size: the prefix was checked above.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(PREFIX_LEN);
        let body = src.split_to(len as usize);
        decode(&body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<T>, MessageError> {
        if let Some(value) = self.decode(src)? {
            return Ok(Some(value));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let expected = if src.len() < PREFIX_LEN {
            PREFIX_LEN
        } else {
            PREFIX_LEN + u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize
        };
        let buffered = src.len();
        src.clear();
        Err(MessageError::Truncated { buffered, expected })
    }
}

impl<T: Serialize> Encoder<T> for MessageCodec<T> {
    type Error = MessageError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), MessageError> {
        let start = dst.len();
        dst.put_u32(0);
        let mut writer = dst.writer();
        let encoded = bincode::serde::encode_into_std_write(&item, &mut writer, bincode_config());
        let dst = writer.into_inner();
        let len = match encoded {
            Ok(len) => len,
            Err(e) => {
                dst.truncate(start);
                return Err(MessageError::Encode(e));
            }
        };
        if len > self.max as usize {
            dst.truncate(start);
            return Err(MessageError::SendTooLarge { len, max: self.max });
        }
        dst[start..start + PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// Encodes `value` as one whole message (prefix and body), as
/// [`MessageWriter`] would write it.
pub fn encode<T: Serialize>(value: T, config: MessageConfig) -> Result<BytesMut, MessageError> {
    let mut out = BytesMut::new();
    MessageCodec::<T>::new(config).encode(value, &mut out)?;
    Ok(out)
}

/// A `Stream<Item = Result<T, MessageError>>` of messages read from `R`
/// (a [`RecvStream`], a whole [`Stream`] or any `AsyncRead`).
pub struct MessageReader<R, T> {
    inner: FramedRead<R, MessageCodec<T>>,
}

impl<R: AsyncRead, T: DeserializeOwned> MessageReader<R, T> {
    /// Reads messages of type `T` from `io` with the limits of `config`.
    pub fn new(io: R, config: MessageConfig) -> MessageReader<R, T> {
        MessageReader {
            // The read buffer starts small and grows only to hold one
            // message whose prefix has been checked.
            inner: FramedRead::with_capacity(io, MessageCodec::new(config), 8 * 1024),
        }
    }
}

impl<R, T> MessageReader<R, T> {
    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// The underlying reader, mutably (reading from it directly loses
    /// message boundaries).
    pub fn get_mut(&mut self) -> &mut R {
        self.inner.get_mut()
    }

    /// The underlying reader; bytes already buffered are lost.
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }
}

impl<R: AsyncRead + Unpin, T: DeserializeOwned> MessageReader<R, T> {
    /// The next message; `None` at the clean end of the stream (or after an
    /// error was returned).
    pub async fn recv(&mut self) -> Option<Result<T, MessageError>> {
        poll_fn(|cx| Pin::new(&mut self.inner).poll_next(cx)).await
    }
}

impl<R: AsyncRead + Unpin, T: DeserializeOwned> FuturesStream for MessageReader<R, T> {
    type Item = Result<T, MessageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<R: std::fmt::Debug, T> std::fmt::Debug for MessageReader<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader")
            .field("io", self.inner.get_ref())
            .finish_non_exhaustive()
    }
}

/// A `Sink<T, Error = MessageError>` of messages written to `W` (a
/// [`SendStream`], a whole [`Stream`] or any `AsyncWrite`).
pub struct MessageWriter<W, T> {
    inner: FramedWrite<W, MessageCodec<T>>,
}

impl<W: AsyncWrite, T: Serialize> MessageWriter<W, T> {
    /// Writes messages of type `T` to `io` with the limits of `config`.
    pub fn new(io: W, config: MessageConfig) -> MessageWriter<W, T> {
        let mut inner = FramedWrite::new(io, MessageCodec::new(config));
        // Flush before accepting another message once one whole message is
        // buffered: the buffer holds at most two messages, and the writer
        // waits for stream credit like any write.
        inner.set_backpressure_boundary(PREFIX_LEN + config.max_message_size as usize);
        MessageWriter { inner }
    }
}

impl<W, T> MessageWriter<W, T> {
    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    /// The underlying writer, mutably (for example to
    /// [`reset`](SendStream::reset) a [`SendStream`]).
    pub fn get_mut(&mut self) -> &mut W {
        self.inner.get_mut()
    }

    /// The underlying writer; messages not yet flushed are lost.
    pub fn into_inner(self) -> W {
        self.inner.into_inner()
    }
}

impl<W: AsyncWrite + Unpin, T: Serialize> MessageWriter<W, T> {
    /// Encodes `message` and writes it out (waits for credit; returns when
    /// the bytes are handed to the stream).
    pub async fn send(&mut self, message: T) -> Result<(), MessageError> {
        poll_fn(|cx| Pin::new(&mut self.inner).poll_ready(cx)).await?;
        Pin::new(&mut self.inner).start_send(message)?;
        poll_fn(|cx| Pin::new(&mut self.inner).poll_flush(cx)).await
    }

    /// Flushes buffered messages and shuts the writer down (on a creditmux
    /// stream: FIN).
    pub async fn close(&mut self) -> Result<(), MessageError> {
        poll_fn(|cx| Pin::new(&mut self.inner).poll_close(cx)).await
    }
}

impl<W: AsyncWrite + Unpin, T: Serialize> Sink<T> for MessageWriter<W, T> {
    type Error = MessageError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<W: std::fmt::Debug, T> std::fmt::Debug for MessageWriter<W, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("io", self.inner.get_ref())
            .finish_non_exhaustive()
    }
}

/// Splits a creditmux stream into a reader of `In` messages and a writer of
/// `Out` messages, both with the limits of `config`.
pub fn framed<In, Out>(
    stream: Stream,
    config: MessageConfig,
) -> (
    MessageReader<RecvStream, In>,
    MessageWriter<SendStream, Out>,
)
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let (recv, send) = stream.split();
    (
        MessageReader::new(recv, config),
        MessageWriter::new(send, config),
    )
}
