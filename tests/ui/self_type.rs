// `Self` is the server's implementation type: the client cannot name it.
#[rpc_core::service]
pub trait Node {
    async fn merge(&self, other: Box<Self>) -> u64;
    async fn snapshot(&self) -> Self;
}

fn main() {}
