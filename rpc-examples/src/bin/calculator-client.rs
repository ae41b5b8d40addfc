//! `calculator-client`: makes one calculator call and prints the result, or many (over
//! several servers) and prints a summary.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rpc_core::{ClientConfig, Endpoint};
use rpc_examples::{CalculatorClient, Call, Report, StatsClient};

/// Calls a calculator server once and prints the result on stdout; with `--repeat`, makes
/// the call many times and prints one summary line instead.
///
/// Exit status: 0 with the result, 1 when the calculator refuses (division by zero, overflow)
/// or, with `--repeat`, when any call failed; 2 when the call could not be made (bad
/// arguments, no server, a framework error).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  calculator-client --connect tcp://127.0.0.1:7878 add 2 3\n  \
                  calculator-client --connect tcp://127.0.0.1:7001 --connect tcp://127.0.0.1:7002 \
                  --repeat 100000 --concurrency 16 add 2 3"
)]
struct Args {
    /// The server's endpoint; given several times, calls are balanced over the servers.
    #[arg(
        long,
        value_name = "ENDPOINT",
        required = true,
        help = "The server: tcp://HOST:PORT, tcp://[IPV6]:PORT, unix:/PATH or unix:@NAME; \
                repeat it to balance calls over several servers"
    )]
    connect: Vec<Endpoint>,
    /// Make the call N times in all and print a summary line instead of the result
    #[arg(long, value_name = "N")]
    repeat: Option<u64>,
    /// With --repeat: K tasks sharing one client make the calls
    #[arg(long, value_name = "K", default_value_t = 1, requires = "repeat",
          value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
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
    let client = match args.connect.as_slice() {
        [one] => rpc_core::Client::connect(one).await,
        several => rpc_core::Client::balanced(several.iter().cloned(), ClientConfig::default()),
    };
    let calc = match client {
        Ok(client) => CalculatorClient::new(client),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let call = match args.command {
        Command::Call(call) => call,
        Command::Stats => return report(StatsClient::new(calc.client().clone()).stats().await),
        Command::Log { line } => {
            return report(StatsClient::new(calc.client().clone()).log(line).await);
        }
    };
    if let Some(total) = args.repeat {
        return repeat(&calc, &call, total, args.concurrency).await;
    }
    // Values are printed one per line as they come (many for a streaming method).
    match call.run(&calc, |value| println!("{value}")).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
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

/// Makes `call` `total` times from `tasks` tasks sharing `calc`; prints
/// `N calls: OK ok, FAILED failed, p50 X ms, p99 Y ms`, and on stderr the slowest call and
/// the first failure, if any.
async fn repeat(calc: &CalculatorClient, call: &Call, total: u64, tasks: u64) -> ExitCode {
    let left = Arc::new(AtomicU64::new(total));
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (calc, call, left) = (calc.clone(), call.clone(), left.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = Vec::new();
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let started = Instant::now();
                    match call.run(&calc, |_| {}).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(refused)) => failures.push(refused.to_string()),
                        Err(failed) => failures.push(failed.to_string()),
                    }
                    latencies.push(started.elapsed());
                }
                (latencies, failures)
            })
        })
        .collect();
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for worker in workers {
        match worker.await {
            Ok((l, f)) => {
                latencies.extend(l);
                failures.extend(f);
            }
            Err(e) => failures.push(format!("a calling task failed: {e}")),
        }
    }
    latencies.sort_unstable();
    let ms = |q: f64| {
        let at =
            ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(at).copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1e3
    };
    let failed = failures.len();
    println!(
        "{total} calls: {} ok, {failed} failed, p50 {:.3} ms, p99 {:.3} ms",
        latencies.len() - failed,
        ms(0.50),
        ms(0.99),
    );
    eprintln!("slowest call: {:.3} ms", ms(1.0));
    match failures.first() {
        None => ExitCode::SUCCESS,
        Some(first) => {
            eprintln!("error: {call}: {first} (first of {failed} failures)");
            ExitCode::from(1)
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
