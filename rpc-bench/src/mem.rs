//! `mem_idle`: server memory per idle connection. The server runs in a child process (this
//! binary re-run with the hidden `--serve SYSTEM TRANSPORT` flag), so its resident set is read
//! from /proc/PID/status without the client side mixed in.

use std::io;
use std::time::Duration;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

use futures::StreamExt;

use crate::System;
use crate::raw::RawConn;
use crate::rpc::RpcClient;
use crate::sock::{Addr, Transport};
use crate::tarpc_sys::TarpcClient;
use crate::workloads::{Caller, Sequential};

/// Connections opened at once while filling the server.
const CONNECT_CONCURRENCY: usize = 64;

/// Raises the open-file soft limit to the hard limit; returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every platform
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur as u64
}

/// The child's side: serves `system` on a fresh `transport` address, prints `READY <addr>`,
/// answers each `heap` line on standard input with `HEAP <bytes the allocator has handed
/// out>`, and exits when its standard input closes.
pub fn serve_child(system: System, transport: Transport) -> io::Result<()> {
    raise_fd_limit();
    let rt = crate::runtime()?;
    let addr = rt.block_on(crate::start_server(system, transport))?;
    println!("READY {addr}");
    // Blocks this thread only; the runtime's workers keep serving.
    for line in io::stdin().lock().lines() {
        if line?.trim() == "heap" {
            println!("HEAP {}", heap_in_use());
        }
    }
    let _ = std::fs::remove_dir_all(crate::sock::socket_dir());
    Ok(())
}

/// Bytes in use from glibc's allocator, over all arenas, small and mmapped blocks alike.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> u64 {
    0
}

/// One idle client connection of any system.
#[allow(dead_code)] // held only so the connection stays open
enum Idle {
    Raw(RawConn),
    Rpc(RpcClient),
    Tarpc(TarpcClient),
}

/// Connects and makes one call, so the server has accepted and set up the connection.
async fn open(system: System, addr: &Addr) -> io::Result<Idle> {
    Ok(match system {
        System::Raw => {
            let mut c = RawConn::connect(addr).await?;
            c.add(1, 2).await;
            Idle::Raw(c)
        }
        System::Rpc => {
            let c = RpcClient::connect(addr).await.map_err(io::Error::other)?;
            Caller::add(&c, 1, 2).await;
            Idle::Rpc(c)
        }
        System::Tarpc => {
            let c = TarpcClient::connect(addr).await?;
            Caller::add(&c, 1, 2).await;
            Idle::Tarpc(c)
        }
    })
}

/// The server child's heap in use, asked over its standard input.
fn child_heap(child: &mut Child, stdout: &mut impl BufRead) -> io::Result<u64> {
    let stdin = child.stdin.as_mut().ok_or_else(|| io::Error::other("no child stdin"))?;
    writeln!(stdin, "heap")?;
    stdin.flush()?;
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    line.trim()
        .strip_prefix("HEAP ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("server child said {line:?}")))
}

fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// Server memory per idle connection with `n` connections open (each used for one call, then
/// left idle), over the server with one connection open: `bytes_per_conn` from the resident
/// set (pages touched), `heap_bytes_per_conn` from the allocator (bytes handed out, touched or
/// not). Kernel socket buffers are in neither.
pub async fn idle_bytes_per_conn(
    system: System,
    transport: Transport,
    n: usize,
) -> io::Result<Vec<(&'static str, f64)>> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--serve", system.name(), transport.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no child stdout"))?;
    // Blocking reads of the child's short answers; this thread drives no runtime worker.
    let mut stdout = io::BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("READY ").and_then(Addr::parse) else {
        let _ = child.kill();
        return Err(io::Error::other(format!("server child said {line:?}")));
    };

    let first = open(system, &addr).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;
    let heap_before = child_heap(&mut child, &mut stdout)?;
    let conns: Vec<io::Result<Idle>> = futures::stream::iter(0..n)
        .map(|_| open(system, &addr))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let conns = conns.into_iter().collect::<io::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = vm_rss_kib(pid)?;
    let heap_after = child_heap(&mut child, &mut stdout)?;

    drop(conns);
    drop(first);
    // The child exits when its standard input closes; give it a few seconds.
    drop(child.stdin.take());
    for _ in 0..100 {
        if child.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if child.try_wait()?.is_none() {
        child.kill()?;
        child.wait()?;
    }
    let n = n as f64;
    Ok(vec![
        ("bytes_per_conn", after.saturating_sub(before) as f64 * 1024.0 / n),
        ("heap_bytes_per_conn", heap_after.saturating_sub(heap_before) as f64 / n),
    ])
}
