//! The events at every credit transition and the session span, captured
//! with a test subscriber: what a user sees with `tracing` on.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use creditmux::Config;
use creditmux::frame::ErrorCode;
use support::conn::read_available;
use support::pair::Pair;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// One event or span: its message (or span name) and its fields, as text.
#[derive(Clone, Debug, Default)]
struct Captured {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_owned(), text);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }
}

/// A layer that keeps every event, and every span with the fields
/// recorded on it since.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Captured>>>,
    spans: Arc<Mutex<BTreeMap<u64, Captured>>>,
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = Captured {
            message: attrs.metadata().name().to_owned(),
            ..Captured::default()
        };
        attrs.record(&mut span);
        self.spans.lock().unwrap().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(span);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut captured = Captured::default();
        event.record(&mut captured);
        self.events.lock().unwrap().push(captured);
    }
}

impl Recorder {
    /// The messages of the events of `side` about `stream`, in order.
    /// The `side` and `peer` of every `session` span.
    fn session_spans(&self) -> Vec<(Option<String>, Option<String>)> {
        let spans = self.spans.lock().unwrap();
        spans
            .values()
            .filter(|s| s.message == "session")
            .map(|s| {
                (
                    s.field("side").map(str::to_owned),
                    s.field("peer").map(str::to_owned),
                )
            })
            .collect()
    }

    fn stream_events(&self, side: &str, stream: &str) -> Vec<Captured> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.field("side") == Some(side) && e.field("stream") == Some(stream))
            .cloned()
            .collect()
    }
}

/// A stream that runs out of stream credit, probes, and gets credit back:
/// exhausted, BLOCKED, restored with how long it waited, in that order;
/// then a reset with its code, and a GOAWAY each way.
#[test]
fn a_blocked_then_restored_stream_is_traced_in_order() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let (id, blocked) = tracing::subscriber::with_default(subscriber, || {
        let server = Config::builder().stream_window(1024).build().unwrap();
        let mut pair = Pair::new(Config::default(), server);
        pair.connect();
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[1u8; 2048]).unwrap();
        pair.drive();
        let interval = pair.client.config().probe_interval();
        pair.run_for(interval + interval / 2);
        let sid = pair.server.accept().expect("the stream arrived");
        let (got, _) = read_available(&mut pair.server, pair.now, sid);
        assert_eq!(got.len(), 1024);
        pair.drive();
        let blocked = pair.client.stream_stats(id).unwrap().blocked_on_stream;
        assert!(blocked >= interval);
        pair.client.reset(pair.now, id, ErrorCode::CANCEL);
        pair.drive();
        pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
        pair.drive();
        (id, blocked)
    });
    let events = recorder.stream_events("Client", &id.to_string());
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "stream credit exhausted",
            "probe sent (BLOCKED)",
            "stream credit restored",
            "stream reset (both directions)",
        ]
    );
    assert_eq!(events[0].field("limit"), Some("1024"));
    assert_eq!(
        events[2].field("blocked"),
        Some(format!("{blocked:?}").as_str())
    );
    assert_eq!(events[3].field("code"), Some("CANCEL"));
    let server_side = recorder.stream_events("Server", &id.to_string());
    assert!(
        server_side
            .iter()
            .any(|e| e.message == "stream reset by the peer" && e.field("code") == Some("CANCEL")),
        "{server_side:?}"
    );
    let all = recorder.events.lock().unwrap().clone();
    for (side, message) in [("Client", "GOAWAY sent"), ("Server", "GOAWAY received")] {
        assert!(
            all.iter().any(|e| e.message == message
                && e.field("side") == Some(side)
                && e.field("code") == Some("NO_ERROR")),
            "no {message} on the {side} side"
        );
    }
}

/// The connection credit: exhausted, then restored with the time blocked.
#[test]
fn a_connection_credit_wait_is_traced() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    tracing::subscriber::with_default(subscriber, || {
        let mut pair = Pair::with_small_server_windows();
        // Four streams take the whole connection credit; a fifth waits.
        let mut ids = Vec::new();
        for n in 0..5u8 {
            let id = pair.client.open(pair.now).unwrap().unwrap();
            pair.client.write(pair.now, id, &[n; 1024]).unwrap();
            ids.push(id);
        }
        pair.drive();
        assert_eq!(pair.client.stats().send_window, 0);
        // Reading half the connection window returns credit (SPEC §9.5).
        while let Some(sid) = pair.server.accept() {
            read_available(&mut pair.server, pair.now, sid);
        }
        pair.drive();
    });
    let all = recorder.events.lock().unwrap().clone();
    let client: Vec<&str> = all
        .iter()
        .filter(|e| e.field("side") == Some("Client") && e.message.starts_with("connection credit"))
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        client,
        ["connection credit exhausted", "connection credit restored"]
    );
}

/// Every session runs in a `session` span naming its side and, over
/// TCP, the peer's address.
#[tokio::test]
async fn a_tcp_session_has_a_span_with_its_side_and_peer() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let listener = creditmux::tcp::Listener::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(creditmux::tcp::connect(addr, Config::default()), async {
        listener.accept().await.unwrap()
    });
    let client = client.unwrap();
    let (server, client_addr) = server;
    let sessions = recorder.session_spans();
    assert!(
        sessions.contains(&(Some("Client".into()), Some(addr.to_string()))),
        "{sessions:?}"
    );
    assert!(
        sessions.contains(&(Some("Server".into()), Some(client_addr.to_string()))),
        "{sessions:?}"
    );
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    server.closed().await;
}

/// Native QUIC sessions run their control task in the same `session`
/// span, with the side and the peer's address.
#[cfg(feature = "quic")]
#[tokio::test]
async fn a_native_quic_session_has_a_span_with_its_side_and_peer() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let (client, server, client_ep, server_ep) =
        support::sessions::quic::native_pair(Config::default()).await;
    let sessions = recorder.session_spans();
    let server_addr = server_ep.local_addr().unwrap().to_string();
    let client_addr = client_ep.local_addr().unwrap().to_string();
    assert!(
        sessions.contains(&(Some("Client".into()), Some(server_addr.clone()))),
        "{sessions:?}"
    );
    assert!(
        sessions.contains(&(Some("Server".into()), Some(client_addr.clone()))),
        "{sessions:?}"
    );
    client.close(ErrorCode::NO_ERROR).await.unwrap();
    server.closed().await;
}
