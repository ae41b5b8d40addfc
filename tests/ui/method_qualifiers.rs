// Service methods are plain `async fn`s, and the trait a plain trait.
#[rpc_core::service]
pub unsafe trait Low {
    async unsafe fn peek(&self, at: u64) -> u8;
    async extern "C" fn poke(&self, at: u64, value: u8);
}

fn main() {}
