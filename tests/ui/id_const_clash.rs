// Each method gets an id constant on the client, `add` → `ADD_ID`; names must not collide with
// those.
#[rpc_core::service]
pub trait Odd {
    async fn add(&self);
    #[allow(non_snake_case)]
    async fn ADD(&self);
    #[allow(non_snake_case)]
    async fn ADD_ID(&self);
}

fn main() {}
