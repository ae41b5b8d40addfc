// The body of a method belongs in the impl.
#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: String) -> String {
        format!("hello {name}")
    }
}

struct Greet;

impl Greeter for Greet {}

fn main() {}
