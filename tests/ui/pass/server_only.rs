// A program that only serves compiles without warnings: the unused client is not dead code.
#![deny(warnings)]

use rpc_core::Service;

#[rpc_core::service]
trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn main() {
    let server = CalculatorServer::new(Calc);
    assert_eq!(server.name(), "Calculator");
}
