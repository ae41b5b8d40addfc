// Method names are unique.
#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String) -> String;
    async fn greet(&self, name: String, loud: bool) -> String;
}

fn main() {}
