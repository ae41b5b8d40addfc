//! Running out of file descriptors makes `accept` fail with EMFILE; the server must back off
//! (not spin, not exit) and serve again once descriptors are free. Its own test binary, since
//! it lowers this process's open-file limit.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rlimit::Resource;
use rpc_core::Client;

/// CPU time this process has used (user + system), in clock ticks, read from `stat`: an open
/// /proc/self/stat, opened before the descriptors run out.
fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0; 1024];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = std::str::from_utf8(&buf[..n]).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failing_with_emfile_backs_off_and_the_server_recovers() {
    let server = start("tcp://127.0.0.1:0").await;
    let addr = tcp_addr(&server.endpoint);
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, open + 16, hard).unwrap();

    // Use up the descriptors with connections the server has yet to accept: the kernel
    // completes them, but the server's accept then has no descriptor to put them in.
    let mut hogs = Vec::new();
    loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(stream) => hogs.push(stream),
            Err(e) if e.raw_os_error() == Some(24) => break, // EMFILE
            Err(e) => panic!("unexpected connect error: {e}"),
        }
        assert!(hogs.len() < 64, "the open-file limit did not take effect");
    }
    // While accept keeps failing, the accept loop must sleep between tries, not spin.
    let before = cpu_ticks(&stat);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = cpu_ticks(&stat) - before;
    // 100 ticks per second: a spinning loop would use about 50 of them in half a second.
    assert!(used < 25, "the accept loop used {used} ticks of CPU in 500 ms while out of files");

    // Descriptors come back: the server is still there and serves a new client.
    drop(hogs);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    let client = within(Client::connect(server.endpoint.clone())).await.unwrap();
    let echoed: String = within(client.call(ECHO, &("still here".to_owned(),))).await.unwrap();
    assert_eq!(echoed, "still here");
    assert!(!server.task.is_finished(), "the server must not have exited");
}
