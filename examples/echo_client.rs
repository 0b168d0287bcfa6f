//! creditmux echo client: a load tool that verifies every echoed byte.
//!
//! Without `--connect` it starts an echo server inside the process on an
//! ephemeral loopback port, so one command shows a verified result:
//!
//! ```sh
//! cargo run --release --example echo_client
//! cargo run --release --example echo_client -- --connect 127.0.0.1:7878 --streams 100 --size 8MiB
//! cargo run --release --example echo_client -- --mode rr --message-size 64 --requests 10000 --json
//! ```
//!
//! Exit status: 0 when every byte came back intact, 1 otherwise.

#[path = "support/echo.rs"]
mod echo;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use creditmux::{Config, Session};
use echo::{ClientOptions, Mode, Progress, Summary};
use tokio::net::{TcpListener, TcpStream};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// creditmux over plain TCP.
    Tcp,
    /// creditmux over TLS 1.3 over TCP.
    Tls,
    /// Each creditmux stream is a QUIC stream.
    Quic,
    /// creditmux framing over one QUIC stream.
    QuicFramed,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CliMode {
    /// Each stream sends --size bytes and reads them back.
    Bulk,
    /// Request/response: --message-size bytes, --requests times per stream.
    Rr,
}

/// Send data over creditmux streams, verify every echoed byte, report
/// throughput, latency percentiles and flow-control counters.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Echo server to use; without it, an embedded server on a loopback
    /// port of this process.
    #[arg(long)]
    connect: Option<String>,
    /// Transport to use.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Concurrent streams.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Bytes per stream in bulk mode (suffixes k, M, G: 64k, 8MiB).
    #[arg(long, default_value = "4MiB", value_parser = echo::parse_size)]
    size: u64,
    /// bulk or rr (request/response).
    #[arg(long, value_enum, default_value_t = CliMode::Bulk)]
    mode: CliMode,
    /// Request size in rr mode.
    #[arg(long, default_value = "64", value_parser = echo::parse_size)]
    message_size: u64,
    /// Requests per stream in rr mode.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Run for this long (10s, 500ms, 2m) instead of a fixed amount.
    #[arg(long, value_parser = echo::parse_duration)]
    duration: Option<Duration>,
    /// Limit to this many requests (rr) or streams (bulk) per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Give up connecting after this long.
    #[arg(long, default_value = "10s", value_parser = echo::parse_duration)]
    connect_timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(summary) if summary.verified => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(streams: usize) -> Result<Config, String> {
    let streams = u32::try_from(streams.max(100)).map_err(|_| "too many streams")?;
    Config::builder()
        .max_incoming_streams(streams)
        .accept_backlog(streams)
        .build()
        .map_err(|e| format!("invalid configuration: {e}"))
}

async fn run(args: Args) -> Result<Summary, String> {
    if args.transport != Transport::Tcp {
        return Err(format!(
            "transport {:?} is not available in this build yet; use --transport tcp",
            args.transport
        ));
    }
    if args.streams == 0 {
        return Err("--streams must be at least 1".into());
    }
    let message_size =
        usize::try_from(args.message_size).map_err(|_| "--message-size too large")?;
    if args.mode == CliMode::Rr && message_size == 0 {
        return Err("--message-size must be at least 1".into());
    }
    let config = config(args.streams)?;
    let (addr, embedded) = match &args.connect {
        Some(addr) => (addr.clone(), None),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot start the embedded server: {e}"))?;
            let addr = listener
                .local_addr()
                .map_err(|e| e.to_string())?
                .to_string();
            let server_config = config.clone();
            let task = tokio::spawn(async move {
                if let Ok((socket, _)) = listener.accept().await {
                    let _ = socket.set_nodelay(true);
                    if let Ok(session) = Session::server(socket, server_config).await {
                        echo::serve(session).await;
                    }
                }
            });
            (addr, Some(task))
        }
    };
    let socket = tokio::time::timeout(args.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = socket.set_nodelay(true);
    let session = Session::client(socket, config)
        .await
        .map_err(|e| format!("handshake with {addr} failed: {e}"))?;

    let opts = ClientOptions {
        streams: args.streams,
        size: args.size,
        mode: match args.mode {
            CliMode::Bulk => Mode::Bulk,
            CliMode::Rr => Mode::Rr,
        },
        message_size,
        requests: args.requests,
        duration: args.duration,
        rate: args.rate,
    };
    let progress = Arc::new(Progress::default());
    let bar = (!args.no_progress && !args.json && std::io::stderr().is_terminal()).then(|| {
        let total = match (opts.mode, opts.duration) {
            (_, Some(_)) => None,
            (Mode::Bulk, None) => Some(opts.size * opts.streams as u64),
            (Mode::Rr, None) => {
                Some(opts.requests * opts.message_size as u64 * opts.streams as u64)
            }
        };
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} verified ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let bar2 = bar.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                bar2.set_position(progress.bytes_verified.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        bar
    });
    let summary = echo::run_client(&session, &opts, progress).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let _ = session.close(creditmux::ErrorCode::NO_ERROR).await;
    if let Some(task) = embedded {
        let _ = task.await;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| e.to_string())?
        );
    } else {
        print_summary(&summary, &addr, args.connect.is_none());
    }
    Ok(summary)
}

fn print_summary(s: &Summary, addr: &str, embedded: bool) {
    let verdict = if s.verified { "VERIFIED" } else { "FAILED" };
    let server = if embedded {
        format!("embedded server at {addr}")
    } else {
        addr.to_string()
    };
    println!(
        "{verdict}: {} bytes echoed intact over {} streams ({:?} mode, {server})",
        s.bytes_verified, s.streams, s.mode
    );
    println!(
        "  throughput  {:.1} MiB/s ({} bytes in {:.3} s, {} {})",
        s.throughput_mib_s,
        s.bytes_verified,
        s.elapsed_secs,
        s.operations,
        if s.mode == Mode::Rr {
            "requests"
        } else {
            "streams"
        }
    );
    let l = &s.latency;
    println!(
        "  latency     p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
        l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
    );
    let c = &s.session;
    println!(
        "  session     zero-window events {}  probes sent {} / answered {}  blocked on connection {} ms, on streams {} ms  rtt {}",
        c.zero_window_events,
        c.probes_sent,
        c.probes_answered,
        c.blocked_on_connection_ms,
        c.blocked_on_streams_ms,
        c.rtt_us.map_or("-".to_string(), |r| format!("{r} µs"))
    );
    if s.mismatches > 0 {
        println!("  mismatches  {}", s.mismatches);
    }
    for e in &s.errors {
        println!("  error       {e}");
    }
}
