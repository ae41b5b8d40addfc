// `#[rpc(...)]` takes the options it knows, each once.
#[rpc_core::service]
pub trait Jobs {
    #[rpc(idempotent, retry)]
    async fn start(&self, name: String) -> u64;
    #[rpc(oneway, oneway)]
    async fn log(&self, line: String);
    #[rpc = "idempotent"]
    async fn stop(&self, id: u64);
}

fn main() {}
