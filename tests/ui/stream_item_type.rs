// A stream names exactly one item type.
use rpc_core::Streaming;

#[rpc_core::service]
pub trait Feed {
    async fn bare(&self) -> Streaming;
    async fn two(&self, items: Streaming<u64, u8>) -> u64;
}

fn main() {}
