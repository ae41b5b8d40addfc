// `Streaming<T>` is a whole parameter or return type, never inside another type.
use rpc_core::Streaming;

#[rpc_core::service]
pub trait Feed {
    async fn many(&self, feeds: Vec<Streaming<u64>>) -> u64;
    async fn maybe(&self) -> Option<Streaming<u64>>;
    async fn fallible(&self) -> Result<Streaming<u64>, String>;
    async fn streams(&self) -> Streaming<Streaming<u64>>;
}

fn main() {}
