//! Typed request/response over creditmux with `creditmux::message`: a
//! server that answers `Request`s with `Response`s on each stream, and a
//! client that opens a stream and makes a few calls. Copy it as a starting
//! point.
//!
//! ```text
//! cargo run --example typed_rpc
//! ```

use creditmux::message::{self, MessageConfig, MessageError};
use creditmux::{Config, Session};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

/// What the client asks.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Add { a: i64, b: i64 },
    Upper(String),
}

/// What the server answers.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Response {
    Sum(i64),
    Text(String),
    Error(String),
}

fn handle(request: Request) -> Response {
    match request {
        Request::Add { a, b } => match a.checked_add(b) {
            Some(sum) => Response::Sum(sum),
            None => Response::Error("overflow".into()),
        },
        Request::Upper(text) => Response::Text(text.to_uppercase()),
    }
}

/// Serves one stream: one response per request until the client finishes.
async fn serve_stream(
    stream: creditmux::Stream,
    config: MessageConfig,
) -> Result<(), MessageError> {
    let (mut requests, mut responses) = message::framed::<Request, Response>(stream, config);
    while let Some(request) = requests.recv().await {
        match request {
            Ok(request) => responses.send(handle(request)).await?,
            Err(e) => {
                // Hostile or broken input: reset the stream with the code
                // the error maps to and stop.
                if let Some(code) = e.reset_code() {
                    responses.get_mut().reset(code);
                }
                return Err(e);
            }
        }
    }
    responses.close().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Small messages only: a peer cannot make us buffer more than 64 KiB
    // for one message.
    let config = MessageConfig::new().with_max_message_size(64 * 1024);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        let session = Session::server(socket, Config::default()).await?;
        while let Some(stream) = session.accept().await? {
            tokio::spawn(async move {
                if let Err(e) = serve_stream(stream, config).await {
                    eprintln!("stream failed: {e}");
                }
            });
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    let session = Session::client(TcpStream::connect(addr).await?, Config::default()).await?;
    let (mut responses, mut requests) =
        message::framed::<Response, Request>(session.open().await?, config);
    for request in [
        Request::Add { a: 40, b: 2 },
        Request::Upper("typed messages".into()),
        Request::Add { a: i64::MAX, b: 1 },
    ] {
        println!("-> {request:?}");
        requests.send(request).await?;
        let response = responses.recv().await.ok_or("server hung up")??;
        println!("<- {response:?}");
    }
    requests.close().await?;
    assert!(responses.recv().await.is_none());
    session.close(creditmux::ErrorCode::NO_ERROR).await?;
    Ok(())
}
