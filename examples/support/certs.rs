//! Certificates for the echo tools and the transport tests: a self-signed
//! one generated on start for loopback use (rcgen, a dev-dependency), or
//! PEM files for real ones. The rustls configs come from
//! `creditmux::tls::{client_config, server_config}`: TLS 1.3, the ring
//! provider, ALPN `creditmux/1`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use creditmux::tls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A certificate, its private key, and the chain to present.
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The leaf as PEM, for a generated certificate (a client's `--ca`).
    pub cert_pem: Option<String>,
}

impl Identity {
    /// A fresh self-signed certificate for `localhost`, `127.0.0.1` and
    /// `::1`: good for loopback only, and trusted only by a client that
    /// is given it (see [`Identity::roots`]).
    pub fn self_signed() -> Identity {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut params = rcgen::CertificateParams::new(names).expect("valid names");
        // A name of its own, so two generated certificates are two
        // different issuers (rcgen's default name is the same for all).
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("creditmux self-signed {unique:x}"),
        );
        let signing_key = rcgen::KeyPair::generate().expect("rcgen generates a key");
        let cert = params
            .self_signed(&signing_key)
            .expect("rcgen signs a certificate");
        let generated = rcgen::CertifiedKey { cert, signing_key };
        Identity {
            chain: vec![generated.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                generated.signing_key.serialize_der(),
            )),
            cert_pem: Some(generated.cert.pem()),
        }
    }

    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
        Ok(Identity {
            chain,
            key,
            cert_pem: None,
        })
    }

    /// A root store that trusts exactly this (self-signed) certificate.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.chain[0].clone())
            .expect("a certificate rcgen made is a valid trust anchor");
        roots
    }

    /// A server config presenting this identity.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        tls::server_config(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("unusable certificate or key: {e}"))
    }

    /// A client config that trusts this identity and nothing else.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        tls::client_config(self.roots())
    }
}

/// A client config trusting the PEM certificates in `ca`.
pub fn client_config_from_pem(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", ca.display()))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no usable CA certificate in {}", ca.display()));
    }
    Ok(tls::client_config(roots))
}
