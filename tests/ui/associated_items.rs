// A service trait contains methods only.
#[rpc_core::service]
pub trait Store {
    type Value;
    const LIMIT: usize;
    async fn len(&self) -> u64;
}

struct Memory;

impl Store for Memory {
    type Value = u64;
    const LIMIT: usize = 10;
    async fn len(&self) -> u64 {
        0
    }
}

fn main() {}
