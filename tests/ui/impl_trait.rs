// `impl Trait` cannot be decoded: the types on the wire are concrete.
#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: impl Into<String>) -> String;
    async fn names(&self) -> impl Iterator<Item = String>;
}

fn main() {}
