//! Many calls in flight on one connection: each response reaches its own caller, and a slow
//! call holds up nobody behind it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use rpc_core::Client;

/// 100 tasks × 100 calls through clones of one client; every answer echoes its own request.
async fn hundred_by_hundred(endpoint: &str) {
    let server = start(endpoint).await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..100 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let sent = format!("task {t} call {i}");
                let got: String = client.call(ECHO, &(sent.clone(),)).await.unwrap();
                assert_eq!(got, sent);
            }
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tasks_of_hundred_calls_each_get_their_own_answers_over_tcp() {
    hundred_by_hundred("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tasks_of_hundred_calls_each_get_their_own_answers_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    hundred_by_hundred(&format!("unix:{}", dir.path().join("s.sock").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_does_not_delay_a_fast_one_behind_it() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, u64>(BLOCK, &(7_u64,)).await }
    });
    assert_eq!(server.gate.entered().await, 7);
    let fast: i64 = within(client.call(ADD, &(1_i64, 2_i64))).await.unwrap();
    assert_eq!(fast, 3);
    assert!(!slow.is_finished(), "the slow call cannot finish before it is released");
    server.gate.release(1);
    assert_eq!(within(slow).await.unwrap().unwrap(), 7);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_blocked_calls_run_at_once_and_each_gets_its_own_answer() {
    let mut server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let calls: Vec<_> = (0..50_u64)
        .map(|v| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, u64>(BLOCK, &(v,)).await })
        })
        .collect();
    // Every handler is running at the same time before any is allowed to answer.
    let mut entered: Vec<u64> = Vec::new();
    for _ in 0..50 {
        entered.push(server.gate.entered().await);
    }
    entered.sort_unstable();
    assert_eq!(entered, (0..50).collect::<Vec<_>>());
    server.gate.release(50);
    for (v, call) in (0..).zip(calls) {
        assert_eq!(within(call).await.unwrap().unwrap(), v);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_mixed_sizes_are_not_mixed_up() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    // Large frames are written in several pieces; small ones must not land inside them.
    let tasks: Vec<_> = (0..40_u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let n = if i % 2 == 0 { 200_000 + i } else { i };
                let bytes: Vec<u8> = client.call(BIG, &(n,)).await.unwrap();
                assert_eq!(bytes.len(), n as usize);
                assert!(bytes.iter().all(|&b| b == 0xAB));
                let text = "x".repeat(n as usize);
                let echoed: String = client.call(ECHO, &(text.clone(),)).await.unwrap();
                assert!(echoed == text, "echo of {n} bytes came back changed");
            })
        })
        .collect();
    for task in tasks {
        within(task).await.unwrap();
    }
    server.stop().await.unwrap();
}

/// A caller whose request leaves with another task's write (here, the Cancel frames of
/// abandoned calls) may be answered while it is still yielding to let other callers queue
/// their requests. It must still collect its answer: every call below ends, none hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_answered_while_their_caller_yields_still_complete() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = Client::connect(&server.endpoint).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut abandoners = Vec::new();
    for _ in 0..2 {
        let (client, stop) = (client.clone(), stop.clone());
        abandoners.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let blocked = client.call::<_, u64>(BLOCK, &(0u64,));
                let _ = tokio::time::timeout(Duration::from_micros(20), blocked).await;
            }
        }));
    }
    let mut callers = Vec::new();
    for t in 0..64 {
        let (client, stop) = (client.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sent = format!("{t}/{i}");
                let got: String = client.call(ECHO, &(sent.clone(),)).await.unwrap();
                assert_eq!(got, sent);
                i += 1;
            }
        }));
    }
    // Long enough for the race to happen many times (it did within 0.5 s when it hung).
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in callers.into_iter().chain(abandoners) {
        within(task).await.unwrap();
    }
}
