//! quinn 0.11 as a peer: QUIC over loopback UDP with a self-signed
//! certificate (TLS 1.3, ring), each stream a QUIC bidirectional stream,
//! default transport settings except the stream limit every
//! implementation gets.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::{
    Connection, ConnectionError, Endpoint, RecvStream, SendStream, TransportConfig, VarInt,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::harness::{BoxFut, Res};
use crate::transports::{BoxStream, Client, Connector, Limits, Listener, Server, s};

const ALPN: &[u8] = b"creditmux-bench";

/// One self-signed certificate for "localhost" per process.
pub fn certificate() -> &'static (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>) {
    static CERT: OnceLock<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a self-signed certificate");
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        (certified.cert.der().clone(), key)
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport(limits: Limits) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams));
    Arc::new(transport)
}

/// A QUIC bidirectional stream as one tokio byte stream.
struct QuicStream {
    send: SendStream,
    recv: RecvStream,
}

impl AsyncRead for QuicStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

struct QuinnServer {
    conn: Connection,
    _endpoint: Endpoint,
}

impl Server for QuinnServer {
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
        Box::pin(async move {
            match self.conn.accept_bi().await {
                Ok((send, recv)) => Ok(Some(Box::new(QuicStream { send, recv }) as BoxStream)),
                Err(ConnectionError::ApplicationClosed(_))
                | Err(ConnectionError::LocallyClosed) => Ok(None),
                Err(e) => Err(s(e)),
            }
        })
    }
}

/// One server endpoint for every connection.
struct QuinnListener {
    endpoint: Endpoint,
}

impl Listener for QuinnListener {
    fn accept(&self) -> BoxFut<'_, Res<Arc<dyn Server>>> {
        Box::pin(async move {
            let incoming = self
                .endpoint
                .accept()
                .await
                .ok_or("quinn endpoint closed")?;
            let conn = incoming.await.map_err(s)?;
            Ok(Arc::new(QuinnServer {
                conn,
                _endpoint: self.endpoint.clone(),
            }) as Arc<dyn Server>)
        })
    }
}

pub async fn listen(limits: Limits, addr_tx: SyncSender<SocketAddr>) -> Res<Arc<dyn Listener>> {
    let (cert, key) = certificate();
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(s)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()))
        .map_err(s)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let mut config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto).map_err(s)?));
    config.transport_config(transport(limits));
    let endpoint = Endpoint::server(config, "127.0.0.1:0".parse().map_err(s)?).map_err(s)?;
    addr_tx.send(endpoint.local_addr().map_err(s)?).map_err(s)?;
    Ok(Arc::new(QuinnListener { endpoint }))
}

struct QuinnClient {
    conn: Connection,
    endpoint: Endpoint,
}

impl Client for QuinnClient {
    fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let (send, recv) = self.conn.open_bi().await.map_err(s)?;
            Ok(Box::new(QuicStream { send, recv }) as BoxStream)
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.conn.close(VarInt::from_u32(0), b"done");
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
                    .await;
        })
    }
}

/// One client endpoint for every connection.
struct QuinnConnector {
    endpoint: Endpoint,
    addr: SocketAddr,
}

impl Connector for QuinnConnector {
    fn connect(&self) -> BoxFut<'_, Res<Arc<dyn Client>>> {
        Box::pin(async move {
            let conn = self
                .endpoint
                .connect(self.addr, "localhost")
                .map_err(s)?
                .await
                .map_err(s)?;
            Ok(Arc::new(QuinnClient {
                conn,
                endpoint: self.endpoint.clone(),
            }) as Arc<dyn Client>)
        })
    }
}

pub async fn connector(limits: Limits, addr: SocketAddr) -> Res<Arc<dyn Connector>> {
    let (cert, _) = certificate();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).map_err(s)?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(s)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let mut config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto).map_err(s)?));
    config.transport_config(transport(limits));
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().map_err(s)?).map_err(s)?;
    endpoint.set_default_client_config(config);
    Ok(Arc::new(QuinnConnector { endpoint, addr }))
}
