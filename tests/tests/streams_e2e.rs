//! Streams within calls end to end over real sockets: server, client and bidirectional
//! streams, their lifecycle, and many of them interleaved with unary calls on one connection.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{unique_abstract, within};
use futures::StreamExt;
use rpc_core::{Code, Context, Error, Server, ServerConfig, Streaming};

#[rpc_core::service]
pub trait Streams {
    /// 0, 1, … below `n`.
    async fn count(&self, n: u64) -> rpc_core::Streaming<u64>;
    /// The sum of the client's items.
    async fn total(&self, items: rpc_core::Streaming<i64>) -> i64;
    /// The running total of the client's items, from `start`.
    async fn running(&self, start: i64, items: Streaming<i64>) -> Streaming<i64>;
    /// `n` items of `size` bytes.
    async fn blobs(&self, n: u64, size: usize) -> Streaming<Vec<u8>>;
    /// Items 0..n, then an application error.
    async fn fails_after(&self, n: u64) -> Streaming<Result<u64, String>>;
    /// One item, then waits until the call is abandoned.
    async fn hang(&self, ctx: &Context) -> Streaming<u64>;
    /// Items through a channel, then drops the sender.
    async fn via_channel(&self, n: u64) -> Streaming<u64>;
    /// A plain call.
    async fn echo(&self, x: u64) -> u64;
}

#[derive(Default)]
struct Impl {
    /// Set when `hang`'s context token fires.
    abandoned: Arc<AtomicBool>,
    /// Items `blobs` produced so far.
    produced: Arc<AtomicU64>,
}

impl Streams for Impl {
    async fn count(&self, n: u64) -> Streaming<u64> {
        Streaming::from_iter(0..n)
    }

    async fn total(&self, mut items: Streaming<i64>) -> i64 {
        let mut total = 0;
        while let Some(Ok(item)) = items.next().await {
            total += item;
        }
        total
    }

    async fn running(&self, start: i64, items: Streaming<i64>) -> Streaming<i64> {
        let totals = items.scan(start, |total, item| {
            *total += item.unwrap_or(0);
            futures::future::ready(Some(*total))
        });
        Streaming::from_stream(totals)
    }

    async fn blobs(&self, n: u64, size: usize) -> Streaming<Vec<u8>> {
        let produced = self.produced.clone();
        Streaming::from_iter((0..n).map(move |i| {
            produced.fetch_add(1, Ordering::SeqCst);
            vec![i as u8; size]
        }))
    }

    async fn fails_after(&self, n: u64) -> Streaming<Result<u64, String>> {
        Streaming::from_iter((0..n).map(Ok).chain([Err("boom".to_owned())]))
    }

    async fn hang(&self, ctx: &Context) -> Streaming<u64> {
        let (tx, stream) = Streaming::channel(1);
        let (ctx, abandoned) = (ctx.clone(), self.abandoned.clone());
        tokio::spawn(async move {
            let _ = tx.send(7).await;
            ctx.cancelled().await;
            abandoned.store(true, Ordering::SeqCst);
            drop(tx);
        });
        stream
    }

    async fn via_channel(&self, n: u64) -> Streaming<u64> {
        let (tx, stream) = Streaming::channel(4);
        tokio::spawn(async move {
            for i in 0..n {
                if tx.send(i).await.is_err() {
                    return;
                }
            }
        });
        stream
    }

    async fn echo(&self, x: u64) -> u64 {
        x
    }
}

struct Served {
    client: StreamsClient,
    abandoned: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

async fn serve(endpoint: &str, config: ServerConfig) -> Served {
    let server = Server::bind_with(endpoint, config).await.expect("bind");
    let endpoint = server.local_endpoint().clone();
    let service = Impl::default();
    let (abandoned, produced) = (service.abandoned.clone(), service.produced.clone());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(server.serve_with_shutdown(StreamsServer::new(service), signal));
    let client = StreamsClient::connect(endpoint).await.expect("connect");
    Served { client, abandoned, produced, shutdown: Some(shutdown), task }
}

async fn collect<T: serde::de::DeserializeOwned>(mut s: Streaming<T>) -> Vec<Result<T, Error>> {
    let mut items = Vec::new();
    while let Some(item) = s.next().await {
        items.push(item);
    }
    items
}

fn endpoints() -> [String; 2] {
    ["tcp://127.0.0.1:0".to_owned(), unique_abstract("streams")]
}

#[tokio::test]
async fn a_server_stream_delivers_every_item_in_order_then_ends_over_tcp_and_unix() {
    for endpoint in endpoints() {
        let served = serve(&endpoint, ServerConfig::default()).await;
        let items = within(collect(served.client.count(1000).await.expect("call"))).await;
        let items: Vec<u64> = items.into_iter().map(|i| i.expect("an item")).collect();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
        let empty = within(collect(served.client.count(0).await.expect("call"))).await;
        assert!(empty.is_empty());
    }
}

#[tokio::test]
async fn a_client_stream_is_summed_by_the_handler() {
    for endpoint in endpoints() {
        let served = serve(&endpoint, ServerConfig::default()).await;
        let total = within(served.client.total(futures::stream::iter(1..=1000))).await;
        assert_eq!(total.expect("call"), 500_500);
        let none = within(served.client.total(futures::stream::iter(Vec::new()))).await;
        assert_eq!(none.expect("call"), 0);
    }
}

#[tokio::test]
async fn a_bidirectional_stream_answers_each_item() {
    for endpoint in endpoints() {
        let served = serve(&endpoint, ServerConfig::default()).await;
        let totals = served.client.running(10, futures::stream::iter([1, 2, 3])).await;
        let totals = within(collect(totals.expect("call"))).await;
        let totals: Vec<i64> = totals.into_iter().map(|t| t.expect("an item")).collect();
        assert_eq!(totals, [11, 13, 16]);
    }
}
