//! Benchmark of rpc-core against a raw tokio baseline and tarpc: arguments, the run plan, and
//! the table and JSON output. Run from the repository root:
//!
//! ```text
//! cargo run --release --manifest-path rpc-bench/Cargo.toml -- [--quick] [--json FILE]
//! ```

mod mem;
mod probe;
mod raw;
mod report;
mod rpc;
mod sock;
mod tarpc_sys;
mod workloads;

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::report::Sample;
use crate::sock::{Addr, Transport};
use crate::workloads::Timing;

#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOC: probe::Counting = probe::Counting;

/// Connections `mem_idle` aims for; fewer when the open-file limit does not allow them.
const MEM_CONNS: usize = 10_000;
/// Payload of `w4_1mib`.
const ECHO_BYTES: usize = 1 << 20;
/// Item size of `s2_64kib`.
const STREAM_BLOB: usize = 64 * 1024;
/// Connections each `w4_1mib` cell is spread over, one after the other.
const ECHO_CONNS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    Raw,
    Rpc,
    Tarpc,
}

impl System {
    pub const ALL: [System; 3] = [System::Raw, System::Rpc, System::Tarpc];

    pub fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Rpc => "rpc",
            System::Tarpc => "tarpc",
        }
    }

    fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    W1,
    W2(usize),
    W3,
    W4,
    /// `w4_1mib` with `Vec<u8>` instead of a byte string, rpc only; shown in the table, not in
    /// the JSON.
    W4Vec,
    /// One server stream of 8-byte items at a time: items/s.
    S1,
    /// One server stream of 64 KiB items at a time: MB/s.
    S2,
    MemIdle,
}

impl Workload {
    const ALL: [Workload; 9] = [
        Workload::W1,
        Workload::W2(1),
        Workload::W2(16),
        Workload::W2(128),
        Workload::W3,
        Workload::W4,
        Workload::W4Vec,
        Workload::S1,
        Workload::S2,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2(1) => "w2_c1",
            Workload::W2(16) => "w2_c16",
            Workload::W2(_) => "w2_c128",
            Workload::W3 => "w3_8x32",
            Workload::W4 => "w4_1mib",
            Workload::W4Vec => "w4_1mib_vec",
            Workload::S1 => "s1_8b",
            Workload::S2 => "s2_64kib",
            Workload::MemIdle => "mem_idle",
        }
    }
}

/// Command-line options; see [`USAGE`].
struct Args {
    quick: bool,
    json: Option<String>,
    systems: Vec<System>,
    transports: Vec<Transport>,
    workloads: Option<Vec<String>>,
    rounds: Option<usize>,
    warm: Option<f64>,
    measure: Option<f64>,
    conns: Option<usize>,
    probe: bool,
}

const USAGE: &str = "usage: rpc-bench [--quick] [--json FILE] [--systems raw,rpc,tarpc] \
[--transports tcp,unix] [--workloads w1,w2_c1,w2_c16,w2_c128,w3_8x32,w4_1mib,w4_1mib_vec,s1_8b,s2_64kib,mem_idle] \
[--rounds N] [--warm SECS] [--measure SECS] [--conns N] [--probe]";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        json: None,
        systems: System::ALL.to_vec(),
        transports: Transport::ALL.to_vec(),
        workloads: None,
        rounds: None,
        warm: None,
        measure: None,
        conns: None,
        probe: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--probe" => a.probe = true,
            "--json" => a.json = Some(value()?),
            "--systems" => {
                a.systems = list(&value()?, System::parse).ok_or("--systems: raw, rpc, tarpc")?;
            }
            "--transports" => {
                a.transports =
                    list(&value()?, Transport::parse).ok_or("--transports: tcp, unix")?;
            }
            "--workloads" => a.workloads = Some(value()?.split(',').map(str::to_owned).collect()),
            "--rounds" => a.rounds = Some(number(value()?)? as usize),
            "--warm" => a.warm = Some(number(value()?)?),
            "--measure" => a.measure = Some(number(value()?)?),
            "--conns" => a.conns = Some(number(value()?)? as usize),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn list<T>(text: &str, parse: fn(&str) -> Option<T>) -> Option<Vec<T>> {
    text.split(',').map(parse).collect()
}

