//! Streams within calls end to end over real sockets: server, client and bidirectional
//! streams, their lifecycle, and many of them interleaved with unary calls on one connection.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{unique_abstract, within};
use futures::StreamExt;
use rpc_core::{Code, Context, Error, Server, ServerConfig, StreamWindow, Streaming};

/// One method of each kind, and some that misbehave on purpose.
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
    /// Waits `wait_ms` before it reads anything, then sums the items.
    async fn slow_total(&self, wait_ms: u64, items: Streaming<i64>) -> i64;
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

    async fn slow_total(&self, wait_ms: u64, items: Streaming<i64>) -> i64 {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        self.total(items).await
    }

    async fn echo(&self, x: u64) -> u64 {
        x
    }
}

struct Served {
    client: StreamsClient,
    abandoned: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

async fn serve(endpoint: &str, config: ServerConfig) -> Served {
    let server = Server::bind_with(endpoint, config).await.expect("bind");
    let endpoint = server.local_endpoint().clone();
    let service = Impl::default();
    let abandoned = service.abandoned.clone();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(server.serve_with_shutdown(StreamsServer::new(service), signal));
    let client = StreamsClient::connect(endpoint).await.expect("connect");
    Served { client, abandoned, shutdown: Some(shutdown), task }
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

#[tokio::test]
async fn an_application_error_is_an_item_and_the_stream_goes_on_to_its_end() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let items = within(collect(served.client.fails_after(2).await.expect("call"))).await;
    let items: Vec<Result<u64, String>> =
        items.into_iter().map(|i| i.expect("no framework error")).collect();
    assert_eq!(items, [Ok(0), Ok(1), Err("boom".to_owned())]);
}

#[tokio::test]
async fn a_framework_error_is_the_streams_last_item() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    // An item over the client's frame limit fails the call after the items before it.
    let client = rpc_core::Client::connect_with(
        served.client.client().endpoint().expect("from an endpoint").clone(),
        {
            let mut config = rpc_core::ClientConfig::default();
            config.max_frame = 64 * 1024;
            config
        },
    )
    .await
    .expect("connect");
    let client = StreamsClient::new(client);
    let items = within(collect(client.blobs(3, 100 * 1024).await.expect("call"))).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let err = items.into_iter().next().expect("one item").expect_err("a failure");
    assert_eq!(err.code(), Some(Code::FrameTooLarge), "{err}");
    // An unknown method too.
    let plain = served.client.client();
    let unknown: Streaming<u64> = within(plain.server_stream(0x0BAD, &())).await.expect("sent");
    let items = within(collect(unknown)).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().expect_err("failed").code(), Some(Code::UnknownMethod));
}

#[tokio::test]
async fn dropping_the_clients_stream_cancels_the_handler_and_fires_its_token() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let mut hang = served.client.hang().await.expect("call");
    assert_eq!(within(hang.next()).await.expect("an item").expect("ok"), 7);
    drop(hang);
    within(async {
        while !served.abandoned.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The connection goes on.
    assert_eq!(within(served.client.echo(5)).await.expect("call"), 5);
}

#[tokio::test]
async fn the_handler_dropping_its_sender_ends_the_clients_stream() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let items = within(collect(served.client.via_channel(10).await.expect("call"))).await;
    assert_eq!(items.len(), 10);
    assert!(items.iter().all(Result::is_ok));
}

