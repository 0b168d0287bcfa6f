//! The errors of connecting and accepting, one vocabulary for every
//! transport: a variant means the same thing over TCP, TLS and QUIC, and
//! the variants of a transport that is not built are not there.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(feature = "tls")]
use super::tls::TlsError;
use crate::error::ConnectionError;

/// Why connecting failed: `tcp::connect`, `tls::connect`, or the QUIC
/// client functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server name is neither a DNS name nor an IP address (TLS,
    /// QUIC).
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    /// Resolving the address or the TCP connect failed (refused,
    /// unreachable, no address resolved, ...).
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The QUIC endpoint would not start a connection: it has no default
    /// client config, the endpoint is stopping, ...
    #[cfg(feature = "quic")]
    #[error("cannot start a QUIC connection: {0}")]
    Start(#[source] quinn::ConnectError),
    /// Connecting and securing the connection did not complete within
    /// the handshake timeout.
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed during the TLS handshake (reset, closed by
    /// the peer, ...).
    #[error("connection lost during the TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// The TLS handshake (over TCP or inside QUIC) failed: a certificate
    /// was rejected (by either side), ALPN did not settle on creditmux's,
    /// or another TLS error.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The QUIC connection failed or was closed before the creditmux
    /// handshake could start.
    #[cfg(feature = "quic")]
    #[error("QUIC connection failed: {0}")]
    Connection(#[source] quinn::ConnectionError),
    /// The connection was established, but the creditmux handshake failed
    /// (the peer is not creditmux, speaks another version, or timed out).
    #[error("creditmux handshake failed: {0}")]
    Handshake(#[source] ConnectionError),
}

/// Why accepting failed: `tcp::Listener::accept`, `tls::Listener::accept`,
/// their `Incoming::handshake`, or the QUIC server functions. Every
/// variant but [`AcceptError::Listener`] is about one connection: the
/// listener or endpoint keeps accepting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// Accepting on the listening socket failed (for example, too many
    /// open files). Nothing was accepted; the listener may work again
    /// later.
    #[error("accept failed: {0}")]
    Listener(#[source] io::Error),
    /// The handshake with `peer` (TLS, or QUIC and its first stream) did
    /// not complete within the handshake timeout.
    #[error("handshake with {peer} timed out")]
    Timeout {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// The connection from `peer` failed during the TLS handshake.
    #[error("connection from {peer} lost during the TLS handshake: {source}")]
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake with `peer` (over TCP or inside QUIC) failed: see
    /// [`TlsError`].
    #[cfg(feature = "tls")]
    #[error("TLS handshake with {peer} failed: {source}")]
    Tls {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: TlsError,
    },
    /// The QUIC connection from `peer` failed or was closed before the
    /// creditmux handshake could start.
    #[cfg(feature = "quic")]
    #[error("QUIC connection from {peer} failed: {source}")]
    Connection {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The connection from `peer` was established, but the creditmux
    /// handshake failed.
    #[error("creditmux handshake with {peer} failed: {source}")]
    Handshake {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: ConnectionError,
    },
}

impl AcceptError {
    /// The peer whose connection failed, if the error is about one
    /// connection rather than the listening socket.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            AcceptError::Listener(_) => None,
            AcceptError::Timeout { peer }
            | AcceptError::Io { peer, .. }
            | AcceptError::Handshake { peer, .. } => Some(*peer),
            #[cfg(feature = "tls")]
            AcceptError::Tls { peer, .. } => Some(*peer),
            #[cfg(feature = "quic")]
            AcceptError::Connection { peer, .. } => Some(*peer),
        }
    }

    /// The TLS failure, if that is what this is.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&TlsError> {
        match self {
            AcceptError::Tls { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ConnectError {
    /// The TLS failure, if that is what this is.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&TlsError> {
        match self {
            ConnectError::Tls(source) => Some(source),
            _ => None,
        }
    }
}
