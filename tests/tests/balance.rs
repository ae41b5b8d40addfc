//! Clients over tower: the generated client on a `ServiceBuilder` stack, and one client over
//! several servers with `tower::balance` (load spread, a dead endpoint dropped and re-added).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{HELLO_4MIB, expect_frame, frame, within};
use rpc_core::tower::ServiceBuilder;
use rpc_core::tower::discover::Change;
use rpc_core::{Client, ClientConfig, Endpoint, Error, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One of several replicas: says which it is, and counts the calls it served.
#[rpc_core::service]
pub trait Node {
    /// This server's number.
    async fn whoami(&self) -> u32;
    /// Sleeps `ms` milliseconds, then says which server it is.
    async fn slow(&self, ms: u64) -> u32;
    /// `whoami`, marked safe to repeat.
    #[rpc(idempotent)]
    async fn whoami_again(&self) -> u32;
}

struct Replica {
    id: u32,
    hits: Arc<AtomicUsize>,
}

impl Node for Replica {
    async fn whoami(&self) -> u32 {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.id
    }

    async fn whoami_again(&self) -> u32 {
        self.whoami().await
    }

    async fn slow(&self, ms: u64) -> u32 {
        self.hits.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.id
    }
}

/// A replica served on its own task; dropping `stop` shuts it down gracefully.
struct Running {
    endpoint: Endpoint,
    hits: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

async fn replica(endpoint: &str, id: u32) -> Running {
    let server = Server::bind(endpoint).await.unwrap();
    let endpoint = server.local_endpoint().clone();
    let hits = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = oneshot::channel::<()>();
    let service = NodeServer::new(Replica { id, hits: hits.clone() });
    let task = tokio::spawn(server.serve_with_shutdown(service, async move {
        let _ = stopped.await;
    }));
    Running { endpoint, hits, stop, task }
}

impl Running {
    async fn stop(self) {
        drop(self.stop);
        within(self.task).await.unwrap().unwrap();
    }
}

/// Makes `total` `whoami` calls from `tasks` tasks sharing `client`; all must succeed.
async fn calls(client: &NodeClient, total: usize, tasks: usize) {
    let left = Arc::new(AtomicUsize::new(total));
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, left) = (client.clone(), left.clone());
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    client.whoami().await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        within(worker).await.unwrap();
    }
}

