// A one-way method returns nothing, and is not also idempotent.
#[rpc_core::service]
pub trait Jobs {
    #[rpc(oneway)]
    async fn start(&self, name: String) -> u64;
    #[rpc(oneway)]
    async fn check(&self) -> Result<(), String>;
    #[rpc(oneway, idempotent)]
    async fn log(&self, line: String);
    #[rpc(oneway)]
    async fn ping(&self) -> ();
}

fn main() {}
