//! creditmux: many ordered, reliable byte streams over one connection, with
//! credit-based flow control per stream and per connection.
//!
//! # Layers
//!
//! - [`frame`]: wire types and codec of proto/SPEC.md. Bytes only.
//! - [`flow`]: credit as checked value types.
//! - [`conn`]: the sans-IO connection, the whole protocol as a state
//!   machine with time passed in.
//! - `driver` (feature `runtime`): the tokio task that connects a
//!   [`conn::Connection`] to a transport.
//! - [`Session`] and [`Stream`] (feature `runtime`): the public async API.
//! - Transports, which produce the byte stream a session runs over and know
//!   nothing of frames or credit: [`tcp`] (feature `runtime`), `tls`
//!   (feature `tls`: TLS 1.3 with rustls and the ring provider) and `quic`
//!   (feature `quic`: quinn; creditmux over one QUIC stream, or natively
//!   with one QUIC stream per creditmux stream). All three
//!   features are on by default.
//! - [`message`] (feature `message`, on by default): typed serde messages
//!   over a stream, length-prefixed bincode 2. Optional, above the protocol.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use creditmux::{Config, Session};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let server = tokio::spawn(async move {
//!     let session = Session::server(b, Config::default()).await?;
//!     let mut stream = session.accept().await?.expect("a stream");
//!     let mut request = Vec::new();
//!     stream.read_to_end(&mut request).await?;
//!     stream.write_all(&request).await?;
//!     stream.shutdown().await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let session = Session::client(a, Config::default()).await?;
//! let mut stream = session.open().await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?;
//! let mut echoed = Vec::new();
//! stream.read_to_end(&mut echoed).await?;
//! assert_eq!(echoed, b"hello");
//! # server.await?.map_err(|e| e.to_string())?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "runtime")]
pub mod codec;
pub mod config;
pub mod conn;
#[cfg(feature = "runtime")]
mod driver;
pub mod error;
pub mod flow;
pub mod frame;
#[cfg(feature = "message")]
pub mod message;
#[cfg(feature = "runtime")]
mod session;
pub mod stats;
#[cfg(feature = "runtime")]
mod stream;
#[cfg(feature = "runtime")]
mod transport;

/// The one clock reading of the sans-IO layers' unit tests: they run from
/// a starting instant taken here, outside those layers (which read no
/// clock, checked by CI), and move it by hand.
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}

// The README's code blocks are compiled as doctests.
#[cfg(all(doctest, feature = "runtime"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use config::{Config, ConfigBuilder, ConfigError};
pub use conn::Priority;
pub use error::{ConnectionError, Initiator, OpenError, PriorityRequestError, StreamError};
pub use frame::{ErrorCode, StreamId};
#[cfg(feature = "runtime")]
pub use session::{CloseReport, Session};
pub use stats::{CodeCounts, SessionStats, StreamStats};
#[cfg(feature = "runtime")]
pub use stream::{RecvStream, SendStream, Stream};
#[cfg(feature = "quic")]
pub use transport::quic;
#[cfg(feature = "runtime")]
pub use transport::tcp;
#[cfg(feature = "tls")]
pub use transport::tls;
#[cfg(feature = "runtime")]
pub use transport::{AcceptError, ConnectError};
