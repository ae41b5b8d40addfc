//! What the binaries share besides the service: logging, signals, serving several endpoints.

use std::future::Future;
use std::io::IsTerminal;

use rpc_core::Server;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing_subscriber::EnvFilter;

use crate::{Calc, CalculatorServer};

/// Sends the framework's tracing events to stderr, filtered by `RUST_LOG` (for example
/// `RUST_LOG=debug` or `RUST_LOG=rpc_core=trace`), or at level `default` when it is unset.
/// Colours only when stderr is a terminal: escape codes would litter a log file or a pipe.
pub fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Only fails if a subscriber is already installed, which then keeps working.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Starts catching Ctrl-C (SIGINT) and SIGTERM, and returns a future that completes with the
/// name of the first of them to arrive.
///
/// Call it before telling anyone the process is ready: until the handlers are installed, either
/// signal kills the process on the spot, skipping the graceful shutdown. Must be called from
/// within a Tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// Serves [`Calc`] on every one of `servers` until `stop` completes, then shuts them all down
/// gracefully (calls in flight finish, socket files are removed) and returns.
pub async fn serve_calculator(
    servers: Vec<Server>,
    stop: impl Future<Output = ()>,
) -> Result<(), rpc_core::Error> {
    // Server::serve_with_shutdown takes one signal per server: fan `stop` out through a flag.
    let (stopping, stopping_rx) = watch::channel(false);
    let mut running = JoinSet::new();
    for server in servers {
        let mut stopping_rx = stopping_rx.clone();
        let signal = async move {
            let _ = stopping_rx.wait_for(|&stop| stop).await;
        };
        running.spawn(server.serve_with_shutdown(CalculatorServer::new(Calc), signal));
    }
    stop.await;
    let _ = stopping.send(true);
    let mut result = Ok(());
    while let Some(served) = running.join_next().await {
        match served {
            Ok(served) => result = result.and(served),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {} // cancelled: the set is ours and never aborts its tasks
        }
    }
    result
}
