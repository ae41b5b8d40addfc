//! Endpoint strings: the accepted forms round-trip through `FromStr` and `Display`; anything
//! else is an error that quotes the input and lists the accepted forms.

use std::net::SocketAddr;
use std::path::PathBuf;

use rpc_core::{Endpoint, Error};

fn parse(s: &str) -> Endpoint {
    s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

#[test]
fn tcp_ipv4_endpoint_round_trips() {
    let e = parse("tcp://127.0.0.1:80");
    assert_eq!(e, Endpoint::Tcp { host: "127.0.0.1".into(), port: 80 });
    assert_eq!(e.to_string(), "tcp://127.0.0.1:80");
}

#[test]
fn tcp_ipv6_endpoint_round_trips_with_brackets() {
    let e = parse("tcp://[::1]:80");
    assert_eq!(e, Endpoint::Tcp { host: "::1".into(), port: 80 });
    assert_eq!(e.to_string(), "tcp://[::1]:80");
}

#[test]
fn tcp_host_name_endpoint_round_trips() {
    let e = parse("tcp://localhost:80");
    assert_eq!(e, Endpoint::Tcp { host: "localhost".into(), port: 80 });
    assert_eq!(e.to_string(), "tcp://localhost:80");
}

#[test]
fn unix_path_endpoint_round_trips() {
    let e = parse("unix:/tmp/x.sock");
    assert_eq!(e, Endpoint::Unix(PathBuf::from("/tmp/x.sock")));
    assert_eq!(e.to_string(), "unix:/tmp/x.sock");
}

#[test]
fn abstract_unix_endpoint_round_trips() {
    let e = parse("unix:@name");
    assert_eq!(e, Endpoint::UnixAbstract("name".into()));
    assert_eq!(e.to_string(), "unix:@name");
}

#[test]
fn port_zero_and_the_highest_port_are_accepted() {
    assert_eq!(parse("tcp://127.0.0.1:0").to_string(), "tcp://127.0.0.1:0");
    assert_eq!(parse("tcp://127.0.0.1:65535").to_string(), "tcp://127.0.0.1:65535");
}

#[test]
fn endpoint_of_a_socket_address_displays_like_the_parsed_form() {
    let v4: SocketAddr = "127.0.0.1:7878".parse().expect("literal");
    let v6: SocketAddr = "[::1]:7878".parse().expect("literal");
    assert_eq!(Endpoint::tcp(v4).to_string(), "tcp://127.0.0.1:7878");
    assert_eq!(Endpoint::tcp(v6).to_string(), "tcp://[::1]:7878");
    assert_eq!(parse(&Endpoint::tcp(v6).to_string()), Endpoint::tcp(v6));
}

#[test]
fn bad_endpoints_are_errors_that_quote_the_input_and_list_the_accepted_forms() {
    let bad = [
        "http://x",
        "tcp://host",
        "tcp://::1:80",
        "tcp://h:99999",
        "tcp://h:-1",
        "tcp://:80",
        "tcp://[::1:80",
        "tcp://[nope]:80",
        "unix:",
        "unix:@",
        "",
    ];
    for input in bad {
        let err = input.parse::<Endpoint>().expect_err(input);
        match &err {
            Error::InvalidEndpoint { input: quoted, .. } => assert_eq!(quoted, input),
            other => panic!("{input:?}: expected InvalidEndpoint, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&format!("{input:?}")), "{input:?}: {message}");
        for form in ["tcp://HOST:PORT", "tcp://[IPV6]:PORT", "unix:/PATH", "unix:@NAME"] {
            assert!(message.contains(form), "{input:?}: {message:?} does not list {form}");
        }
    }
}

#[test]
fn each_bad_endpoint_says_what_is_wrong() {
    let reason = |input: &str| match input.parse::<Endpoint>() {
        Err(Error::InvalidEndpoint { reason, .. }) => reason,
        other => panic!("{input:?}: expected InvalidEndpoint, got {other:?}"),
    };
    assert!(reason("http://x").contains("scheme"));
    assert!(reason("tcp://host").contains("PORT"));
    assert!(reason("tcp://::1:80").contains("brackets"));
    assert!(reason("tcp://h:99999").contains("65535"));
    assert!(reason("unix:").contains("path"));
    assert!(reason("unix:@").contains("name"));
}

#[tokio::test]
async fn bind_and_connect_refuse_a_bad_endpoint_string() {
    let bind = rpc_core::Server::bind("http://x").await.expect_err("bad scheme");
    assert!(matches!(bind, Error::InvalidEndpoint { .. }), "{bind:?}");
    let connect = rpc_core::Client::connect("tcp://host").await.expect_err("no port");
    assert!(matches!(connect, Error::InvalidEndpoint { .. }), "{connect:?}");
}