fn quick_backoff() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.reconnect.backoff.initial = Duration::from_millis(20);
    config.reconnect.backoff.max = Duration::from_millis(100);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_spreads_3000_calls_over_3_servers() {
    let replicas = [
        replica("tcp://127.0.0.1:0", 0).await,
        replica("tcp://127.0.0.1:0", 1).await,
        replica("tcp://127.0.0.1:0", 2).await,
    ];
    let endpoints: Vec<Endpoint> = replicas.iter().map(|r| r.endpoint.clone()).collect();
    let client = NodeClient::new(Client::balanced(endpoints, ClientConfig::default()).unwrap());
    calls(&client, 3000, 16).await;
    let hits: Vec<usize> = replicas.iter().map(|r| r.hits.load(Ordering::SeqCst)).collect();
    assert_eq!(hits.iter().sum::<usize>(), 3000);
    // Each between 20% and 46% of the calls.
    assert!(hits.iter().all(|&n| (600..=1380).contains(&n)), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_dropped_and_used_again_once_its_server_returns() {
    let mut replicas = vec![
        replica("tcp://127.0.0.1:0", 0).await,
        replica("tcp://127.0.0.1:0", 1).await,
        replica("tcp://127.0.0.1:0", 2).await,
    ];
    let endpoints: Vec<Endpoint> = replicas.iter().map(|r| r.endpoint.clone()).collect();
    let client = NodeClient::new(Client::balanced(endpoints, quick_backoff()).unwrap());
    calls(&client, 300, 8).await;
    // Calls go on while one replica shuts down: none fails.
    let gone = replicas.pop().unwrap();
    let address = gone.endpoint.to_string();
    let (_, ()) = tokio::join!(calls(&client, 600, 8), gone.stop());
    let before: Vec<usize> = replicas.iter().map(|r| r.hits.load(Ordering::SeqCst)).collect();
    calls(&client, 300, 8).await;
    let after: Vec<usize> = replicas.iter().map(|r| r.hits.load(Ordering::SeqCst)).collect();
    assert_eq!(
        after.iter().sum::<usize>() - before.iter().sum::<usize>(),
        300,
        "all to the others"
    );
    // Back on the same address: the balancer sends to it again.
    let back = replica(&address, 2).await;
    within(async {
        while back.hits.load(Ordering::SeqCst) == 0 {
            calls(&client, 30, 4).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_can_come_from_a_stream_of_changes() {
    let first = replica("tcp://127.0.0.1:0", 0).await;
    let second = replica("tcp://127.0.0.1:0", 1).await;
    let (changes, receiver) = tokio::sync::mpsc::unbounded_channel();
    let stream = tokio_stream(receiver);
    let client = NodeClient::new(Client::discover(stream, ClientConfig::default()));
    changes.send(Change::Insert("a", first.endpoint.clone())).unwrap();
    calls(&client, 50, 2).await;
    assert_eq!(first.hits.load(Ordering::SeqCst), 50);
    changes.send(Change::Insert("b", second.endpoint.clone())).unwrap();
    changes.send(Change::Remove("a")).unwrap();
    within(async {
        while second.hits.load(Ordering::SeqCst) == 0 {
            calls(&client, 10, 2).await;
        }
    })
    .await;
    let first_hits = first.hits.load(Ordering::SeqCst);
    calls(&client, 100, 4).await;
    assert_eq!(first.hits.load(Ordering::SeqCst), first_hits, "a removed endpoint gets no calls");
}

/// An mpsc receiver as a `Stream` (tokio-stream is not a dependency).
fn tokio_stream<T>(
    receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
{
    struct Receiver<T>(tokio::sync::mpsc::UnboundedReceiver<T>);
    impl<T> futures_core::Stream for Receiver<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    Receiver(receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layers_apply_to_a_client_through_service_builder() {
    let running = replica("tcp://127.0.0.1:0", 7).await;
    let client = Client::connect(&running.endpoint).await.unwrap();
    let stack = ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(1)
        .timeout(Duration::from_millis(300))
        .service(client);
    let node = NodeClient::new(Client::from_service(stack));
    assert_eq!(node.whoami().await.unwrap(), 7);
    // tower's timeout ends a slow call as a deadline.
    let slow = node.slow(5_000).await.unwrap_err();
    assert!(matches!(slow, Error::DeadlineExceeded(_)), "{slow:?}");
    // With one call in flight, the next is shed at once.
    let entered = running.hits.load(Ordering::SeqCst) + 1;
    let busy = tokio::spawn({
        let node = node.clone();
        async move { node.slow(200).await }
    });
    // The slow call holds the only permit once its handler runs.
    within(async {
        while running.hits.load(Ordering::SeqCst) < entered {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let shed = node.whoami().await.unwrap_err();
    assert!(matches!(shed, Error::Layer(_)), "{shed:?}");
    assert_eq!(within(busy).await.unwrap().unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_lost_with_its_server_is_answered_by_another() {
    let survivor = replica("tcp://127.0.0.1:0", 1).await;
    // A server that takes one call and vanishes without answering it, for good.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doomed = format!("tcp://{}", listener.local_addr().unwrap());
    let (dropped, mut was_dropped) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.write_all(&HELLO_4MIB).await.unwrap();
        assert_eq!(frame(&expect_frame(&mut socket).await), HELLO_4MIB);
        expect_frame(&mut socket).await;
        drop((socket, listener));
        let _ = dropped.send(());
    });
    let endpoints = [doomed, survivor.endpoint.to_string()];
    let client = NodeClient::new(Client::balanced(endpoints, quick_backoff()).unwrap());
    // Until one went to the doomed server, every call is answered, all by the survivor.
    within(async {
        while was_dropped.try_recv().is_err() {
            assert_eq!(client.whoami_again().await.unwrap(), 1);
        }
    })
    .await;
    assert_eq!(client.whoami_again().await.unwrap(), 1);
}
