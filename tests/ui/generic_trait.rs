// A service trait has no type or lifetime parameters.
#[rpc_core::service]
pub trait Store<T> {
    async fn get(&self, key: String) -> Option<T>;
}

struct Memory;

impl Store<u64> for Memory {
    async fn get(&self, _key: String) -> Option<u64> {
        None
    }
}

fn main() {}
