// Handlers run on a multi-thread runtime: their futures must be `Send`.
use std::rc::Rc;

#[rpc_core::service]
pub trait Counter {
    async fn next(&self) -> u64;
}

struct Count;

impl Counter for Count {
    async fn next(&self) -> u64 {
        let local = Rc::new(1);
        tokio::task::yield_now().await;
        *local
    }
}

fn main() {}
