// Arguments are decoded on the server, so their types must be concrete.
#[rpc_core::service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T);
    async fn get(&self, key: String) -> Vec<u8>
    where
        Self: Sized;
}

fn main() {}
