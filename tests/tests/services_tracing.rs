//! Trace context end to end, under a tracing subscriber: in a test binary of its own, so that
//! no test running without a subscriber shares tracing's global callsite state with it.
#![allow(clippy::unwrap_used)]

mod common;

use rpc_core::{Context, Server, TraceContext};

/// Reports the trace the server saw.
#[rpc_core::service]
pub trait Traced {
    /// The trace id the server saw, as hex; empty when the call carried none.
    async fn trace_id(&self, ctx: &Context) -> String;
}

struct Tracer;

impl Traced for Tracer {
    async fn trace_id(&self, ctx: &Context) -> String {
        tracing::info!("inside the traced handler");
        ctx.trace().map(|t| t.trace_id_hex()).unwrap_or_default()
    }
}

async fn serve() -> rpc_core::Endpoint {
    let server =
        Server::builder().service(TracedServer::new(Tracer)).listen("tcp://127.0.0.1:0").bind();
    let server = server.await.unwrap();
    let endpoint = server.local_endpoint().clone();
    drop(tokio::spawn(server.run()));
    endpoint
}

#[test]
fn the_trace_id_is_a_field_of_the_client_span_and_of_the_server_span() {
    let captured = common::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let root = TraceContext::new_root();
    // A current-thread runtime keeps every task on this thread, under this subscriber.
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let endpoint = serve().await;
            let traced = TracedClient::connect(&endpoint).await.unwrap();
            rpc_core::trace::in_trace(root, traced.trace_id()).await.unwrap();
        });
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let field = format!("trace_id=\"{}\"", root.trace_id_hex());
    let server = log.lines().find(|l| l.contains("inside the traced handler")).expect(&log);
    assert!(server.contains("call{") && server.contains(&field), "{server}");
    let client = log.lines().find(|l| l.contains("rpc.call{") && l.contains("close")).expect(&log);
    assert!(client.contains(&field), "{client}");
}
