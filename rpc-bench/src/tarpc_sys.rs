//! The `tarpc` system: tarpc 0.38 with its serde transport (`LengthDelimitedCodec` frames,
//! `tokio_serde` bincode) over the same sockets, each request on its own task as tarpc's docs
//! show.

use std::io;

use bytes::Bytes;
use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{client, context, serde_transport};

use crate::sock::{Addr, Listener, Sock};
use crate::workloads::Caller;

const MAX_FRAME: usize = 16 << 20;

#[tarpc::service]
pub trait TBench {
    async fn add(a: i64, b: i64) -> i64;
    async fn echo(data: Bytes) -> Bytes;
}

#[derive(Clone)]
struct TServer;

impl TBench for TServer {
    async fn add(self, _: context::Context, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn echo(self, _: context::Context, data: Bytes) -> Bytes {
        data
    }
}

fn framed(sock: Sock) -> tarpc::tokio_util::codec::Framed<Sock, LengthDelimitedCodec> {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_framed(sock)
}

/// Binds `addr` and serves every connection as a tarpc channel; returns the real address.
pub async fn start_server(addr: &Addr) -> io::Result<Addr> {
    let (listener, local) = Listener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok(sock) = listener.accept().await {
            let transport = serde_transport::new(framed(sock), Bincode::default());
            let requests = BaseChannel::with_defaults(transport).execute(TServer.serve());
            tokio::spawn(requests.for_each(|response| async move {
                tokio::spawn(response);
            }));
        }
    });
    Ok(local)
}

/// A tarpc client over one connection.
#[derive(Clone)]
pub struct TarpcClient(TBenchClient);

impl TarpcClient {
    pub async fn connect(addr: &Addr) -> io::Result<TarpcClient> {
        let transport =
            serde_transport::new(framed(Sock::connect(addr).await?), Bincode::default());
        Ok(TarpcClient(TBenchClient::new(client::Config::default(), transport).spawn()))
    }
}

impl Caller for TarpcClient {
    async fn add(&self, a: i64, b: i64) -> i64 {
        self.0.add(context::current(), a, b).await.expect("tarpc add failed")
    }

    async fn echo(&self, data: Bytes) -> Bytes {
        self.0.echo(context::current(), data).await.expect("tarpc echo failed")
    }
}
