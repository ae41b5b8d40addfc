//! The calculator end to end through its generated client, over TCP and a Unix socket.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rpc_core::{Endpoint, Server};
use rpc_examples::{Calc, CalcError, CalculatorClient, CalculatorServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A calculator server on its own task, stopped gracefully by `stop`.
struct Running {
    endpoint: Endpoint,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), rpc_core::Error>>,
}

async fn serve(endpoint: &str) -> Running {
    let server = Server::bind(endpoint).await.unwrap();
    let endpoint = server.local_endpoint().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(server.serve_with_shutdown(CalculatorServer::new(Calc), shutdown));
    Running { endpoint, stop, task }
}

impl Running {
    async fn shut_down(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Runs `check` against a server on TCP and then on a Unix socket.
async fn on_both_transports<F, Fut>(check: F)
where
    F: Fn(CalculatorClient) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("calc.sock");
    for endpoint in ["tcp://127.0.0.1:0".to_owned(), format!("unix:{}", socket.display())] {
        let server = serve(&endpoint).await;
        let calc = CalculatorClient::connect(&server.endpoint).await.unwrap();
        check(calc).await;
        server.shut_down().await;
    }
    assert!(!socket.exists(), "the socket file is removed when the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_over_tcp_and_unix() {
    on_both_transports(|calc| async move {
        assert_eq!(calc.add(2, 3).await.unwrap(), Ok(5));
        assert_eq!(calc.sub(2, 5).await.unwrap(), Ok(-3));
        assert_eq!(calc.mul(-6, 7).await.unwrap(), Ok(-42));
        assert_eq!(calc.div(7, 2).await.unwrap(), Ok(3));
        assert_eq!(calc.div(-7, 2).await.unwrap(), Ok(-3));
        assert_eq!(calc.sum(vec![1, 2, 3, 4]).await.unwrap(), Ok(10));
        assert_eq!(calc.sum(vec![]).await.unwrap(), Ok(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn division_by_zero_is_an_application_error() {
    on_both_transports(|calc| async move {
        assert_eq!(calc.div(7, 0).await.unwrap(), Err(CalcError::DivideByZero));
        assert_eq!(calc.div(0, 0).await.unwrap(), Err(CalcError::DivideByZero));
        // The connection is fine afterwards.
        assert_eq!(calc.div(8, 4).await.unwrap(), Ok(2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_is_an_application_error_and_never_wraps() {
    on_both_transports(|calc| async move {
        assert_eq!(calc.add(i64::MAX, 1).await.unwrap(), Err(CalcError::Overflow));
        assert_eq!(calc.sub(i64::MIN, 1).await.unwrap(), Err(CalcError::Overflow));
        assert_eq!(calc.mul(i64::MAX, 2).await.unwrap(), Err(CalcError::Overflow));
        assert_eq!(calc.div(i64::MIN, -1).await.unwrap(), Err(CalcError::Overflow));
        assert_eq!(calc.sum(vec![i64::MAX, 1, -1]).await.unwrap(), Err(CalcError::Overflow));
        // Limits themselves are fine.
        assert_eq!(calc.add(i64::MAX, 0).await.unwrap(), Ok(i64::MAX));
        assert_eq!(calc.sum(vec![i64::MIN, i64::MAX]).await.unwrap(), Ok(-1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tasks_share_one_client() {
    on_both_transports(|calc| async move {
        let mut tasks = Vec::new();
        for t in 0..100_i64 {
            let calc = calc.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20_i64 {
                    assert_eq!(calc.add(t, i).await.unwrap(), Ok(t + i));
                    assert_eq!(calc.mul(t, i).await.unwrap(), Ok(t * i));
                    let expected = if i == 0 { Err(CalcError::DivideByZero) } else { Ok(t / i) };
                    assert_eq!(calc.div(t, i).await.unwrap(), expected);
                    assert_eq!(calc.sum(vec![t; i as usize]).await.unwrap(), Ok(t * i));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_built_from_a_raw_client_with_a_timeout_calls_the_same_server() {
    let server = serve("tcp://127.0.0.1:0").await;
    let raw = rpc_core::Client::connect(&server.endpoint).await.unwrap();
    let calc = CalculatorClient::new(raw).with_timeout(Duration::from_secs(30));
    assert_eq!(calc.add(40, 2).await.unwrap(), Ok(42));
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_is_a_framework_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("nobody.sock").display());
    let err = CalculatorClient::connect(missing.as_str()).await.unwrap_err();
    assert!(matches!(err, rpc_core::Error::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_while_a_client_stays_connected_and_later_calls_fail_cleanly() {
    let server = serve("tcp://127.0.0.1:0").await;
    let calc = CalculatorClient::connect(&server.endpoint).await.unwrap();
    assert_eq!(calc.add(1, 1).await.unwrap(), Ok(2));
    server.shut_down().await;
    // The client waits for a server to come back, within the call's deadline.
    let err = calc.with_timeout(Duration::from_millis(200)).add(1, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            rpc_core::Error::ConnectionClosed
                | rpc_core::Error::Remote { .. }
                | rpc_core::Error::DeadlineExceeded(_)
        ),
        "{err}"
    );
}
