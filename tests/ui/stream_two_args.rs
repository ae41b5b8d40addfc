// A method takes at most one stream of items.
use rpc_core::Streaming;

#[rpc_core::service]
pub trait Merge {
    async fn merge(&self, left: Streaming<u64>, right: Streaming<u64>) -> u64;
}

fn main() {}
