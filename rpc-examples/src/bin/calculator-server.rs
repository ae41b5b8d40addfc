//! `calculator-server`: serves the calculator on one or more endpoints until Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rpc_core::{Endpoint, Server};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    rpc_examples::init_tracing("info");
    let args = Args::parse();
    match serve(&args.listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(endpoints: &[Endpoint]) -> Result<(), Box<dyn std::error::Error>> {
    // Catch the signals before announcing anything: whoever reads "listening on" may signal
    // us at once.
    let signal = rpc_examples::shutdown_signal()?;
    let mut servers = Vec::new();
    for endpoint in endpoints {
        let server = Server::bind(endpoint).await?;
        // Bound is enough: connections queue in the backlog until the accept loop runs.
        println!("listening on {}", server.local_endpoint());
        servers.push(server);
    }
    // A parent process reading our stdout through a pipe must see the lines now, not when a
    // buffer fills.
    std::io::stdout().flush()?;

    rpc_examples::serve_calculator(servers, async {
        let name = signal.await;
        println!("received {name}, shutting down");
    })
    .await?;
    println!("stopped");
    Ok(())
}
