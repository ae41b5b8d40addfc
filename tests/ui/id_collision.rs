// `Collide.method562789()->()` and `Collide.method779192()->()` have the same FNV-1a 32 hash.
#[rpc_core::service]
pub trait Collide {
    async fn method562789(&self);
    async fn method779192(&self);
}

fn main() {}
