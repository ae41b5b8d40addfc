//! `calculator-client`: makes one calculator call and prints the result.

use std::process::ExitCode;

use clap::Parser;
use rpc_core::Endpoint;
use rpc_examples::{CalculatorClient, Call};

/// Calls a calculator server once and prints the result on stdout.
///
/// Exit status: 0 with the result, 1 when the calculator refuses (division by zero, overflow),
/// 2 when the call could not be made (bad arguments, no server, a framework error).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example: calculator-client --connect tcp://127.0.0.1:7878 add 2 3"
)]
struct Args {
    /// The server's endpoint.
    #[arg(
        long,
        value_name = "ENDPOINT",
        help = "The server: tcp://HOST:PORT, tcp://[IPV6]:PORT, unix:/PATH or unix:@NAME"
    )]
    connect: Endpoint,
    #[command(subcommand)]
    call: Call,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    rpc_examples::init_tracing("warn");
    // Usage errors (unknown method, wrong number of arguments) exit here with status 2.
    let args = Args::parse();
    let calc = match CalculatorClient::connect(&args.connect).await {
        Ok(calc) => calc,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Values are printed one per line as they come (many for a streaming method).
    match args.call.run(&calc, |value| println!("{value}")).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(refused)) => {
            eprintln!("error: {}: {refused}", args.call);
            ExitCode::from(1)
        }
        Err(failed) => {
            eprintln!("error: {}: {failed}", args.call);
            ExitCode::from(2)
        }
    }
}
