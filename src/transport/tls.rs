//! creditmux over TLS 1.3 over TCP (rustls via tokio-rustls).
//!
//! [`connect`] dials, runs the TLS handshake and the creditmux client
//! handshake; [`Listener`] does the same on the server side for every
//! connection it accepts. Both sides offer and require the ALPN identifier
//! [`ALPN`] (`creditmux/1`): a peer that negotiates no ALPN or another one
//! is rejected with [`TlsError::Alpn`] before a single creditmux byte is
//! exchanged.
//!
//! # Configuration
//!
//! The helpers take the application's own `Arc<rustls::ClientConfig>` /
//! `Arc<rustls::ServerConfig>`, so trust roots, client authentication,
//! key logging and session resumption stay under its control. The only
//! change made is putting [`ALPN`] first in `alpn_protocols` (dropping
//! native QUIC's `creditmux-native/1` if present), on a copy and only when
//! needed; the caller's config is not modified. [`client_config`] and
//! [`server_config`] build configs for the common case.
//!
//! # Crypto provider
//!
//! Configs built here use [`crypto_provider`]: rustls' **ring** provider,
//! named explicitly rather than taken from the process default. ring was
//! chosen over aws-lc-rs (rustls' default) because it builds with a plain
//! C compiler in a fraction of the time (aws-lc-rs compiles the whole
//! AWS-LC library: 2 min 4 s against 43 s for a clean debug build of
//! rustls on a 2-core machine), and it has every cipher suite TLS 1.3 and
//! QUIC need. Choosing it explicitly also means a process where another
//! crate enables aws-lc-rs, so no single default exists, still works.
//! Applications that need FIPS or post-quantum key exchange build their
//! config with aws-lc-rs and pass it in.
//!
//! # Certificates for tests
//!
//! The library ships no certificate generator. The tests and the echo
//! tools generate a self-signed certificate with `rcgen` (a
//! dev-dependency); `examples/support/certs.rs` shows how in about fifty
//! lines.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::config::Config;
use crate::conn::Side;
use crate::session::Session;
use crate::tcp;

pub use super::error::{AcceptError, ConnectError};

/// The ALPN protocol identifier of creditmux wire protocol version 1.
pub const ALPN: &[u8] = b"creditmux/1";

/// The crypto provider the configs built here use: rustls' ring provider.
/// See the [module docs](self#crypto-provider) for why.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client config with the ring provider, trusting `roots`,
/// without client authentication, offering [`ALPN`].
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(config)
}

