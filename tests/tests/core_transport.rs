//! Every transport end to end with a hand-written service: TCP over IPv4 and IPv6, host names,
//! Unix socket paths and abstract Unix sockets.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::{Client, Endpoint, Server};

/// Calls each kind of method once and checks the client reports where it connected.
async fn exercise(endpoint: &Endpoint) -> Client {
    let client = within(Client::connect(endpoint)).await.unwrap();
    assert_eq!(client.endpoint(), Some(endpoint));
    let echoed: String = client.call(ECHO, &("hello".to_owned(),)).await.unwrap();
    assert_eq!(echoed, "hello");
    let sum: i64 = client.call(ADD, &(2_i64, -3_i64)).await.unwrap();
    assert_eq!(sum, -1);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ipv4_serves_calls() {
    let server = start("tcp://127.0.0.1:0").await;
    let client = exercise(&server.endpoint).await;
    let peer: String = client.call(PEER, &()).await.unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ipv6_serves_calls() {
    let server = match Server::bind("tcp://[::1]:0").await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("skipping: cannot bind the IPv6 loopback here: {e}");
            return;
        }
    };
    drop(server);
    let server = start("tcp://[::1]:0").await;
    assert!(server.endpoint.to_string().starts_with("tcp://[::1]:"), "{}", server.endpoint);
    let client = exercise(&server.endpoint).await;
    let peer: String = client.call(PEER, &()).await.unwrap();
    assert!(peer.starts_with("[::1]:"), "{peer}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_path_serves_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = start(&format!("unix:{}", path.display())).await;
    assert_eq!(server.endpoint, Endpoint::Unix(path));
    let client = exercise(&server.endpoint).await;
    let peer: String = client.call(PEER, &()).await.unwrap();
    assert!(peer.contains(&format!("pid={}", std::process::id())), "{peer}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abstract_unix_socket_serves_calls() {
    let name = unique_abstract("transport");
    let server = start(&name).await;
    assert_eq!(server.endpoint.to_string(), name);
    let client = exercise(&server.endpoint).await;
    let peer: String = client.call(PEER, &()).await.unwrap();
    assert!(peer.contains(&format!("pid={}", std::process::id())), "{peer}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn local_endpoint_reports_the_port_the_os_chose_for_port_zero() {
    let server = Server::bind("tcp://127.0.0.1:0").await.unwrap();
    let Endpoint::Tcp { host, port } = server.local_endpoint().clone() else {
        panic!("a tcp endpoint: {}", server.local_endpoint());
    };
    assert_eq!(host, "127.0.0.1");
    assert_ne!(port, 0);
    // The reported port is the one really listening.
    let probe = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(probe.is_ok(), "{probe:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_are_resolved_for_bind_and_connect() {
    let server = start("tcp://localhost:0").await;
    let Endpoint::Tcp { host, port } = server.endpoint.clone() else {
        panic!("a tcp endpoint: {}", server.endpoint);
    };
    // The server reports the address it bound, not the name.
    assert!(host == "127.0.0.1" || host == "::1", "{host}");
    let by_name: Endpoint = format!("tcp://localhost:{port}").parse().unwrap();
    let client = exercise(&by_name).await;
    assert_eq!(
        client.endpoint().expect("made from an endpoint").to_string(),
        format!("tcp://localhost:{port}")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_a_connect_error_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix:{}", dir.path().join("nobody.sock").display());
    let err = Client::connect(endpoint.as_str()).await.unwrap_err();
    assert!(matches!(err, rpc_core::Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_serves_many_clients_at_once() {
    let server = start("tcp://127.0.0.1:0").await;
    let mut tasks = Vec::new();
    for i in 0..20_i64 {
        let endpoint = server.endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(&endpoint).await.unwrap();
            client.call::<_, i64>(ADD, &(i, 1000_i64)).await.unwrap()
        }));
    }
    for (i, task) in (0..).zip(tasks) {
        assert_eq!(within(task).await.unwrap(), i + 1000);
    }
    server.stop().await.unwrap();
}
