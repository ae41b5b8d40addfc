// A service has at least one method.
#[rpc_core::service]
pub trait Nothing {}

fn main() {}
