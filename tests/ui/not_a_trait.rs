// The attribute goes on a trait.
#[rpc_core::service]
pub struct Calculator;

fn main() {
    let _ = Calculator;
}
