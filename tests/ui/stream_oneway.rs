// A one-way call has no reply, so it cannot stream.
use rpc_core::Streaming;

#[rpc_core::service]
pub trait Feed {
    #[rpc(oneway)]
    async fn push(&self, items: Streaming<u64>);
}

fn main() {}
