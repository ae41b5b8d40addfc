//! `calculator`: the one-command demo: a calculator served and called over TCP and a Unix socket.

use std::process::ExitCode;

use rpc_core::{Endpoint, ServerConfig};
use rpc_examples::{CalculatorClient, Call, StatsClient};

/// The calls made over each transport: plain results, the two kinds of refusal, then one
/// streaming method of each kind (results streamed, numbers streamed, both).
fn demo_calls() -> Vec<Call> {
    vec![
        Call::Add { a: 2, b: 3 },
        Call::Sub { a: 2, b: 5 },
        Call::Mul { a: 6, b: 7 },
        Call::Div { a: 7, b: 2 },
        Call::Sum { numbers: vec![1, 2, 3, 4] },
        Call::Div { a: 7, b: 0 },
        Call::Mul { a: i64::MAX, b: 2 },
        Call::Primes { limit: 30 },
        Call::SumStream { numbers: vec![1, 2, 3] },
        Call::RunningTotal { numbers: vec![1, 2, 3] },
        Call::RunningTotal { numbers: vec![i64::MAX, 1, 2] },
    ]
}

#[tokio::main]
async fn main() -> ExitCode {
    rpc_examples::init_tracing("warn");
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("calc.sock");
    let wanted =
        [Endpoint::Tcp { host: "127.0.0.1".into(), port: 0 }, Endpoint::Unix(socket.clone())];

    let server = rpc_examples::bind_calculator(&wanted, ServerConfig::default()).await?;
    let endpoints: Vec<Endpoint> = server.local_endpoints().into_iter().cloned().collect();
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(server.run());
    println!("The calculator and its Stats, served by one server over two transports:");
    for endpoint in &endpoints {
        println!("  {endpoint}");
    }

    for endpoint in &endpoints {
        println!();
        let calc = CalculatorClient::connect(endpoint).await?;
        for call in demo_calls() {
            // The outer `?` is a framework error (the call did not complete); the calculator's
            // own refusals arrive as `Err` inside, and are printed like results.
            let mut values = Vec::new();
            let values_text =
                |values: &[i64]| values.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            match call.run(&calc, |value| values.push(value)).await? {
                Ok(()) => println!("[{endpoint}] {call} = {}", values_text(&values)),
                Err(refused) if values.is_empty() => {
                    println!("[{endpoint}] {call} = error: {refused}")
                }
                Err(refused) => {
                    println!("[{endpoint}] {call} = {}, error: {refused}", values_text(&values))
                }
            }
        }
    }

    println!();
    let stats = StatsClient::connect(&endpoints[0]).await?;
    // One-way: returns once sent; the server logs it and nothing comes back.
    stats.log("hello from the demo".to_owned()).await?;
    println!("Stats, from the same server:\n{}", stats.stats().await?);

    println!();
    println!("Shutting down gracefully: calls in flight finish, then every listener stops.");
    shutdown.shutdown().await;
    serving.await??;
    let removed = if socket.exists() { "is still there" } else { "was removed" };
    println!("The server stopped; the socket file {removed}.");
    Ok(())
}
