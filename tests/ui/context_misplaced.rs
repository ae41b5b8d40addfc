// The call context comes first after `&self`, as a shared reference.
use rpc_core::Context;

#[rpc_core::service]
pub trait Jobs {
    async fn start(&self, name: String, ctx: &Context) -> u64;
    async fn stop(&self, ctx: &mut Context, id: u64);
}

fn main() {}
