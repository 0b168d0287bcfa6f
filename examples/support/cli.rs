//! Command-line pieces both echo tools share.

/// Transports the echo tools speak.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// creditmux over plain TCP.
    Tcp,
    /// creditmux over TLS 1.3 over TCP.
    Tls,
    /// Each creditmux stream is a QUIC stream.
    Quic,
    /// creditmux framing over one QUIC stream.
    QuicFramed,
}

/// Logs to stderr, colored only on a terminal, at `default_level` unless
/// RUST_LOG says otherwise.
pub fn init_logging(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