#[tokio::test]
async fn the_deadline_covers_the_whole_stream() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let client = served.client.with_timeout(Duration::from_millis(200));
    let mut hang = client.hang().await.expect("call");
    assert_eq!(within(hang.next()).await.expect("an item").expect("ok"), 7);
    let err = within(hang.next()).await.expect("an end").expect_err("deadline");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
    assert!(within(hang.next()).await.is_none(), "the error is the last item");
    within(async {
        while !served.abandoned.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn losing_the_connection_ends_every_open_stream_with_an_error() {
    let mut served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut hang = served.client.hang().await.expect("call");
        assert_eq!(within(hang.next()).await.expect("an item").expect("ok"), 7);
        streams.push(hang);
    }
    // Shutting down with no grace drops the handlers and the connections.
    served.task.abort();
    drop(served.shutdown.take());
    for mut hang in streams {
        let end = within(hang.next()).await.expect("an end");
        assert!(end.is_err(), "{end:?}");
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_open_streams_finish() {
    let mut served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let mut blobs = served.client.blobs(2_000, 1_000).await.expect("call");
    let first = within(blobs.next()).await.expect("an item").expect("ok");
    assert_eq!(first.len(), 1_000);
    let _ = served.shutdown.take().expect("once").send(());
    let rest = within(collect(blobs)).await;
    assert_eq!(rest.len(), 1_999);
    assert!(rest.iter().all(Result::is_ok));
    within(served.task).await.expect("no panic").expect("served");
}

#[tokio::test]
async fn a_consumer_that_reads_nothing_blocks_the_producer_within_the_window() {
    let mut config = ServerConfig::default();
    config.stream_window = rpc_core::StreamWindow { items: 16, bytes: 1 << 20 };
    let server = Server::bind_with("tcp://127.0.0.1:0", config).await.expect("bind");
    let endpoint = server.local_endpoint().clone();
    let service = Impl::default();
    let produced = service.produced.clone();
    tokio::spawn(server.serve(StreamsServer::new(service)));
    let mut client_config = rpc_core::ClientConfig::default();
    client_config.stream_window = rpc_core::StreamWindow { items: 8, bytes: 1 << 20 };
    let client = rpc_core::Client::connect_with(endpoint, client_config).await.expect("connect");
    let client = StreamsClient::new(client);
    let mut blobs = client.blobs(1_000, 1_000).await.expect("call");
    // A stalled stream does not block other calls on the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(within(client.echo(3)).await.expect("call"), 3);
    // The producer made at most the window and the one item waiting for credit.
    let made = produced.load(Ordering::SeqCst);
    assert!(made <= 8 + 1, "produced {made} items with a window of 8");
    let all = within(async {
        let mut n = 0;
        while let Some(item) = blobs.next().await {
            item.expect("ok");
            n += 1;
        }
        n
    })
    .await;
    assert_eq!(all, 1_000);
}

#[tokio::test]
async fn a_million_items_on_one_stream_arrive_in_order() {
    let served = serve(&unique_abstract("million"), ServerConfig::default()).await;
    let mut count =
        served.client.with_timeout(Duration::from_secs(120)).count(1_000_000).await.expect("call");
    let mut next = 0;
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(item) = count.next().await {
            assert_eq!(item.expect("ok"), next);
            next += 1;
        }
    })
    .await
    .expect("in time");
    assert_eq!(next, 1_000_000);
}

#[tokio::test]
async fn a_hundred_streams_and_unary_calls_interleave_on_one_connection() {
    let served = serve("tcp://127.0.0.1:0", ServerConfig::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100_u64 {
        let client = served.client.clone();
        tasks.spawn(async move {
            match i % 3 {
                0 => {
                    let items = collect(client.count(500 + i).await.expect("call")).await;
                    assert_eq!(items.len() as u64, 500 + i);
                }
                1 => {
                    let total = client.total(futures::stream::iter(0..i as i64)).await;
                    assert_eq!(total.expect("call"), (0..i as i64).sum::<i64>());
                }
                _ => {
                    let input = futures::stream::iter(vec![1_i64; 200]);
                    let totals = collect(client.running(0, input).await.expect("call")).await;
                    assert_eq!(totals.last().expect("items").as_ref().expect("ok"), &200);
                }
            }
            assert_eq!(client.echo(i).await.expect("call"), i);
        });
    }
    within(async {
        while let Some(done) = tasks.join_next().await {
            done.expect("no panic");
        }
    })
    .await;
}

#[tokio::test]
async fn a_handler_that_reads_nothing_blocks_the_clients_producer_within_the_window() {
    let mut config = ServerConfig::default();
    config.stream_window = StreamWindow { items: 16, bytes: 1 << 20 };
    let served = serve("tcp://127.0.0.1:0", config).await;
    let pulled = Arc::new(AtomicU64::new(0));
    let counted = pulled.clone();
    let items = futures::stream::iter(0..10_000_i64).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let client = served.client.clone();
    let total = tokio::spawn(async move { client.slow_total(400, items).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Taken from the caller's stream: the window, and the one item waiting for credit.
    let taken = pulled.load(Ordering::SeqCst);
    assert!(taken <= 16 + 1, "took {taken} items with a window of 16");
    assert_eq!(within(served.client.echo(1)).await.expect("call"), 1);
    let total = within(total).await.expect("no panic").expect("call");
    assert_eq!(total, (0..10_000).sum::<i64>());
}
