// Stream items are decoded into owned values like any argument.
use rpc_core::Streaming;

#[rpc_core::service]
pub trait Feed {
    async fn names(&self, names: Streaming<&'static str>) -> Streaming<&str>;
}

fn main() {}
