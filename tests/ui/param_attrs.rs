// Attributes on parameters would change the wire signature: not supported.
#[rpc_core::service]
pub trait Jobs {
    async fn start(&self, #[cfg(unix)] name: String) -> u64;
}

fn main() {}
