//! What the binaries share besides the services: logging, signals, the server they run.

use std::future::Future;
use std::io::IsTerminal;

use rpc_core::{Endpoint, Server, ServerConfig};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::{Calc, CalculatorServer, StatsServer};

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

/// Binds one server on every one of `endpoints` that hosts [`Calc`] and the [`Stats`]
/// service, with the [`CallCounter`] interceptor feeding the latter. Run it with
/// `run_with_shutdown`; one shutdown stops every listener.
///
/// [`Stats`]: crate::Stats
/// [`CallCounter`]: crate::CallCounter
pub async fn bind_calculator(
    endpoints: &[Endpoint],
    config: ServerConfig,
) -> Result<Server, rpc_core::Error> {
    let (stats, counter) = crate::stats();
    let mut builder = Server::builder()
        .config(config)
        .service(CalculatorServer::new(Calc))
        .service(StatsServer::new(stats))
        .intercept(counter);
    for endpoint in endpoints {
        builder = builder.listen(endpoint);
    }
    builder.bind().await
}
