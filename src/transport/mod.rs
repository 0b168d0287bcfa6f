//! Transports: what turns an address into the byte stream a
//! [`Session`](crate::Session) runs over.
//!
//! Each module here produces an `AsyncRead + AsyncWrite` connection (or,
//! for QUIC, a stream of one) and hands it to `Session::client` /
//! `Session::server`. None of them knows about frames or credit; they only
//! connect, secure, and check that the peer speaks creditmux (ALPN).
//!
//! - [`tcp`] (feature `runtime`): plain TCP with `TCP_NODELAY`.
//! - [`tls`] (feature `tls`): TLS 1.3 over TCP with rustls and the ring
//!   provider, ALPN `creditmux/1`.
//! - [`quic`] (feature `quic`): QUIC with quinn, in two modes: framed (the
//!   creditmux framing over one QUIC bidirectional stream, ALPN
//!   `creditmux/1`) and native (one QUIC stream per creditmux stream, QUIC
//!   flow control as the credit, ALPN `creditmux-native/1`). Native mode's
//!   protocol rules are the core's `conn::control` plane, driven by the
//!   quinn glue in `driver/native/`.
//!
//! All of them report failures in one vocabulary, [`ConnectError`] and
//! [`AcceptError`].

mod error;
#[cfg(feature = "quic")]
pub mod quic;
pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;

pub use error::{AcceptError, ConnectError};