/// A TLS 1.3 server config with the ring provider, presenting
/// `cert_chain` (leaf first) and `key`, without client authentication,
/// accepting only [`ALPN`].
///
/// Fails if the key is malformed, of an unsupported type, or does not
/// match the leaf certificate.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// `config` with `alpn` offered first, copied only when that changes it.
/// Any other creditmux identifier is dropped: one connection runs one mode.
pub(crate) fn client_with_alpn(config: Arc<ClientConfig>, alpn: &[u8]) -> Arc<ClientConfig> {
    if config.alpn_protocols.first().is_some_and(|p| p == alpn)
        && !config.alpn_protocols[1..].iter().any(|p| is_creditmux(p))
    {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.retain(|p| !is_creditmux(p));
    config.alpn_protocols.insert(0, alpn.to_vec());
    Arc::new(config)
}

/// `config` with `alpn` preferred, copied only when that changes it. Any
/// other creditmux identifier is dropped, as for the client.
pub(crate) fn server_with_alpn(config: Arc<ServerConfig>, alpn: &[u8]) -> Arc<ServerConfig> {
    if config.alpn_protocols.first().is_some_and(|p| p == alpn)
        && !config.alpn_protocols[1..].iter().any(|p| is_creditmux(p))
    {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.retain(|p| !is_creditmux(p));
    config.alpn_protocols.insert(0, alpn.to_vec());
    Arc::new(config)
}

/// Whether `protocol` is one of creditmux's ALPN identifiers.
fn is_creditmux(protocol: &[u8]) -> bool {
    protocol.starts_with(b"creditmux")
}

/// `Err(Alpn)` unless the handshake settled on `alpn`.
pub(crate) fn check_alpn(negotiated: Option<&[u8]>, alpn: &[u8]) -> Result<(), TlsError> {
    match negotiated {
        Some(p) if p == alpn => Ok(()),
        other => Err(TlsError::Alpn {
            negotiated: other.map(<[u8]>::to_vec),
        }),
    }
}

/// What went wrong in the TLS handshake, over TCP or inside QUIC.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// This side did not accept the peer's certificate: issued by a CA
    /// this side does not trust, not valid for the server name, expired,
    /// malformed, ... `error` is rustls' verdict over TCP; QUIC reports
    /// only `reason`.
    #[error("the peer's certificate was rejected: {reason}")]
    InvalidPeerCertificate {
        /// Why, in words.
        reason: String,
        /// rustls' typed reason, when the transport reports it.
        error: Option<CertificateError>,
    },
    /// The peer did not accept this side's certificate and aborted the
    /// handshake with `alert` (usually `UnknownCA` or `BadCertificate`).
    #[error("the peer rejected this side's certificate (TLS alert {alert:?})")]
    CertificateRejectedByPeer {
        /// The TLS alert the peer sent.
        alert: AlertDescription,
    },
    /// The peer does not speak creditmux in this mode: the handshake
    /// settled on no ALPN protocol, or on another one than the mode
    /// requires (`creditmux/1` over TLS and framed QUIC,
    /// `creditmux-native/1` for native QUIC). `negotiated` is the protocol
    /// agreed on, if any.
    #[error("the peer does not speak this creditmux mode: ALPN negotiated {}", .negotiated.as_deref().map_or_else(|| "nothing".to_string(), |p| format!("{:?}", String::from_utf8_lossy(p))))]
    Alpn {
        /// The protocol the handshake agreed on; `None` for none.
        negotiated: Option<Vec<u8>>,
    },
    /// Another TLS failure: a protocol violation, an unexpected alert, no
    /// common cipher suite or version, ...
    #[error("TLS handshake failed: {reason}")]
    Other {
        /// What rustls (or the peer's alert) said.
        reason: String,
    },
}

impl TlsError {
    /// Classifies a rustls error of this side's handshake.
    pub(crate) fn from_rustls(err: rustls::Error) -> TlsError {
        match err {
            rustls::Error::InvalidCertificate(error) => TlsError::InvalidPeerCertificate {
                reason: error.to_string(),
                error: Some(error),
            },
            rustls::Error::NoApplicationProtocol => TlsError::Alpn { negotiated: None },
            rustls::Error::AlertReceived(alert) => TlsError::from_peer_alert(alert),
            other => TlsError::Other {
                reason: other.to_string(),
            },
        }
    }

    /// Classifies a TLS alert that the peer sent to abort the handshake.
    pub(crate) fn from_peer_alert(alert: AlertDescription) -> TlsError {
        use AlertDescription as A;
        match alert {
            A::NoApplicationProtocol => TlsError::Alpn { negotiated: None },
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::BadCertificateStatusResponse => TlsError::CertificateRejectedByPeer { alert },
            other => TlsError::Other {
                reason: format!("the peer sent TLS alert {other:?}"),
            },
        }
    }
}

/// A failed TLS handshake as tokio-rustls reports it: an I/O error that
/// may carry a rustls error.
enum HandshakeFailure {
    Io(io::Error),
    Tls(TlsError),
}

fn classify(err: io::Error) -> HandshakeFailure {
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        let inner = err.into_inner().expect("checked above");
        let rustls_err = inner.downcast::<rustls::Error>().expect("checked above");
        return HandshakeFailure::Tls(TlsError::from_rustls(*rustls_err));
    }
    HandshakeFailure::Io(err)
}

/// Connects to `addr` over TCP (with `TCP_NODELAY`), runs the TLS
/// handshake for `server_name` with `client_config` (plus [`ALPN`] if it
/// is missing), checks that ALPN settled on `creditmux/1`, then runs the
/// creditmux client handshake.
///
/// The TCP connect and TLS handshake together are bounded by
/// [`Config::handshake_timeout`], the creditmux handshake after them by the
/// same timeout again.
pub async fn connect(
    addr: impl ToSocketAddrs,
    server_name: &str,
    client_config: Arc<ClientConfig>,
    config: Config,
) -> Result<Session, ConnectError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| ConnectError::InvalidServerName(server_name.to_owned()))?;
    let connector = TlsConnector::from(client_with_alpn(client_config, ALPN));
    let timeout = config.handshake_timeout();
    let tls = tokio::time::timeout(timeout, async {
        let socket = TcpStream::connect(addr)
            .await
            .map_err(ConnectError::Connect)?;
        let _ = socket.set_nodelay(true);
        connector
            .connect(name, socket)
            .await
            .map_err(|err| match classify(err) {
                HandshakeFailure::Io(err) => ConnectError::Io(err),
                HandshakeFailure::Tls(err) => ConnectError::Tls(err),
            })
    })
    .await
    .map_err(|_| ConnectError::Timeout(timeout))??;
    check_alpn(tls.get_ref().1.alpn_protocol(), ALPN)?;
    let peer = tls.get_ref().0.peer_addr().ok();
    Session::start(TlsStream::Client(tls), config, Side::Client, peer)
        .await
        .map_err(ConnectError::Handshake)
}

