// The attribute takes no arguments.
#[rpc_core::service(name = "calc")]
pub trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
