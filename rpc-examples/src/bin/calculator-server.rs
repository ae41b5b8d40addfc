//! `calculator-server`: serves the calculator and its Stats on one or more endpoints until
//! Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rpc_core::{Endpoint, ServerConfig};
use rpc_examples::{HumanDuration, HumanSize};

/// Serves the calculator until Ctrl-C or SIGTERM, then shuts down gracefully: calls in flight
/// finish and socket files are removed.
///
/// Prints "listening on ENDPOINT" for each endpoint once it accepts connections, with the port
/// the OS chose for tcp://…:0. Set RUST_LOG (e.g. RUST_LOG=debug) to see the framework's logs.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example: calculator-server --listen tcp://127.0.0.1:7878 --listen unix:/tmp/calc.sock"
)]
struct Args {
    /// The endpoints to serve on.
    #[arg(
        long,
        value_name = "ENDPOINT",
        required = true,
        help = "Where to listen: tcp://HOST:PORT (port 0: any free port), tcp://[IPV6]:PORT, \
                unix:/PATH or unix:@NAME. Repeat to listen on several"
    )]
    listen: Vec<Endpoint>,

    /// Close a connection after this long with no call in flight (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", value_parser = positive,
          default_value_t = HumanDuration(ServerConfig::default().idle_timeout))]
    idle_timeout: HumanDuration,

    /// Time a frame has to arrive whole once its first bytes came (e.g. 10s, 1m)
    #[arg(long, value_name = "DURATION", value_parser = positive,
          default_value_t = HumanDuration(ServerConfig::default().frame_timeout))]
    frame_timeout: HumanDuration,

    /// Time a new connection has to say hello (e.g. 500ms, 2s)
    #[arg(long, value_name = "DURATION", value_parser = positive,
          default_value_t = HumanDuration(ServerConfig::default().handshake_timeout))]
    handshake_timeout: HumanDuration,

    /// Time calls in flight get to finish after SIGTERM or Ctrl-C (0s: none)
    #[arg(long, value_name = "DURATION",
          default_value_t = HumanDuration(ServerConfig::default().shutdown_grace))]
    shutdown_grace: HumanDuration,

    /// Connections served at once; more are refused as overloaded. The open-file limit can
    /// lower it
    #[arg(long, value_name = "N", value_parser = at_least_one,
          default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,

    /// The largest request accepted (e.g. 64KiB, 4MiB, 1000)
    #[arg(long, value_name = "SIZE", value_parser = frame_size,
          default_value_t = HumanSize(ServerConfig::default().max_frame))]
    max_frame: HumanSize,

    /// Bytes all connections together may buffer (read buffers and queued answers); a
    /// connection that would need more is closed as overloaded (e.g. 64MiB, 1GiB)
    #[arg(long, value_name = "SIZE", value_parser = budget,
          default_value_t = HumanSize(ServerConfig::default().buffer_budget))]
    buffer_budget: HumanSize,
}

impl Args {
    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::default();
        config.idle_timeout = self.idle_timeout.0;
        config.handshake_timeout = self.handshake_timeout.0;
        config.shutdown_grace = self.shutdown_grace.0;
        config.max_connections = self.max_connections;
        config.max_frame = self.max_frame.0;
        config.frame_timeout = self.frame_timeout.0;
        config.buffer_budget = self.buffer_budget.0;
        config
    }
}

fn positive(input: &str) -> Result<HumanDuration, String> {
    let duration: HumanDuration = input.parse()?;
    if duration.0.is_zero() {
        return Err("must be more than 0s".to_owned());
    }
    Ok(duration)
}

fn at_least_one(input: &str) -> Result<usize, String> {
    match input.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; write a whole number, e.g. 1000")),
    }
}

fn budget(input: &str) -> Result<HumanSize, String> {
    let size: HumanSize = input.parse()?;
    if size.0 < 1 << 20 {
        return Err("must be at least 1MiB: every connection needs room to read".to_owned());
    }
    Ok(size)
}

fn frame_size(input: &str) -> Result<HumanSize, String> {
    let size: HumanSize = input.parse()?;
    let min = rpc_core::MIN_MAX_FRAME;
    if size.0 < min {
        return Err(format!("must be at least {}, room for any error frame", HumanSize(min)));
    }
    if u32::try_from(size.0).is_err() {
        return Err("must be below 4GiB: a frame's length has 32 bits".to_owned());
    }
    Ok(size)
}

#[tokio::main]
async fn main() -> ExitCode {
    rpc_examples::init_tracing("info");
    let args = Args::parse();
    match serve(&args.listen, args.config()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    endpoints: &[Endpoint],
    config: ServerConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    // Catch the signals before announcing anything: whoever reads "listening on" may signal
    // us at once.
    let signal = rpc_examples::shutdown_signal()?;
    let server = rpc_examples::bind_calculator(endpoints, config).await?;
    // Bound is enough: connections queue in the backlog until the accept loops run.
    for endpoint in server.local_endpoints() {
        println!("listening on {endpoint}");
    }
    // A parent process reading our stdout through a pipe must see the lines now, not when a
    // buffer fills.
    std::io::stdout().flush()?;

    server
        .run_with_shutdown(async {
            let name = signal.await;
            println!("received {name}, shutting down");
        })
        .await?;
    println!("stopped");
    Ok(())
}