/// Accepts TCP connections and runs the TLS and creditmux server
/// handshakes on each: a [`tcp::Listener`](crate::tcp::Listener) with a TLS
/// handshake in front of the creditmux one.
pub struct Listener {
    tcp: tcp::Listener,
    acceptor: TlsAcceptor,
}

impl Listener {
    /// Binds a TCP listener to `addr`. Every connection is secured with
    /// `server_config` (plus [`ALPN`] if it is missing) and its session
    /// uses `config`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        server_config: Arc<ServerConfig>,
        config: Config,
    ) -> io::Result<Listener> {
        Ok(Listener::from_tcp(
            TcpListener::bind(addr).await?,
            server_config,
            config,
        ))
    }

    /// Wraps a TCP listener that is already bound.
    pub fn from_tcp(
        listener: TcpListener,
        server_config: Arc<ServerConfig>,
        config: Config,
    ) -> Listener {
        Listener {
            tcp: tcp::Listener::from_tcp(listener, config),
            acceptor: TlsAcceptor::from(server_with_alpn(server_config, ALPN)),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Waits for the next connection and runs its TLS and creditmux
    /// handshakes; returns the session and the peer's address.
    ///
    /// The handshakes run inline, so a slow peer delays the next accept by
    /// up to twice [`Config::handshake_timeout`]. A server that must not
    /// let one client hold up others uses [`Listener::accept_incoming`] and
    /// runs each [`Incoming::handshake`] on its own task.
    ///
    /// An `Err` concerns either the listening socket
    /// ([`AcceptError::Listener`]) or one connection (every other
    /// variant); in both cases the listener can be used again.
    pub async fn accept(&self) -> Result<(Session, SocketAddr), AcceptError> {
        let incoming = self
            .accept_incoming()
            .await
            .map_err(AcceptError::Listener)?;
        let peer = incoming.peer_addr();
        Ok((incoming.handshake().await?, peer))
    }

    /// Waits for the next TCP connection without running any handshake.
    pub async fn accept_incoming(&self) -> io::Result<Incoming> {
        Ok(Incoming {
            tcp: self.tcp.accept_incoming().await?,
            acceptor: self.acceptor.clone(),
        })
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// An accepted TCP connection whose TLS and creditmux handshakes have not
/// run yet.
pub struct Incoming {
    tcp: tcp::Incoming,
    acceptor: TlsAcceptor,
}

impl Incoming {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.tcp.peer_addr()
    }

    /// Runs the TLS handshake (bounded by [`Config::handshake_timeout`]),
    /// checks ALPN, then runs the creditmux server handshake (bounded by
    /// the same timeout again).
    pub fn handshake(self) -> impl Future<Output = Result<Session, AcceptError>> + Send + 'static {
        let Incoming { tcp, acceptor } = self;
        let (socket, peer, config) = tcp.into_parts();
        async move {
            let tls = tokio::time::timeout(config.handshake_timeout(), acceptor.accept(socket))
                .await
                .map_err(|_| AcceptError::Timeout { peer })?
                .map_err(|err| match classify(err) {
                    HandshakeFailure::Io(source) => AcceptError::Io { peer, source },
                    HandshakeFailure::Tls(source) => AcceptError::Tls { peer, source },
                })?;
            check_alpn(tls.get_ref().1.alpn_protocol(), ALPN)
                .map_err(|source| AcceptError::Tls { peer, source })?;
            Session::start(TlsStream::Server(tls), config, Side::Server, Some(peer))
                .await
                .map_err(|source| AcceptError::Handshake { peer, source })
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("peer", &self.tcp.peer_addr())
            .finish_non_exhaustive()
    }
}
