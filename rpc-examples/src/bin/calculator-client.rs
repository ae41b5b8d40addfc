//! `calculator-client`: makes one calculator call and prints the result.

use std::process::ExitCode;

use clap::Parser;
use rpc_core::Endpoint;
use rpc_examples::{CalculatorClient, Call, Report, StatsClient};

/// Calls a calculator server once and prints the result on stdout.
///
/// Exit status: 0 with the result, 1 when the calculator refuses (division by zero, overflow),
/// 2 when the call could not be made (bad arguments, no server, a framework error).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  calculator-client --connect tcp://127.0.0.1:7878 add 2 3\n  \
                  calculator-client --connect tcp://127.0.0.1:7878 stats"
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
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Call(Call),
    /// Prints the server's statistics: calls served per method since start, uptime
    Stats,
    /// Sends LINE to the server's log, one-way: returns once sent, no reply
    Log {
        /// The line to log
        line: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    rpc_examples::init_tracing("warn");
    // Usage errors (unknown method, wrong number of arguments) exit here with status 2.
    let args = Args::parse();
    let client = match rpc_core::Client::connect(&args.connect).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let call = match args.command {
        Command::Call(call) => call,
        Command::Stats => return report(StatsClient::new(client).stats().await),
        Command::Log { line } => return report(StatsClient::new(client).log(line).await),
    };
    let calc = CalculatorClient::new(client);
    match call.run(&calc).await {
        Ok(Ok(value)) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Ok(Err(refused)) => {
            eprintln!("error: {call}: {refused}");
            ExitCode::from(1)
        }
        Err(failed) => {
            eprintln!("error: {call}: {failed}");
            ExitCode::from(2)
        }
    }
}

/// Prints a Stats call's outcome: the report (nothing for `log`), or the error with status 2.
fn report<T: Printed>(outcome: Result<T, rpc_core::Error>) -> ExitCode {
    match outcome {
        Ok(value) => {
            value.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What a Stats command prints on success.
trait Printed {
    fn print(&self);
}

impl Printed for Report {
    fn print(&self) {
        println!("{self}");
    }
}

impl Printed for () {
    fn print(&self) {}
}
