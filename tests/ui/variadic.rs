// Variadic parameters do not exist on the wire: take a `Vec<T>`.
#[rpc_core::service]
pub trait Log {
    async fn log(&self, format: String, args: ...);
}

fn main() {}
