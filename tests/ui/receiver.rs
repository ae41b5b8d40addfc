// Every method takes `&self`: one service value serves every call, concurrently.
#[rpc_core::service]
pub trait Counter {
    async fn missing(n: u64) -> u64;
    async fn by_value(self) -> u64;
    async fn by_mut(&mut self, n: u64);
    async fn boxed(self: Box<Self>) -> u64;
    async fn typed(self: &Self) -> u64;
}

struct Count;

impl Counter for Count {
    async fn missing(n: u64) -> u64 {
        n
    }
    async fn by_value(self) -> u64 {
        0
    }
    async fn by_mut(&mut self, _n: u64) {}
    async fn boxed(self: Box<Self>) -> u64 {
        0
    }
    async fn typed(self: &Self) -> u64 {
        0
    }
}

fn main() {}
