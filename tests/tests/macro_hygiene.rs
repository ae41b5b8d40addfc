//! `#[service]` output names everything by absolute path: it compiles, without warnings, in a
//! module without a prelude and in one that shadows the prelude's and the runtime's names.
#![deny(warnings, missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_qualifications, unused_results)]

/// A service in a module without any prelude.
pub mod no_prelude {
    #![no_implicit_prelude]

    extern crate rpc_core;
    extern crate std;

    /// Greets.
    #[rpc_core::service]
    pub trait Greeter {
        /// Says hello.
        async fn greet(&self, name: ::std::string::String) -> ::std::string::String;
        /// Does nothing.
        async fn ping(&self);
        /// Divides, or says why not.
        async fn div(&self, a: i64, b: i64) -> ::std::result::Result<i64, ::std::string::String>;
        /// The caller's request id.
        async fn request_id(&self, ctx: &rpc_core::Context) -> u64;
        /// Each item of `items` back, with a context.
        async fn echo_all(
            &self,
            ctx: &rpc_core::Context,
            items: rpc_core::Streaming<u64>,
        ) -> rpc_core::Streaming<u64>;
    }

    /// The greeter.
    #[derive(Debug)]
    pub struct Polite;

    impl Greeter for Polite {
        async fn greet(&self, name: ::std::string::String) -> ::std::string::String {
            ::std::format!("hello {name}")
        }
        async fn ping(&self) {}
        async fn div(&self, a: i64, b: i64) -> ::std::result::Result<i64, ::std::string::String> {
            a.checked_div(b).ok_or_else(|| ::std::borrow::ToOwned::to_owned("division by zero"))
        }
        async fn request_id(&self, ctx: &rpc_core::Context) -> u64 {
            ctx.request_id()
        }
        async fn echo_all(
            &self,
            _ctx: &rpc_core::Context,
            items: rpc_core::Streaming<u64>,
        ) -> rpc_core::Streaming<u64> {
            let items = ::futures::StreamExt::filter_map(items, |item| {
                ::std::future::ready(::std::result::Result::ok(item))
            });
            rpc_core::Streaming::from_stream(items)
        }
    }
}

/// A service in a module whose names shadow the prelude's, the runtime's and the primitives'.
#[allow(dead_code, non_camel_case_types)]
pub mod shadowed {
    struct Result;
    struct Option;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    struct Error;
    struct Vec;
    struct Box;
    struct Arc;
    struct Send;
    struct Sync;
    struct Future;
    struct Clone;
    struct Debug;
    struct Service;
    struct Responder;
    struct DispatchError;
    struct HandlerFuture;
    struct Client;
    struct Duration;
    struct rpc_core;
    struct core;
    struct std;
    type u8 = ();
    type u32 = ();
    type str = ();

    /// Echoes.
    #[::rpc_core::service]
    pub trait Echo {
        /// Returns its argument.
        async fn echo(&self, text: String) -> String;
        /// Fails with its argument.
        async fn fail(&self, text: String) -> ::std::result::Result<(), String>;
    }

    /// The echo.
    #[derive(::std::fmt::Debug)]
    pub struct Parrot;

    impl Echo for Parrot {
        async fn echo(&self, text: String) -> String {
            text
        }
        async fn fail(&self, text: String) -> ::std::result::Result<(), String> {
            ::std::result::Result::Err(text)
        }
    }
}

use no_prelude::{Greeter as _, GreeterClient, GreeterServer, Polite};
use shadowed::{EchoClient, EchoServer, Parrot};

async fn serve(service: impl rpc_core::Service) -> rpc_core::Endpoint {
    let server = rpc_core::Server::bind("tcp://127.0.0.1:0").await.expect("bind");
    let endpoint = server.local_endpoint().clone();
    drop(tokio::spawn(server.serve(service)));
    endpoint
}

#[tokio::test]
async fn a_service_without_a_prelude_serves_and_calls() -> Result<(), rpc_core::Error> {
    let greeter = GreeterClient::connect(serve(GreeterServer::new(Polite)).await).await?;
    assert_eq!(greeter.greet("you".to_owned()).await?, "hello you");
    greeter.ping().await?;
    assert_eq!(greeter.div(7, 2).await?, Ok(3));
    assert_eq!(greeter.div(7, 0).await?, Err("division by zero".to_owned()));
    assert!(greeter.request_id().await? >= 1);
    let mut back = greeter.echo_all(futures::stream::iter([1_u64, 2])).await?;
    assert_eq!(back.next().await.transpose()?, Some(1));
    assert_eq!(back.next().await.transpose()?, Some(2));
    assert_eq!(back.next().await.transpose()?, None);
    assert_eq!(Polite.greet("me".to_owned()).await, "hello me");
    Ok(())
}

#[tokio::test]
async fn a_service_among_shadowed_names_serves_and_calls() -> Result<(), rpc_core::Error> {
    let echo = EchoClient::connect(serve(EchoServer::new(Parrot)).await).await?;
    assert_eq!(echo.echo("hi".to_owned()).await?, "hi");
    assert_eq!(echo.fail("no".to_owned()).await?, Err("no".to_owned()));
    Ok(())
}