/// The runtime every system runs on: tokio multi-thread with 2 workers.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// Starts `system`'s server on a fresh `transport` address; returns where it listens.
pub async fn start_server(system: System, transport: Transport) -> io::Result<Addr> {
    let addr = Addr::fresh(transport, system.name());
    match system {
        System::Raw => raw::start_server(&addr).await,
        System::Rpc => rpc::start_server(&addr).await.map_err(io::Error::other),
        System::Tarpc => tarpc_sys::start_server(&addr).await,
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--serve") {
        let (Some(system), Some(transport)) = (
            argv.get(1).and_then(|s| System::parse(s)),
            argv.get(2).and_then(|t| Transport::parse(t)),
        ) else {
            eprintln!("usage: rpc-bench --serve SYSTEM TRANSPORT");
            std::process::exit(2);
        };
        if let Err(e) = mem::serve_child(system, transport) {
            eprintln!("server child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    println!("$ {}", report::command(&argv));
    let result = runtime().and_then(|rt| rt.block_on(run(&args)));
    let _ = std::fs::remove_dir_all(sock::socket_dir());
    match result {
        Ok(samples) => {
            print!("{}", report::table(&samples, args.probe));
            print!("{}", report::targets(&samples));
            if let Some(path) = &args.json {
                if let Err(e) = std::fs::write(path, report::json(&samples, &argv)) {
                    eprintln!("writing {path}: {e}");
                    std::process::exit(1);
                }
                println!("JSON written to {path}");
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args) -> io::Result<Vec<Sample>> {
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let secs = |v: Option<f64>, quick: f64, full: f64| {
        Duration::from_secs_f64(v.unwrap_or(if args.quick { quick } else { full }))
    };
    let timing = Timing { warm: secs(args.warm, 0.3, 1.0), measure: secs(args.measure, 1.0, 2.0) };
    let wanted = |name: &str| args.workloads.as_ref().is_none_or(|w| w.iter().any(|x| x == name));
    let fd_limit = mem::raise_fd_limit();
    let mem_conns = args.conns.unwrap_or(MEM_CONNS).min((fd_limit as usize).saturating_sub(200));
    println!(
        "{} cores, tokio multi-thread runtime with 2 workers, TCP_NODELAY; {rounds} round(s) of \
         {:.1} s warm-up + {:.1} s measured per cell (median over rounds); rpc-core at {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        timing.warm.as_secs_f64(),
        timing.measure.as_secs_f64(),
        report::git_revision(),
    );

    let mut servers = HashMap::new();
    for &system in &args.systems {
        for &transport in &args.transports {
            servers.insert((system, transport), start_server(system, transport).await?);
        }
    }
    let payload = Bytes::from((0..ECHO_BYTES).map(|i| i as u8).collect::<Vec<u8>>());
    let mut samples = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        for workload in Workload::ALL.into_iter().filter(|w| wanted(w.name())) {
            for &transport in &args.transports {
                // Rotate the order of systems each round so drift on a shared machine does not
                // always favour the same one.
                let mut systems = args.systems.clone();
                let turn = round % systems.len();
                systems.rotate_left(turn);
                for system in systems {
                    let streams = matches!(workload, Workload::S1 | Workload::S2);
                    if (workload == Workload::W4Vec || streams) && system == System::Tarpc
                        || workload == Workload::W4Vec && system == System::Raw
                    {
                        continue;
                    }
                    let addr = &servers[&(system, transport)];
                    let values = measure(system, workload, addr, timing, &payload).await?;
                    eprintln!(
                        "[{:6.1} s] round {}/{rounds} {:<11} {:<4} {:<5} {}",
                        started.elapsed().as_secs_f64(),
                        round + 1,
                        workload.name(),
                        transport.name(),
                        system.name(),
                        values
                            .iter()
                            .map(|(m, v)| format!("{m}={v:.1}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                    for (metric, value) in values {
                        samples.push(Sample {
                            system,
                            transport,
                            workload: workload.name(),
                            metric,
                            value,
                        });
                    }
                }
            }
        }
    }
    if wanted("mem_idle") {
        println!("mem_idle: {mem_conns} idle connections (open-file limit {fd_limit})");
        for &transport in &args.transports {
            for &system in &args.systems {
                let values = mem::idle_bytes_per_conn(system, transport, mem_conns).await?;
                eprintln!(
                    "[{:6.1} s] mem_idle {:<4} {:<5} {}",
                    started.elapsed().as_secs_f64(),
                    transport.name(),
                    system.name(),
                    values.iter().map(|(m, v)| format!("{m}={v:.0}")).collect::<Vec<_>>().join(" ")
                );
                for (metric, value) in values {
                    let workload = Workload::MemIdle.name();
                    samples.push(Sample { system, transport, workload, metric, value });
                }
            }
        }
    }
    Ok(samples)
}

/// Runs one cell: `workload` against `system`'s server at `addr`.
async fn measure(
    system: System,
    workload: Workload,
    addr: &Addr,
    timing: Timing,
    payload: &Bytes,
) -> io::Result<workloads::Metrics> {
    use workloads::{callers, echo_rate, latency};
    let rpc = |e: rpc_core::Error| io::Error::other(e);
    Ok(match workload {
        Workload::W1 => match system {
            System::Raw => spawn(latency(timing, raw::RawConn::connect(addr).await?)).await,
            System::Rpc => {
                spawn(latency(timing, rpc::RpcClient::connect(addr).await.map_err(rpc)?)).await
            }
            System::Tarpc => {
                spawn(latency(timing, tarpc_sys::TarpcClient::connect(addr).await?)).await
            }
        },
        Workload::W2(_) | Workload::W3 => {
            let (conns, per_conn) = match workload {
                Workload::W2(c) => (1, c),
                _ => (8, 32),
            };
            match system {
                System::Raw => raw::pipelined(timing, addr, conns, per_conn).await?,
                System::Rpc => {
                    let mut clients = Vec::new();
                    for _ in 0..conns {
                        clients.push(rpc::RpcClient::connect(addr).await.map_err(rpc)?);
                    }
                    callers(timing, &clients, per_conn).await
                }
                System::Tarpc => {
                    let mut clients = Vec::new();
                    for _ in 0..conns {
                        clients.push(tarpc_sys::TarpcClient::connect(addr).await?);
                    }
                    callers(timing, &clients, per_conn).await
                }
            }
        }
        Workload::W4 | Workload::W4Vec => {
            // The rate over loopback TCP settles per connection at one of a few levels (about
            // 1x, 1.6x or 2.4x of the lowest here, for every system alike), so each cell
            // averages several fresh connections.
            let part =
                Timing { warm: timing.warm / ECHO_CONNS, measure: timing.measure / ECHO_CONNS };
            let mut runs = Vec::new();
            for _ in 0..ECHO_CONNS {
                let p = payload.clone();
                runs.push(match (system, workload) {
                    (System::Raw, _) => {
                        spawn(echo_rate(part, raw::RawConn::connect(addr).await?, p)).await
                    }
                    (System::Rpc, Workload::W4) => {
                        let c = rpc::RpcClient::connect(addr).await.map_err(rpc)?;
                        spawn(echo_rate(part, c, p)).await
                    }
                    (System::Rpc, _) => {
                        let c = rpc::VecEcho(rpc::RpcClient::connect(addr).await.map_err(rpc)?);
                        spawn(echo_rate(part, c, p)).await
                    }
                    (System::Tarpc, _) => {
                        let c = tarpc_sys::TarpcClient::connect(addr).await?;
                        spawn(echo_rate(part, c, p)).await
                    }
                });
            }
            workloads::mean(&runs)
        }
        Workload::S1 | Workload::S2 => {
            let size = if workload == Workload::S1 { 0 } else { STREAM_BLOB };
            match system {
                System::Raw => {
                    spawn(workloads::stream_rate(timing, raw::RawItems::open(addr, size).await?))
                        .await
                }
                System::Rpc if size == 0 => {
                    let items = rpc::RpcItems::count(addr).await.map_err(rpc)?;
                    spawn(workloads::stream_rate(timing, items)).await
                }
                System::Rpc => {
                    let items = rpc::RpcItems::blobs(addr, size).await.map_err(rpc)?;
                    spawn(workloads::stream_rate(timing, items)).await
                }
                System::Tarpc => unreachable!("tarpc has no streams"),
            }
        }
        Workload::MemIdle => unreachable!("mem_idle runs on its own"),
    })
}

/// Runs `future` on a runtime worker (not on the thread driving `block_on`) and waits for it.
async fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(future).await.expect("benchmark task panicked")
}
