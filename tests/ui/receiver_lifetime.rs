// `&self` takes no lifetime, and a method no generics.
#[rpc_core::service]
pub trait Counter {
    async fn get<'a>(&'a self) -> u64;
}

fn main() {}
