//! Public error types: who ended what, and why.

use std::io;

use crate::frame::{ErrorCode, FrameError, PrefaceError};

/// Which side ended a stream or the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This side.
    Local,
    /// The peer.
    Remote,
}

/// Why a connection ended. Cloned into every stream that was open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// This side closed the connection (`close`, or every `Session` dropped).
    #[error("connection closed locally ({code})")]
    LocallyClosed {
        /// Code sent in the GOAWAY.
        code: ErrorCode,
    },
    /// The peer sent GOAWAY with an error, or its graceful shutdown completed.
    #[error("connection closed by the peer ({code}{})", if .debug.is_empty() { String::new() } else { format!(": {}", .debug) })]
    ClosedByPeer {
        /// Code from the peer's GOAWAY.
        code: ErrorCode,
        /// The GOAWAY's debug data, lossily decoded as UTF-8 and truncated to 1 KiB.
        debug: String,
    },
    /// The peer broke the protocol; this side sent GOAWAY with `code`.
    #[error("protocol violation by the peer ({code}): {reason}")]
    ProtocolViolation {
        /// Code sent in the GOAWAY.
        code: ErrorCode,
        /// What the peer did.
        reason: String,
    },
    /// The peer sent bytes that are not a frame; this side sent GOAWAY with
    /// `FrameError::code`.
    #[error("invalid frame from the peer: {0}")]
    Frame(#[from] FrameError),
    /// The peer's preface was not acceptable.
    #[error(transparent)]
    Preface(#[from] PrefaceError),
    /// The handshake did not complete within the configured timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing arrived from the peer within the keepalive timeout.
    #[error("peer is unresponsive: nothing received within the idle timeout")]
    IdleTimeout,
    /// A write to the transport made no progress within the write timeout.
    #[error("transport write made no progress within the write timeout")]
    WriteTimeout,
    /// The transport reached end of file without a GOAWAY.
    #[error("the transport closed without a GOAWAY")]
    TransportClosed,
    /// The transport failed.
    #[error("transport error: {message}")]
    Io {
        /// The I/O error's kind.
        kind: io::ErrorKind,
        /// The I/O error's message.
        message: String,
    },
}

impl ConnectionError {
    /// True for the end of a graceful shutdown (a GOAWAY with NO_ERROR from
    /// either side), as opposed to a failure.
    pub fn is_graceful(&self) -> bool {
        matches!(
            self,
            ConnectionError::LocallyClosed {
                code: ErrorCode::NO_ERROR
            } | ConnectionError::ClosedByPeer {
                code: ErrorCode::NO_ERROR,
                ..
            }
        )
    }

    /// Wraps an I/O error of the transport.
    pub fn io(err: &io::Error) -> ConnectionError {
        ConnectionError::Io {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// Why a stream operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream was reset.
    #[error("stream reset by the {} side ({code})", match .initiator { Initiator::Local => "local", Initiator::Remote => "remote" })]
    Reset {
        /// The RESET's code.
        code: ErrorCode,
        /// Who sent it.
        initiator: Initiator,
    },
    /// The write side was already finished (`shutdown`).
    #[error("stream write side already finished")]
    Finished,
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] ConnectionError),
}

impl From<StreamError> for io::Error {
    fn from(err: StreamError) -> io::Error {
        let kind = match &err {
            StreamError::Reset { .. } => io::ErrorKind::ConnectionReset,
            StreamError::Finished => io::ErrorKind::BrokenPipe,
            StreamError::ConnectionLost(ConnectionError::Io { kind, .. }) => *kind,
            StreamError::ConnectionLost(ConnectionError::IdleTimeout)
            | StreamError::ConnectionLost(ConnectionError::WriteTimeout)
            | StreamError::ConnectionLost(ConnectionError::HandshakeTimeout) => {
                io::ErrorKind::TimedOut
            }
            StreamError::ConnectionLost(_) => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, err)
    }
}

/// Why a stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A GOAWAY was sent or received: no new streams on this connection.
    #[error("the connection is shutting down; open a new one")]
    GoingAway,
    /// Every stream id of this side was used.
    #[error("stream ids exhausted; open a new connection")]
    IdsExhausted,
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] ConnectionError),
}

/// Why a request for the peer's send priority of a stream
/// ([`Stream::request_priority`](crate::Stream::request_priority), SPEC
/// §6.10) was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriorityRequestError {
    /// The peer did not announce PRIORITY_UPDATES: it would ignore the
    /// request.
    #[error("the peer takes no priority requests")]
    Unsupported,
    /// The peer sends nothing more on this stream (it finished or reset
    /// its direction, or the stream or the connection ended).
    #[error("the peer sends nothing more on this stream")]
    Finished,
}
