// The generated client has its own `connect`, `new`, `with_timeout` and `client`, and derives
// `Clone`.
#[rpc_core::service]
pub trait Session {
    async fn connect(&self, user: String) -> bool;
    async fn new(&self) -> u64;
    async fn with_timeout(&self, ms: u64);
    async fn client(&self) -> String;
    async fn clone(&self) -> u64;
}

fn main() {}
