//! Unix socket files: a stale file is replaced, a live one is not, a non-socket file is never
//! touched, and the file goes away when the server does.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::path::Path;

use common::*;
use rpc_core::{Client, Error, Server};

fn unix(path: &Path) -> String {
    format!("unix:{}", path.display())
}

async fn answers(endpoint: &str) {
    let client = within(Client::connect(endpoint)).await.unwrap();
    let sum: i64 = within(client.call(ADD, &(2_i64, 2_i64))).await.unwrap();
    assert_eq!(sum, 4);
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "dropping a std listener leaves its file behind");
    let server = start(&unix(&path)).await;
    answers(&unix(&path)).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn binding_the_path_of_a_live_server_is_address_in_use_and_leaves_it_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = start(&unix(&path)).await;
    match Server::bind(unix(&path).as_str()).await {
        Err(Error::Bind { source, .. }) => assert_eq!(source.kind(), ErrorKind::AddrInUse),
        other => panic!("expected an address-in-use Bind error, got {other:?}"),
    }
    assert!(path.exists(), "the failed bind must not remove the live server's file");
    answers(&unix(&path)).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_regular_file_at_the_path_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important.txt");
    std::fs::write(&path, "keep me").unwrap();
    let err = Server::bind(unix(&path).as_str()).await.unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains("important.txt"), "the error names the path: {err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[tokio::test]
async fn the_socket_file_is_removed_when_serve_with_shutdown_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = start(&unix(&path)).await;
    answers(&unix(&path)).await;
    assert!(path.exists());
    server.stop().await.unwrap();
    assert!(!path.exists(), "the socket file outlived the server");
    let err = Client::connect(unix(&path).as_str()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn the_socket_file_is_removed_when_an_unserved_server_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = Server::bind(unix(&path).as_str()).await.unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists(), "the socket file outlived the server");
}

#[tokio::test]
async fn the_socket_file_is_removed_when_the_serve_task_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let mut server = start(&unix(&path)).await;
    answers(&unix(&path)).await;
    server.task.abort();
    assert!(within(&mut server.task).await.unwrap_err().is_cancelled());
    assert!(!path.exists(), "the socket file outlived the server");
}

#[tokio::test]
async fn a_new_server_can_bind_the_path_right_after_the_old_one_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    for _ in 0..3 {
        let server = start(&unix(&path)).await;
        answers(&unix(&path)).await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn binding_an_abstract_name_in_use_is_address_in_use() {
    let name = unique_abstract("in-use");
    let server = start(&name).await;
    match Server::bind(name.as_str()).await {
        Err(Error::Bind { source, .. }) => assert_eq!(source.kind(), ErrorKind::AddrInUse),
        other => panic!("expected an address-in-use Bind error, got {other:?}"),
    }
    answers(&name).await;
    server.stop().await.unwrap();
}
