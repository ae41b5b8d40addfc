// Argument and result types implement serde's `Serialize` and `Deserialize`.
pub struct Opaque;

#[rpc_core::service]
pub trait Vault {
    async fn store(&self, item: Opaque);
    async fn load(&self) -> Opaque;
}

fn main() {}
